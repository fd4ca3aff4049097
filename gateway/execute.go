package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/python-executor/python-executor/client"
	"github.com/python-executor/python-executor/wire"
	"github.com/sirupsen/logrus"
	"github.com/valyala/fasthttp"
)

// bound sets how long req may queue and returns parent bounded by when its
// answer is due: the supervisor answers busy when no slot frees within the
// queue wait, so the answer is due by queue wait + timeout + clean-up; the
// grace is the backstop for a supervisor that failed (errSupervisorLate).
func (g *Gateway) bound(parent context.Context, req *wire.Execute) (context.Context, context.CancelFunc) {
	req.MaxQueueMS = g.cfg.MaxQueueWait.Milliseconds()
	wait := g.cfg.MaxTimeout
	if req.Limits.TimeoutMS > 0 {
		wait = time.Duration(req.Limits.TimeoutMS) * time.Millisecond
	}
	return context.WithTimeoutCause(parent, g.cfg.MaxQueueWait+wait+g.cfg.ExecuteGrace, errSupervisorLate)
}

// handleExecute serves POST /execute.
func (g *Gateway) handleExecute(ctx *fasthttp.RequestCtx) {
	r := g.req(ctx)
	if e := checkContentType(string(ctx.Request.Header.ContentType())); e != nil {
		g.refuse(ctx, r, e)
		return
	}
	req, e := parseExecute(ctx.PostBody(), g.cfg.MaxTimeout, g.cfg.MaxBodyBytes)
	if e != nil {
		g.refuse(ctx, r, e)
		return
	}
	req.TraceID = r.id
	if g.draining.Load() {
		g.refuse(ctx, r, &apiError{Type: errUnavailable, Message: "the server is shutting down; retry"})
		return
	}

	if wantsStream(&ctx.Request.Header) {
		// Accept: application/x-ndjson; see stream.go.
		g.stream(ctx, r, req)
		return
	}

	g.running.Add(1)
	defer g.running.Add(-1)

	runCtx, cancel := context.WithCancelCause(g.base)
	defer cancel(nil)
	runCtx, cancelLate := g.bound(runCtx, &req)
	defer cancelLate()
	stop := watchDisconnect(ctx, func() { cancel(errClientGone) })
	defer stop()

	// The gateway answers with the whole Outcome; events are not streamed.
	out, err := g.exec.Execute(runCtx, req, func(client.Event) {})
	g.respond(ctx, r, out, err, context.Cause(runCtx))
}

// respond writes the answer to an execution that returned out and err; cause
// is its context's cause. It is the one place both the plain answer and the
// final line of a streamed one (stream.go) are built.
func (g *Gateway) respond(ctx *fasthttp.RequestCtx, r *request, out *client.Outcome, err, cause error) {
	switch {
	case err != nil:
		g.executeFailed(ctx, r, err, cause)
	case out == nil:
		r.log.Error("executor returned neither an outcome nor an error")
		r.fields["error_type"] = string(wire.ErrInternal)
		writeError(ctx, internalError(r.id), nil, nil)
	default:
		g.answer(ctx, r, out)
	}
}

// refuse answers a request the gateway will not pass on.
func (g *Gateway) refuse(ctx *fasthttp.RequestCtx, r *request, e *apiError) {
	r.fields["error_type"] = string(e.Type)
	r.fields["error"] = e.Message
	writeError(ctx, e, nil, nil)
}

// executeFailed answers an execution that has no outcome: the transport
// failed or the context ended. cause is the execution context's cause.
func (g *Gateway) executeFailed(ctx *fasthttp.RequestCtx, r *request, err, cause error) {
	if errors.Is(cause, errClientGone) {
		// Nobody reads this answer; close the connection after it.
		ctx.SetConnectionClose()
	}
	e := g.failure(r, err, cause)
	r.fields["error_type"] = string(e.Type)
	writeError(ctx, e, nil, nil)
}

// failure names, for the client, the failure of an execution that has no
// outcome, and logs its cause. Both /execute and the MCP tool use it.
func (g *Gateway) failure(r *request, err, cause error) *apiError {
	var we *wire.Error
	var e *apiError
	switch {
	case errors.Is(cause, errClientGone):
		e = &apiError{Type: wire.ErrCancelled, Message: "the client went away"}
		r.log.Info("client went away; execution cancelled")
	case errors.Is(cause, errShuttingDown):
		e = &apiError{Type: errUnavailable, Message: "the server is shutting down; retry"}
		r.log.Warn("execution cancelled by shutdown")
	case errors.Is(cause, errSupervisorLate):
		e = internalError(r.id)
		r.log.WithError(err).Error("supervisor did not answer within the execution timeout plus grace")
	case errors.Is(err, client.ErrUnavailable):
		e = &apiError{Type: errUnavailable, Message: "the execution service is unavailable; retry"}
		r.log.WithError(err).Warn("supervisor unavailable")
	case errors.As(err, &we):
		// A refusal the client reported as an error rather than an outcome.
		e = g.outcomeError(r, we)
	default:
		e = internalError(r.id)
		r.log.WithError(err).Error("execute failed")
	}
	return e
}

