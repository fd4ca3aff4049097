package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/python-executor/python-executor/client"
	"github.com/python-executor/python-executor/wire"
	"github.com/valyala/fasthttp"
)

// eventExec is an Executor that emits events, unlike fakeExec.
type eventExec struct {
	run func(ctx context.Context, onEvent func(client.Event)) (*client.Outcome, error)
}

func (e *eventExec) Execute(ctx context.Context, _ wire.Execute, onEvent func(client.Event)) (*client.Outcome, error) {
	return e.run(ctx, onEvent)
}

func (e *eventExec) Status(context.Context) (*wire.Status, error) {
	return &wire.Status{Engine: "warm", Isolation: "full", Cgroups: "v2"}, nil
}

// streamLine is one decoded NDJSON line.
type streamLine struct {
	Event    string          `json:"event"`
	Data     string          `json:"data"`
	Status   int             `json:"status"`
	Response json.RawMessage `json:"response"`
}

// postStream posts body with Accept: application/x-ndjson and returns the
// response with its lines decoded (each must be one JSON object).
func postStream(t *testing.T, ts *testServer, body string) (reply, []streamLine) {
	t.Helper()
	r := do(t, "POST", ts.url+"/execute", "application/json", body, map[string]string{"Accept": "application/x-ndjson"})
	var lines []streamLine
	if r.header.Get("Content-Type") != contentTypeNDJSON {
		return r, nil
	}
	if !strings.HasSuffix(r.body, "\n") {
		t.Fatalf("stream does not end with a newline: %q", r.body)
	}
	for _, l := range strings.Split(strings.TrimSuffix(r.body, "\n"), "\n") {
		var sl streamLine
		dec := json.NewDecoder(strings.NewReader(l))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&sl); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		lines = append(lines, sl)
	}
	return r, lines
}

func chunk(t wire.Type, s string) client.Event { return client.Event{Type: t, Data: []byte(s)} }

// The final line holds exactly the plain answer, whatever the outcome.
func TestStreamFinalIsThePlainAnswer(t *testing.T) {
	outcomes := map[string]*client.Outcome{
		"ok": {Result: []byte(`{"a":[1,2]}`), Stdout: []byte("out1out2"), Stderr: []byte("err\xff"),
			Done: wire.Done{ExitReason: wire.ExitOK, WallMS: 12, CPUMS: 3, PeakMemoryBytes: 99, QueueMS: 4, StdoutTruncated: true}},
		"exception": {Err: &wire.Error{Type: wire.ErrException, Message: "ValueError: x", Traceback: "tb"},
			Stdout: []byte("out1out2"), Stderr: []byte("err\xff"), Done: wire.Done{ExitReason: wire.ExitError}},
		"syntax": {Err: &wire.Error{Type: wire.ErrSyntax, Message: "bad"}, Stdout: []byte("out1out2"), Stderr: []byte("err\xff")},
		// The optional keys of io and plots come along because the final
		// line is built by the plain answer's code.
		"files and images": {Result: []byte("1"), Stdout: []byte("out1out2"), Stderr: []byte("err\xff"),
			Files: []wire.File{{Name: "a.csv", Data: []byte("1,2")}}, FilesTruncated: true,
			Images: []wire.Image{{MediaType: "image/png", Data: []byte("\x89PNG")}}, ImagesTruncated: true,
			Done: wire.Done{ExitReason: wire.ExitOK}},
	}
	for name, out := range outcomes {
		t.Run(name, func(t *testing.T) {
			ts := start(t, &eventExec{run: func(_ context.Context, on func(client.Event)) (*client.Outcome, error) {
				on(chunk(wire.TypeStdout, "out1"))
				on(chunk(wire.TypeStderr, "err\xff"))
				on(chunk(wire.TypeStdout, "out2"))
				o := *out
				return &o, nil
			}})
			plain := postJSON(t, ts, `{"script":"x"}`)
			r, lines := postStream(t, ts, `{"script":"x"}`)
			if r.status != http.StatusOK || len(lines) != 4 {
				t.Fatalf("got %d %q, want 200 and 4 lines", r.status, r.body)
			}
			want := []streamLine{{Event: "stdout", Data: "out1"}, {Event: "stderr", Data: "err\ufffd"}, {Event: "stdout", Data: "out2"}}
			for i, w := range want {
				if lines[i].Event != w.Event || lines[i].Data != w.Data {
					t.Errorf("line %d = %+v, want %+v", i, lines[i], w)
				}
			}
			last := lines[3]
			if last.Event != "done" || last.Status != plain.status || string(last.Response) != plain.body {
				t.Errorf("final line %+v\nwant status %d response %s", last, plain.status, plain.body)
			}
			if len(out.Files) > 0 && (!strings.Contains(string(last.Response), `"files":[{"name":"a.csv"`) || !strings.Contains(string(last.Response), `"images":[{"media_type":"image/png"`)) {
				t.Errorf("final line lacks files or images: %s", last.Response)
			}
		})
	}
}

