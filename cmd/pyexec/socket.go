package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/python-executor/python-executor/client"
	"github.com/python-executor/python-executor/wire"
)

// software is what the socket mode says in its hello (the supervisor logs
// it).
const software = "pyexec-cli"

// defaultSocket is where make run and the image put the supervisor's
// socket (the gateway's -socket default).
const defaultSocket = "/run/python-executor/supervisor.sock"

func newClient(socket string) *client.Client {
	return client.New(client.Config{
		SocketPath:  socket,
		DialTimeout: 10 * time.Second,
		Software:    software,
		Features:    []string{wire.FeatureIO, wire.FeatureImages},
	})
}

// transportFailure turns a client error into an answer: a hello refusal
// keeps the supervisor's own type (version_mismatch, protocol_error, or
// a refusal of this user), anything else is unavailable.
func transportFailure(err error) *response {
	var we *wire.Error
	if errors.As(err, &we) {
		return failure(string(we.Type), "the supervisor refused the connection: %s", we.Message)
	}
	if errors.Is(err, wire.ErrFrameTooLarge) {
		return failure("body_too_large", "%v", err)
	}
	return failure("unavailable", "%v", err)
}

// runSocket runs r on the supervisor directly (wire/PROTOCOL.md), printing
// output as it comes, and returns the answer the gateway would have given.
func runSocket(ctx context.Context, socket string, r *request, p *printer) (*response, error) {
	c := newClient(socket)
	defer c.Close()
	req, err := r.wireExecute(newTraceID())
	if err != nil {
		return failure("invalid_request", "%v", err), nil
	}
	if err := wire.CheckFiles(req.Files); err != nil {
		return failure("invalid_request", "%v", err), nil
	}
	if req.Args != nil || len(req.Files) > 0 {
		// Without the io feature the supervisor would not see args or
		// files: say so rather than run main() without them.
		fs, err := c.Features(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return transportFailure(err), nil
		}
		if !fs.Has(wire.FeatureIO) {
			return failure("invalid_request", "this supervisor does not take args or files (no %q feature)", wire.FeatureIO), nil
		}
	}
	for ev, err := range c.Stream(ctx, req) {
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return transportFailure(err), nil
		}
		switch ev.Type {
		case wire.TypeStdout:
			p.out(ev.Data)
		case wire.TypeStderr:
			p.err(ev.Data)
		case wire.TypeDone:
			return fromOutcome(ev.Outcome), nil
		}
	}
	return failure("internal", "the execution ended without an outcome"), nil
}

// fromOutcome is the gateway's answer for an outcome (gateway/execute.go),
// built with the same keys: a local caller reads the same JSON as an HTTP
// one. Unlike the gateway, it passes an internal error's message on: the
// caller is on the supervisor's host.
func fromOutcome(o *client.Outcome) *response {
	r := &response{Stdout: strings.ToValidUTF8(string(o.Stdout), "\uFFFD"), Stderr: strings.ToValidUTF8(string(o.Stderr), "\uFFFD")}
	switch {
	case o.Err != nil:
		r.Error = &apiError{Type: string(o.Err.Type), Message: o.Err.Message, Traceback: o.Err.Traceback}
		return r
	case !json.Valid(o.Result):
		r.Error = &apiError{Type: "internal", Message: "the supervisor sent a result that is not JSON"}
		return r
	}
	r.Result = o.Result
	d := o.Done
	r.Stats = &stats{WallMS: d.WallMS, CPUMS: d.CPUMS, PeakMemoryBytes: d.PeakMemoryBytes, QueueMS: d.QueueMS}
	r.Truncated = &truncated{Stdout: d.StdoutTruncated, Stderr: d.StderrTruncated, Files: o.FilesTruncated, Images: o.ImagesTruncated}
	for _, f := range o.Files {
		r.Files = append(r.Files, outFile{Name: f.Name, Size: int64(len(f.Data)), MediaType: wire.MediaType(f.Name), Content: f.Data})
	}
	for _, im := range o.Images {
		r.Images = append(r.Images, image{MediaType: im.MediaType, Data: im.Data})
	}
	return r
}

// newTraceID names the execution in the supervisor's log, as the gateway's
// request id does.
func newTraceID() string {
	var b [16]byte
	rand.Read(b[:])
	return "pyexec-" + hex.EncodeToString(b[:])
}

// health is the socket mode's /health: the gateway's keys, from the
// supervisor's status, plus its load.
type health struct {
	Status     string `json:"status"`
	Supervisor string `json:"supervisor"`
	Engine     string `json:"engine,omitempty"`
	Isolation  string `json:"isolation,omitempty"`
	Cgroups    string `json:"cgroups,omitempty"`
	Reason     string `json:"reason,omitempty"`
	Running    *int   `json:"running,omitempty"`
	Queued     *int   `json:"queued,omitempty"`
	Slots      *int   `json:"slots,omitempty"`
	QueueSize  *int   `json:"queue_size,omitempty"`
}

func healthSocket(ctx context.Context, socket string) (health, error) {
	c := newClient(socket)
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil {
		return health{Status: "unhealthy", Supervisor: "unreachable"}, err
	}
	h := health{Status: "healthy", Supervisor: "reachable", Engine: st.Engine, Isolation: st.Isolation, Cgroups: st.Cgroups,
		Running: &st.Running, Queued: &st.Queued, Slots: &st.Slots, QueueSize: &st.QueueSize}
	if st.NotReady != "" {
		h.Status, h.Reason = "unhealthy", st.NotReady
	}
	return h, nil
}
