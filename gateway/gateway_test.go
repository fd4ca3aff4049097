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
	"sync"
	"testing"
	"time"

	"github.com/python-executor/python-executor/client"
	"github.com/python-executor/python-executor/wire"
)

// fakeExec is an Executor whose answers the test sets.
type fakeExec struct {
	execute func(ctx context.Context, req wire.Execute) (*client.Outcome, error)
	status  func(ctx context.Context) (*wire.Status, error)

	mu   sync.Mutex // guards reqs
	reqs []wire.Execute
}

func (f *fakeExec) Execute(ctx context.Context, req wire.Execute, onEvent func(client.Event)) (*client.Outcome, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	if f.execute == nil {
		return &client.Outcome{Result: []byte(`null`), Done: wire.Done{ExitReason: wire.ExitOK}}, nil
	}
	return f.execute(ctx, req)
}

func (f *fakeExec) Status(ctx context.Context) (*wire.Status, error) {
	if f.status == nil {
		return &wire.Status{Engine: "warm", Isolation: "full", Cgroups: "v2"}, nil
	}
	return f.status(ctx)
}

// lastReq returns the last request the fake saw.
func (f *fakeExec) lastReq(t *testing.T) wire.Execute {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		t.Fatal("the executor was not called")
	}
	return f.reqs[len(f.reqs)-1]
}

func (f *fakeExec) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs)
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testServer is a gateway serving on a loopback TCP port.
type testServer struct {
	url    string
	addr   string
	logs   *syncBuffer
	cancel context.CancelFunc
	errc   chan error
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.LogLevel = "debug"
	return cfg
}