// An execution that never ran keeps its plain status and JSON body; one that
// ran without output is still a stream.
func TestStreamPlainBeforeOutput(t *testing.T) {
	for _, tc := range []struct {
		err    *wire.Error
		status int
	}{
		{&wire.Error{Type: wire.ErrBusy, Message: "busy"}, http.StatusServiceUnavailable},
		{&wire.Error{Type: wire.ErrInvalidRequest, Message: "no"}, http.StatusBadRequest},
	} {
		ts := start(t, &eventExec{run: func(context.Context, func(client.Event)) (*client.Outcome, error) {
			return &client.Outcome{Err: tc.err}, nil
		}})
		r, _ := postStream(t, ts, `{"script":"x"}`)
		checkError(t, reply{status: r.status, header: r.header, body: r.body}, tc.status, string(tc.err.Type))
	}
	ts := start(t, &eventExec{run: func(context.Context, func(client.Event)) (*client.Outcome, error) {
		return nil, errUnavail("down")
	}})
	r, _ := postStream(t, ts, `{"script":"x"}`)
	checkError(t, r, http.StatusServiceUnavailable, string(errUnavailable))
	if r.header.Get("Retry-After") == "" {
		t.Error("a plain 503 on a streamed request lacks Retry-After")
	}
	// Refused by the gateway before anything ran.
	r, _ = postStream(t, ts, `{"script":""}`)
	checkError(t, r, http.StatusBadRequest, string(wire.ErrInvalidRequest))

	ts = start(t, &eventExec{run: func(context.Context, func(client.Event)) (*client.Outcome, error) {
		return &client.Outcome{Err: &wire.Error{Type: wire.ErrTimeout}, Done: wire.Done{ExitReason: wire.ExitTimeout}}, nil
	}})
	r, lines := postStream(t, ts, `{"script":"x"}`)
	if r.status != http.StatusOK || len(lines) != 1 || lines[0].Event != "done" || lines[0].Status != http.StatusInternalServerError ||
		!strings.Contains(string(lines[0].Response), `"type":"timeout"`) {
		t.Fatalf("timeout without output: got %d %q, want a 200 stream whose one line is done/500/timeout", r.status, r.body)
	}
}

func TestWantsStream(t *testing.T) {
	for accept, want := range map[string]bool{
		"":                                       false,
		"application/json":                       false,
		"application/x-ndjson":                   true,
		"Application/X-NDJSON; charset=utf-8":    true,
		"application/json, application/x-ndjson": true,
		"application/x-ndjson;q=0":               false,
		"application/x-ndjson;q=0.5":             true,
		"application/x-ndjsonx":                  false,
		"*/*":                                    false,
	} {
		var h fasthttp.RequestHeader
		if accept != "" {
			h.Set("Accept", accept)
		}
		if got := wantsStream(&h); got != want {
			t.Errorf("wantsStream(Accept: %q) = %v, want %v", accept, got, want)
		}
	}
}

// A character split between chunks is sent whole; a cut-off one at the end
// becomes U+FFFD, as in the final answer.
func TestChunkEncoderUTF8(t *testing.T) {
	var e chunkEncoder
	euro := "\u20ac" // 3 bytes
	var got bytes.Buffer
	got.Write(e.line(chunk(wire.TypeStdout, "a"+euro[:1])))
	got.Write(e.line(chunk(wire.TypeStderr, euro[:2])))
	got.Write(e.line(chunk(wire.TypeStdout, euro[1:2])))
	got.Write(e.line(chunk(wire.TypeStdout, euro[2:]+"b")))
	got.Write(e.rest())
	want := `{"event":"stdout","data":"a"}` + "\n" +
		`{"event":"stdout","data":"` + euro + `b"}` + "\n" +
		`{"event":"stderr","data":"` + "\ufffd\ufffd" + `"}` + "\n"
	if got.String() != want {
		t.Errorf("got %q\nwant %q", got.String(), want)
	}
}