// answer maps an execution's outcome to the response.
func (g *Gateway) answer(ctx *fasthttp.RequestCtx, r *request, out *client.Outcome) {
	r.fields["exit_reason"] = string(out.Done.ExitReason)
	r.fields["wall_ms"] = out.Done.WallMS
	r.fields["cpu_ms"] = out.Done.CPUMS
	r.fields["peak_memory_bytes"] = out.Done.PeakMemoryBytes
	r.fields["queue_ms"] = out.Done.QueueMS
	if e := g.outcomeFailure(r, out); e != nil {
		r.fields["error_type"] = string(e.Type)
		writeError(ctx, e, out.Stdout, out.Stderr)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, successBody(out))
}

// outcomeFailure is the error an outcome answers with, or nil when it is a
// success. Both /execute and the MCP tool use it.
func (g *Gateway) outcomeFailure(r *request, out *client.Outcome) *apiError {
	var e *apiError
	switch {
	case out.Err != nil:
		e = g.outcomeError(r, out.Err)
	case out.Result == nil:
		e = g.noResult(r, out.Done)
	case !json.Valid(out.Result):
		// The supervisor should never pass this on; inserting it would
		// break the response.
		r.log.WithField("result_bytes", len(out.Result)).Error("supervisor passed a result that is not valid JSON")
		e = internalError(r.id)
	}
	return e
}

// defaultMessages stand in when the supervisor sent an empty message.
var defaultMessages = map[wire.ErrorType]string{
	wire.ErrSyntax:         "the script has a syntax error",
	wire.ErrMissingMain:    "the script defines no callable main()",
	wire.ErrInvalidArgs:    "args cannot be bound to main()'s parameters",
	wire.ErrInvalidResult:  "main() returned a value that cannot be encoded as JSON",
	wire.ErrResultTooLarge: "main()'s result is larger than allowed",
	wire.ErrException:      "the script raised an exception",
	wire.ErrExited:         "the script exited without returning a result",
	// The supervisor's name for whatever a script did to its own result
	// channel or runner: the script's fault, never the service's.
	wire.ErrResultCorrupted: "the script spoilt its own answer",
	wire.ErrTimeout:         "the script ran longer than its time limit",
	wire.ErrMemoryLimit:     "the script exceeded its memory limit",
	wire.ErrResourceLimit:   "the script exceeded a resource limit",
	wire.ErrBusy:            "the server is busy; retry",
	wire.ErrInvalidRequest:  "invalid request",
	wire.ErrCancelled:       "the execution was cancelled",
}

// outcomeError converts a supervisor error for the client. Types meant for
// clients pass through; internal, protocol and unknown types become a
// generic internal error, with the detail logged.
func (g *Gateway) outcomeError(r *request, we *wire.Error) *apiError {
	def, ok := defaultMessages[we.Type]
	if !ok {
		r.log.WithFields(logrus.Fields{
			"supervisor_error_type": string(we.Type),
			"supervisor_error":      we.Message,
		}).Error("supervisor reported an internal error")
		return internalError(r.id)
	}
	e := &apiError{Type: we.Type, Message: we.Message, Traceback: we.Traceback}
	if e.Message == "" {
		e.Message = def
	}
	return e
}

// noResult names the failure of an execution that ended with neither a
// result nor an error, from its exit reason.
func (g *Gateway) noResult(r *request, d wire.Done) *apiError {
	t := wire.ErrInternal
	switch d.ExitReason {
	case wire.ExitTimeout:
		t = wire.ErrTimeout
	case wire.ExitMemoryLimit:
		t = wire.ErrMemoryLimit
	case wire.ExitExited:
		t = wire.ErrExited
	case wire.ExitCancelled:
		t = wire.ErrCancelled
	case wire.ExitKilled:
		t = wire.ErrResourceLimit
	}
	if t == wire.ErrInternal {
		r.log.WithField("exit_reason", string(d.ExitReason)).Error("execution ended with neither result nor error")
		return internalError(r.id)
	}
	return &apiError{Type: t, Message: defaultMessages[t]}
}