// start serves a gateway over exec until the test ends.
func start(t *testing.T, exec Executor, tweak ...func(*Config)) *testServer {
	t.Helper()
	cfg := testConfig()
	for _, f := range tweak {
		f(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	logs := &syncBuffer{}
	log := cfg.NewLogger(logs).WithField("test", t.Name())
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{
		url: "http://" + ln.Addr().String(), addr: ln.Addr().String(),
		logs: logs, cancel: cancel, errc: make(chan error, 1),
	}
	g := New(cfg, exec, log)
	go func() { ts.errc <- g.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-ts.errc:
			if err != nil {
				t.Errorf("Serve() = %v, want nil", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return ts
}

// reply is a response as the tests inspect it.
type reply struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, method, url, contentType, body string, header map[string]string) reply {
	t.Helper()
	r, err := tryDo(method, url, contentType, body, header)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// tryDo is do for goroutines other than the test's.
func tryDo(method, url, contentType, body string, header map[string]string) (reply, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return reply{}, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 20 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: read body: %w", method, url, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: string(b)}, nil
}

func tryPost(ts *testServer, body string) reply {
	r, err := tryDo("POST", ts.url+"/execute", "application/json", body, nil)
	if err != nil {
		r.body = err.Error()
	}
	return r
}

func postJSON(t *testing.T, ts *testServer, body string) reply {
	t.Helper()
	return do(t, "POST", ts.url+"/execute", "application/json", body, nil)
}

// raw sends a raw request on a new connection and reads one response.
func raw(t *testing.T, addr, request string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("ReadResponse: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// checkJSON fails unless body is one valid JSON object, and checks the
// content type.
func checkJSON(t *testing.T, r reply) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(r.body), &v); err != nil {
		t.Errorf("body is not a JSON object: %v: %s", err, r.body)
	}
}

// errorBody is the error shape every error shares.
type errorBody struct {
	Error struct {
		Type      string  `json:"type"`
		Message   string  `json:"message"`
		Traceback *string `json:"traceback"`
	} `json:"error"`
	Stdout *string `json:"stdout"`
	Stderr *string `json:"stderr"`
}

// checkError checks status, the error shape and the type, and returns the
// decoded body.
func checkError(t *testing.T, r reply, status int, typ string) errorBody {
	t.Helper()
	checkJSON(t, r)
	if r.status != status {
		t.Errorf("status = %d, want %d (body %s)", r.status, status, r.body)
	}
	var e errorBody
	dec := json.NewDecoder(strings.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("error body %s: %v", r.body, err)
	}
	if e.Error.Type != typ {
		t.Errorf("error.type = %q, want %q (body %s)", e.Error.Type, typ, r.body)
	}
	if e.Error.Message == "" {
		t.Errorf("error.message is empty: %s", r.body)
	}
	if e.Stdout == nil || e.Stderr == nil {
		t.Errorf("stdout/stderr missing: %s", r.body)
	}
	if r.header.Get(HeaderRequestID) == "" {
		t.Errorf("no %s header", HeaderRequestID)
	}
	return e
}

func TestExecuteErrorOutcomes(t *testing.T) {
	tests := []struct {
		name   string
		err    *wire.Error
		status int
		body   string
	}{
		{"syntax_error", &wire.Error{Type: wire.ErrSyntax, Message: "invalid syntax (line 1)"}, 400,
			`{"error":{"type":"syntax_error","message":"invalid syntax (line 1)"},"stdout":"out","stderr":"err"}`},
		{"missing_main", &wire.Error{Type: wire.ErrMissingMain, Message: "no main()"}, 400,
			`{"error":{"type":"missing_main","message":"no main()"},"stdout":"out","stderr":"err"}`},
		{"invalid_result", &wire.Error{Type: wire.ErrInvalidResult, Message: "$.items[3]: set"}, 400,
			`{"error":{"type":"invalid_result","message":"$.items[3]: set"},"stdout":"out","stderr":"err"}`},
		{"result_too_large", &wire.Error{Type: wire.ErrResultTooLarge, Message: "result over 8388608 bytes"}, 400,
			`{"error":{"type":"result_too_large","message":"result over 8388608 bytes"},"stdout":"out","stderr":"err"}`},
		{"invalid_request", &wire.Error{Type: wire.ErrInvalidRequest, Message: "memory_bytes above the server maximum"}, 400,
			`{"error":{"type":"invalid_request","message":"memory_bytes above the server maximum"},"stdout":"out","stderr":"err"}`},
		{"exception", &wire.Error{Type: wire.ErrException, Message: "ZeroDivisionError: division by zero",
			Traceback: "Traceback (most recent call last):\n  File \"<script>\", line 1, in main\nZeroDivisionError: division by zero\n"}, 500,
			`{"error":{"type":"exception","message":"ZeroDivisionError: division by zero","traceback":"Traceback (most recent call last):\n  File \"<script>\", line 1, in main\nZeroDivisionError: division by zero\n"},"stdout":"out","stderr":"err"}`},
		{"exited", &wire.Error{Type: wire.ErrExited, Message: "exit status 3"}, 500,
			`{"error":{"type":"exited","message":"exit status 3"},"stdout":"out","stderr":"err"}`},
		{"result_corrupted", &wire.Error{Type: wire.ErrResultCorrupted, Message: "garbage on the result channel"}, 500,
			`{"error":{"type":"result_corrupted","message":"garbage on the result channel"},"stdout":"out","stderr":"err"}`},
		{"timeout", &wire.Error{Type: wire.ErrTimeout, Message: "ran longer than 30s"}, 500,
			`{"error":{"type":"timeout","message":"ran longer than 30s"},"stdout":"out","stderr":"err"}`},
		{"memory_limit", &wire.Error{Type: wire.ErrMemoryLimit, Message: "over 512 MiB"}, 500,
			`{"error":{"type":"memory_limit","message":"over 512 MiB"},"stdout":"out","stderr":"err"}`},
		{"resource_limit", &wire.Error{Type: wire.ErrResourceLimit, Message: "CPU time"}, 500,
			`{"error":{"type":"resource_limit","message":"CPU time"},"stdout":"out","stderr":"err"}`},
		{"cancelled", &wire.Error{Type: wire.ErrCancelled, Message: "cancelled"}, 500,
			`{"error":{"type":"cancelled","message":"cancelled"},"stdout":"out","stderr":"err"}`},
		{"busy", &wire.Error{Type: wire.ErrBusy, Message: "queue full"}, 503,
			`{"error":{"type":"busy","message":"queue full"},"stdout":"out","stderr":"err"}`},
		{"empty message gets a default", &wire.Error{Type: wire.ErrTimeout}, 500,
			`{"error":{"type":"timeout","message":"the script ran longer than its time limit"},"stdout":"out","stderr":"err"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeExec{execute: func(context.Context, wire.Execute) (*client.Outcome, error) {
				return &client.Outcome{Err: tt.err, Stdout: []byte("out"), Stderr: []byte("err")}, nil
			}}
			ts := start(t, f)
			r := postJSON(t, ts, `{"script": "def main(): pass"}`)
			checkError(t, r, tt.status, string(tt.err.Type))
			if r.body != tt.body {
				t.Errorf("body = %s\nwant   %s", r.body, tt.body)
			}
			if got, want := r.header.Get("Retry-After"), map[bool]string{true: "1"}[tt.status == 503]; got != want {
				t.Errorf("Retry-After = %q, want %q", got, want)
			}
		})
	}
}

// TestInternalErrorsAreGeneric checks that failures on the server's side
// reach the client as a generic internal error naming the request id, with
// the detail only in the log.
func TestInternalErrorsAreGeneric(t *testing.T) {
	secret := "supervisor detail: /var/lib/secret"
	tests := []struct {
		name    string
		outcome *client.Outcome
		err     error
		stdout  string
	}{
		{"supervisor internal", &client.Outcome{Err: &wire.Error{Type: wire.ErrInternal, Message: secret}, Stdout: []byte("x")}, nil, "x"},
		{"protocol error", &client.Outcome{Err: &wire.Error{Type: wire.ErrProtocol, Message: secret}}, nil, ""},
		{"unknown type", &client.Outcome{Err: &wire.Error{Type: "from_the_future", Message: secret}}, nil, ""},
		{"result not JSON", &client.Outcome{Result: []byte(`{"a":` + secret), Stdout: []byte("y")}, nil, "y"},
		{"no result no error", &client.Outcome{Done: wire.Done{ExitReason: wire.ExitOK}}, nil, ""},
		{"transport error", nil, errors.New(secret), ""},
		{"neither outcome nor error", nil, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeExec{execute: func(context.Context, wire.Execute) (*client.Outcome, error) {
				return tt.outcome, tt.err
			}}
			ts := start(t, f)
			r := do(t, "POST", ts.url+"/execute", "application/json", `{"script":"x"}`,
				map[string]string{HeaderRequestID: "req-42"})
			e := checkError(t, r, 500, "internal")
			if want := "internal error (request id req-42)"; e.Error.Message != want {
				t.Errorf("message = %q, want %q", e.Error.Message, want)
			}
			if *e.Stdout != tt.stdout {
				t.Errorf("stdout = %q, want %q", *e.Stdout, tt.stdout)
			}
			if strings.Contains(r.body, "secret") {
				t.Errorf("body leaks the detail: %s", r.body)
			}
			if logs := ts.logs.String(); !strings.Contains(logs, "req-42") {
				t.Errorf("log lacks the request id:\n%s", logs)
			}
		})
	}
}

func TestNoResultExitReasons(t *testing.T) {
	tests := []struct {
		reason wire.ExitReason
		typ    string
		status int
	}{
		{wire.ExitTimeout, "timeout", 500},
		{wire.ExitMemoryLimit, "memory_limit", 500},
		{wire.ExitExited, "exited", 500},
		{wire.ExitCancelled, "cancelled", 500},
		{wire.ExitKilled, "resource_limit", 500},
		{wire.ExitError, "internal", 500},
	}
	for _, tt := range tests {
		t.Run(string(tt.reason), func(t *testing.T) {
			f := &fakeExec{execute: func(context.Context, wire.Execute) (*client.Outcome, error) {
				return &client.Outcome{Done: wire.Done{ExitReason: tt.reason}}, nil
			}}
			ts := start(t, f)
			checkError(t, postJSON(t, ts, `{"script":"x"}`), tt.status, tt.typ)
		})
	}
}

func TestTransportErrors(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		status int
		typ    string
	}{
		{"unavailable", errUnavail("dial unix /run/x.sock: connect: no such file or directory"), 503, "unavailable"},
		{"connection lost", errUnavail("connection lost"), 503, "unavailable"},
		{"wire error as error", &wire.Error{Type: wire.ErrBusy, Message: "queue full"}, 503, "busy"},
		{"wrapped wire error", wrapErr(&wire.Error{Type: wire.ErrInvalidRequest, Message: "timeout_ms above maximum"}), 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeExec{execute: func(context.Context, wire.Execute) (*client.Outcome, error) { return nil, tt.err }}
			ts := start(t, f)
			r := postJSON(t, ts, `{"script":"x"}`)
			checkError(t, r, tt.status, tt.typ)
			if tt.status == 503 && r.header.Get("Retry-After") != "1" {
				t.Errorf("Retry-After = %q, want 1", r.header.Get("Retry-After"))
			}
		})
	}
}

type unavailErr struct{ msg string }

func (e *unavailErr) Error() string { return "supervisor unavailable: " + e.msg }
func (e *unavailErr) Unwrap() error { return client.ErrUnavailable }

func errUnavail(msg string) error { return &unavailErr{msg} }

type wrapped struct{ err error }

func (w wrapped) Error() string { return "execute: " + w.err.Error() }
func (w wrapped) Unwrap() error { return w.err }

func wrapErr(err error) error { return wrapped{err} }

func TestResultPassedVerbatim(t *testing.T) {
	tests := []struct{ name, result string }{
		{"exponent kept", `{"a":1.0e5}`},
		{"whitespace kept", "{ \"b\" : [1, 2.50 ,3] }"},
		{"big integer kept", `[12345678901234567890123]`},
		{"escapes kept", `"\u00e9\/"`},
		{"null", `null`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeExec{execute: func(context.Context, wire.Execute) (*client.Outcome, error) {
				return &client.Outcome{Result: []byte(tt.result), Done: wire.Done{ExitReason: wire.ExitOK}}, nil
			}}
			ts := start(t, f)
			r := postJSON(t, ts, `{"script":"x"}`)
			checkJSON(t, r)
			want := `{"result":` + tt.result + `,"stdout":"","stderr":"","stats":{"wall_ms":0,"cpu_ms":0,"peak_memory_bytes":0},"truncated":{"stdout":false,"stderr":false}}`
			if r.status != 200 || r.body != want {
				t.Errorf("got %d %s\nwant 200 %s", r.status, r.body, want)
			}
		})
	}
}

func TestInvalidUTF8Output(t *testing.T) {
	out := &client.Outcome{
		Result: []byte(`1`),
		Stdout: []byte("ok \xff\xfe end\n"),
		Stderr: []byte("\xc3\x28 half \xe2\x82"),
		Done:   wire.Done{ExitReason: wire.ExitOK, StdoutTruncated: true},
	}
	f := &fakeExec{execute: func(context.Context, wire.Execute) (*client.Outcome, error) { return out, nil }}
	ts := start(t, f)
	r := postJSON(t, ts, `{"script":"x"}`)
	checkJSON(t, r)
	want := `{"result":1,"stdout":"ok ` + "\ufffd\ufffd" + ` end\n","stderr":"` + "\ufffd(" + ` half ` + "\ufffd\ufffd" +
		`","stats":{"wall_ms":0,"cpu_ms":0,"peak_memory_bytes":0},"truncated":{"stdout":true,"stderr":false}}`
	if r.body != want {
		t.Errorf("body = %q\nwant   %q", r.body, want)
	}

	// The same bytes in an error answer.
	out.Result, out.Err = nil, &wire.Error{Type: wire.ErrException, Message: "bad \xff"}
	r = postJSON(t, ts, `{"script":"x"}`)
	e := checkError(t, r, 500, "exception")
	if e.Error.Message != "bad \ufffd" || *e.Stdout != "ok \ufffd\ufffd end\n" {
		t.Errorf("message %q stdout %q", e.Error.Message, *e.Stdout)
	}
}

func TestStats(t *testing.T) {
	f := &fakeExec{execute: func(context.Context, wire.Execute) (*client.Outcome, error) {
		return &client.Outcome{Result: []byte(`{}`), Stdout: []byte("hi\n"), Stderr: []byte("warn\n"),
			Done: wire.Done{WallMS: 23, CPUMS: 18, PeakMemoryBytes: 9437184, ExitReason: wire.ExitOK, StderrTruncated: true}}, nil
	}}
	ts := start(t, f)
	r := postJSON(t, ts, `{"script":"x"}`)
	want := `{"result":{},"stdout":"hi\n","stderr":"warn\n","stats":{"wall_ms":23,"cpu_ms":18,"peak_memory_bytes":9437184},"truncated":{"stdout":false,"stderr":true}}`
	if r.status != 200 || r.body != want {
		t.Errorf("got %d %s\nwant 200 %s", r.status, r.body, want)
	}
}

func TestRoutes(t *testing.T) {
	ts := start(t, &fakeExec{})
	tests := []struct {
		name, method, path string
		status             int
		typ                string
		allow              string
	}{
		{"unknown path", "GET", "/nope", 404, "not_found", ""},
		{"trailing slash is not redirected", "POST", "/execute/", 404, "not_found", ""},
		{"case is not fixed", "POST", "/EXECUTE", 404, "not_found", ""},
		{"GET execute", "GET", "/execute", 405, "method_not_allowed", "OPTIONS, POST"},
		{"PUT execute", "PUT", "/execute", 405, "method_not_allowed", "OPTIONS, POST"},
		{"POST health", "POST", "/health", 405, "method_not_allowed", "GET, HEAD, OPTIONS"},
		{"DELETE health", "DELETE", "/health", 405, "method_not_allowed", "GET, HEAD, OPTIONS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, tt.method, ts.url+tt.path, "application/json", `{"script":"x"}`, nil)
			checkError(t, r, tt.status, tt.typ)
			if got := r.header.Get("Allow"); got != tt.allow {
				t.Errorf("Allow = %q, want %q", got, tt.allow)
			}
		})
	}
	t.Run("OPTIONS", func(t *testing.T) {
		r := do(t, "OPTIONS", ts.url+"/execute", "", "", nil)
		if r.status != 204 || r.header.Get("Allow") != "OPTIONS, POST" || r.body != "" {
			t.Errorf("OPTIONS = %d Allow %q body %q, want 204 \"OPTIONS, POST\" \"\"", r.status, r.header.Get("Allow"), r.body)
		}
	})
	t.Run("query string ignored", func(t *testing.T) {
		r := do(t, "POST", ts.url+"/execute?x=1", "application/json", `{"script":"x"}`, nil)
		if r.status != 200 {
			t.Errorf("status = %d, want 200: %s", r.status, r.body)
		}
	})
}

func TestHealth(t *testing.T) {
	t.Run("healthy", func(t *testing.T) {
		ts := start(t, &fakeExec{})
		r := do(t, "GET", ts.url+"/health", "", "", nil)
		checkJSON(t, r)
		want := `{"status":"healthy","supervisor":"reachable","engine":"warm","isolation":"full","cgroups":"v2"}`
		if r.status != 200 || r.body != want {
			t.Errorf("got %d %s\nwant 200 %s", r.status, r.body, want)
		}
		if r.header.Get(HeaderRequestID) == "" {
			t.Errorf("no %s", HeaderRequestID)
		}
		if r := do(t, "HEAD", ts.url+"/health", "", "", nil); r.status != 200 || r.body != "" {
			t.Errorf("HEAD = %d %q, want 200 with no body", r.status, r.body)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		ts := start(t, &fakeExec{status: func(context.Context) (*wire.Status, error) { return nil, errUnavail("dial: refused") }})
		r := do(t, "GET", ts.url+"/health", "", "", nil)
		checkJSON(t, r)
		want := `{"status":"unhealthy","supervisor":"unreachable"}`
		if r.status != 503 || r.body != want {
			t.Errorf("got %d %s\nwant 503 %s", r.status, r.body, want)
		}
	})
	t.Run("hung supervisor times out", func(t *testing.T) {
		ts := start(t, &fakeExec{status: func(ctx context.Context) (*wire.Status, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}}, func(c *Config) { c.HealthTimeout = 100 * time.Millisecond })
		begin := time.Now()
		r := do(t, "GET", ts.url+"/health", "", "", nil)
		if r.status != 503 {
			t.Errorf("status = %d, want 503", r.status)
		}
		if d := time.Since(begin); d > 2*time.Second {
			t.Errorf("health took %v, want about 100ms", d)
		}
	})
}

func TestRequestID(t *testing.T) {
	f := &fakeExec{}
	ts := start(t, f)
	long := strings.Repeat("a", 129)
	tests := []struct {
		name, sent string
		kept       bool
	}{
		{"sane id kept", "abc-123_x.y:z/w+v=u@t", true},
		{"max length kept", strings.Repeat("a", 128), true},
		{"too long replaced", long, false},
		{"space replaced", "a b", false},
		{"quote replaced", `a"b`, false},
		{"absent generated", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]string{}
			if tt.sent != "" {
				h[HeaderRequestID] = tt.sent
			}
			r := do(t, "POST", ts.url+"/execute", "application/json", `{"script":"x"}`, h)
			got := r.header.Get(HeaderRequestID)
			if tt.kept && got != tt.sent {
				t.Errorf("%s = %q, want %q", HeaderRequestID, got, tt.sent)
			}
			if !tt.kept && (got == tt.sent || len(got) != 32) {
				t.Errorf("%s = %q, want a new 32-digit id", HeaderRequestID, got)
			}
			if trace := f.lastReq(t).TraceID; trace != got {
				t.Errorf("TraceID = %q, want %q", trace, got)
			}
			if !strings.Contains(ts.logs.String(), `"request_id":"`+got+`"`) {
				t.Errorf("no log line carries request_id %q", got)
			}
		})
	}
	t.Run("on errors", func(t *testing.T) {
		r := do(t, "GET", ts.url+"/nope", "", "", map[string]string{HeaderRequestID: "nf-1"})
		if got := r.header.Get(HeaderRequestID); got != "nf-1" {
			t.Errorf("404 %s = %q, want nf-1", HeaderRequestID, got)
		}
		resp, _ := raw(t, ts.addr, "POST /execute HTTP/1.1\r\nHost: x\r\nX-Request-Id: big-1\r\nContent-Type: application/json\r\nContent-Length: 99999999\r\n\r\n")
		if got := resp.Header.Get(HeaderRequestID); got != "big-1" {
			t.Errorf("413 %s = %q, want big-1", HeaderRequestID, got)
		}
	})
	t.Run("generated ids differ", func(t *testing.T) {
		a := do(t, "GET", ts.url+"/health", "", "", nil).header.Get(HeaderRequestID)
		b := do(t, "GET", ts.url+"/health", "", "", nil).header.Get(HeaderRequestID)
		if a == b {
			t.Errorf("two requests got the same id %q", a)
		}
	})
}

func TestPanicIsInternalError(t *testing.T) {
	f := &fakeExec{execute: func(context.Context, wire.Execute) (*client.Outcome, error) { panic("boom") }}
	ts := start(t, f)
	r := do(t, "POST", ts.url+"/execute", "application/json", `{"script":"x"}`, map[string]string{HeaderRequestID: "p-1"})
	checkError(t, r, 500, "internal")
	if r.header.Get(HeaderRequestID) != "p-1" {
		t.Errorf("%s = %q, want p-1", HeaderRequestID, r.header.Get(HeaderRequestID))
	}
	if !strings.Contains(ts.logs.String(), "handler panicked") {
		t.Error("panic not logged")
	}
	// Still serving.
	if r := do(t, "GET", ts.url+"/health", "", "", nil); r.status != 200 {
		t.Errorf("health after panic = %d", r.status)
	}
}

func TestLogsNeverCarryTheScript(t *testing.T) {
	f := &fakeExec{execute: func(context.Context, wire.Execute) (*client.Outcome, error) {
		return &client.Outcome{Err: &wire.Error{Type: wire.ErrException, Message: "x"}}, nil
	}}
	ts := start(t, f)
	postJSON(t, ts, `{"script":"def main(): return 'SECRET-SCRIPT-TEXT'"}`)
	postJSON(t, ts, `{"script":"SECRET-SCRIPT-TEXT", "bogus": 1}`)
	postJSON(t, ts, `{"script":"SECRET-SCRIPT-TEXT" garbage`)
	if strings.Contains(ts.logs.String(), "SECRET-SCRIPT-TEXT") {
		t.Errorf("the log carries the script:\n%s", ts.logs.String())
	}
}

func TestStatusFor(t *testing.T) {
	tests := []struct {
		typ  wire.ErrorType
		want int
	}{
		{wire.ErrInvalidRequest, 400}, {wire.ErrSyntax, 400}, {wire.ErrMissingMain, 400},
		{wire.ErrInvalidResult, 400}, {wire.ErrResultTooLarge, 400},
		{errNotFound, 404}, {errMethodNotAllowed, 405}, {errRequestTimeout, 408},
		{errBodyTooLarge, 413}, {errHeadersTooLarge, 431},
		{wire.ErrException, 500}, {wire.ErrExited, 500}, {wire.ErrTimeout, 500},
		{wire.ErrMemoryLimit, 500}, {wire.ErrResourceLimit, 500}, {wire.ErrCancelled, 500},
		{wire.ErrInternal, 500}, {wire.ErrProtocol, 500}, {wire.ErrVersionMismatch, 500}, {"unknown", 500},
		{wire.ErrBusy, 503}, {errUnavailable, 503},
	}
	for _, tt := range tests {
		t.Run(string(tt.typ), func(t *testing.T) {
			if got := statusFor(tt.typ); got != tt.want {
				t.Errorf("statusFor(%q) = %d, want %d", tt.typ, got, tt.want)
			}
		})
	}
}