// A reader that takes nothing gets backpressure: the execution's event
// callback blocks after a bounded amount, the gateway does not buffer the
// flood, and closing the connection cancels the execution.
func TestStreamSlowReaderBounded(t *testing.T) {
	var sent atomic.Int64
	ended := make(chan error, 1)
	ts := start(t, &eventExec{run: func(ctx context.Context, on func(client.Event)) (*client.Outcome, error) {
		data := bytes.Repeat([]byte("x"), 64<<10)
		for ctx.Err() == nil {
			on(client.Event{Type: wire.TypeStdout, Data: data})
			sent.Add(int64(len(data)))
		}
		ended <- ctx.Err()
		return nil, ctx.Err()
	}})
	conn := dial(t, ts.addr).(*net.TCPConn)
	_ = conn.SetReadBuffer(4 << 10)
	req := "POST /execute HTTP/1.1\r\nHost: x\r\nAccept: application/x-ndjson\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n{\"script\":\"x\"}"
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != contentTypeNDJSON {
		t.Fatalf("got %d %s, want a 200 stream", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// Stop reading; the producer must come to a stop.
	var last int64 = -1
	for i := 0; i < 50; i++ {
		time.Sleep(100 * time.Millisecond)
		if n := sent.Load(); n == last {
			break
		} else {
			last = n
		}
	}
	if sent.Load() != last {
		t.Fatalf("the execution's events never stopped being taken (%d bytes) while nobody read", sent.Load())
	}
	// Socket buffers (a few MiB on loopback) plus the queue: well under
	// what an unbounded buffer would have taken in 5 s.
	const bound = 32 << 20
	if last > bound {
		t.Fatalf("the gateway took %d bytes from a reader that read nothing, want at most %d", last, bound)
	}
	t.Logf("took %d bytes before blocking", last)
	conn.Close()
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("ctx.Err() = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("closing a stalled stream did not cancel the execution")
	}
}

// A client that goes away mid-stream cancels the execution.
func TestStreamDisconnectCancels(t *testing.T) {
	ended := make(chan error, 1)
	ts := start(t, &eventExec{run: func(ctx context.Context, on func(client.Event)) (*client.Outcome, error) {
		on(chunk(wire.TypeStdout, "hello\n"))
		<-ctx.Done()
		ended <- ctx.Err()
		return nil, fmt.Errorf("execute: %w", ctx.Err())
	}})
	conn := dial(t, ts.addr)
	req := "POST /execute HTTP/1.1\r\nHost: x\r\nAccept: application/x-ndjson\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n{\"script\":\"x\"}"
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != `{"event":"stdout","data":"hello\n"}`+"\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	left := time.Now()
	conn.Close()
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("ctx.Err() = %v, want context.Canceled", err)
		}
		if d := time.Since(left); d > time.Second {
			t.Errorf("cancelled %v after the client left", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the execution was not cancelled after the client went away")
	}
}

// The connection stays usable after a streamed answer (the disconnect
// watcher's deadline does not leak into the next request).
func TestStreamKeepAlive(t *testing.T) {
	ts := start(t, &eventExec{run: func(_ context.Context, on func(client.Event)) (*client.Outcome, error) {
		on(chunk(wire.TypeStdout, "hi\n"))
		return &client.Outcome{Result: []byte(`1`), Stdout: []byte("hi\n")}, nil
	}})
	conn := dial(t, ts.addr)
	br := bufio.NewReader(conn)
	req := "POST /execute HTTP/1.1\r\nHost: x\r\nAccept: application/x-ndjson\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n{\"script\":\"x\"}"
	for i := 0; i < 3; i++ {
		if _, err := io.WriteString(conn, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || !strings.HasSuffix(string(b), "}}\n") {
			t.Fatalf("request %d: %d %q %v", i, resp.StatusCode, b, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
