package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/python-executor/python-executor/wire"
)

// patience bounds every wait in these tests; nothing should come close.
const patience = 5 * time.Second

// fakeSupervisor is a test double of the supervisor: a real Unix socket whose
// connections the test goroutine drives frame by frame.
type fakeSupervisor struct {
	t     *testing.T
	path  string
	ln    *net.UnixListener
	conns chan *fakeConn

	mu  sync.Mutex // guards all
	all []*fakeConn
}

type fakeConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func socketPath(t *testing.T) string {
	return filepath.Join(t.TempDir(), "s")
}

// startFake listens on path and queues each accepted connection.
func startFake(t *testing.T, path string) *fakeSupervisor {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	fs := &fakeSupervisor{t: t, path: path, ln: ln, conns: make(chan *fakeConn, 16)}
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			fc := &fakeConn{t: t, nc: nc, br: bufio.NewReader(nc)}
			fs.mu.Lock()
			fs.all = append(fs.all, fc)
			fs.mu.Unlock()
			fs.conns <- fc
		}
	}()
	t.Cleanup(fs.stop)
	return fs
}

// stop closes the listener (removing the socket file) and every connection,
// as a supervisor that exits does.
func (fs *fakeSupervisor) stop() {
	fs.ln.Close()
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, fc := range fs.all {
		fc.nc.Close()
	}
}

// accept returns the next connection the client made.
func (fs *fakeSupervisor) accept() *fakeConn {
	fs.t.Helper()
	select {
	case fc := <-fs.conns:
		return fc
	case <-time.After(patience):
		fs.t.Fatal("fake supervisor: no connection")
		return nil
	}
}

// noConnection checks that the client did not open another connection.
func (fs *fakeSupervisor) noConnection() {
	fs.t.Helper()
	select {
	case <-fs.conns:
		fs.t.Fatal("fake supervisor: unexpected new connection")
	default:
	}
}

// next reads one frame.
func (fc *fakeConn) next() wire.Frame {
	fc.t.Helper()
	fc.nc.SetReadDeadline(time.Now().Add(patience))
	f, err := wire.ReadFrame(fc.br, wire.DefaultMaxFrame)
	if err != nil {
		fc.t.Fatalf("fake supervisor: read: %v", err)
	}
	if f.Version != wire.Version {
		fc.t.Fatalf("fake supervisor: frame version %d, want %d", f.Version, wire.Version)
	}
	return f
}

// expect reads one frame of type want and decodes its body into v (if not
// nil).
func (fc *fakeConn) expect(want wire.Type, v any) wire.Frame {
	fc.t.Helper()
	f := fc.next()
	if f.Type != want {
		fc.t.Fatalf("fake supervisor: got %s frame on request %d, want %s", f.Type, f.RequestID, want)
	}
	if v != nil {
		if err := wire.Unmarshal(f.Body, v); err != nil {
			fc.t.Fatalf("fake supervisor: Unmarshal(%x) = %v", f.Body, err)
		}
	}
	return f
}

// expectClosed checks that the client closed the connection.
func (fc *fakeConn) expectClosed() {
	fc.t.Helper()
	fc.nc.SetReadDeadline(time.Now().Add(patience))
	for {
		if _, err := wire.ReadFrame(fc.br, wire.DefaultMaxFrame); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				fc.t.Fatal("fake supervisor: the client did not close the connection")
			}
			return
		}
	}
}

// send writes one frame whose body is v.
func (fc *fakeConn) send(id uint32, t wire.Type, v any) {
	fc.t.Helper()
	f, err := wire.NewFrame(id, t, v)
	if err != nil {
		fc.t.Fatalf("fake supervisor: NewFrame: %v", err)
	}
	fc.sendRaw(wire.AppendFrame(nil, f))
}

func (fc *fakeConn) sendRaw(b []byte) {
	fc.t.Helper()
	if _, err := fc.nc.Write(b); err != nil {
		fc.t.Fatalf("fake supervisor: write: %v", err)
	}
}

// greet reads the client's hello and answers it.
func (fc *fakeConn) greet() wire.Hello {
	fc.t.Helper()
	var h wire.Hello
	f := fc.expect(wire.TypeHello, &h)
	if f.RequestID != 0 {
		fc.t.Fatalf("fake supervisor: hello on request %d, want 0", f.RequestID)
	}
	fc.send(0, wire.TypeHello, wire.Hello{Version: int(wire.Version), Software: "fake-supervisor"})
	return h
}

// answer sends the events of one successful execution.
func (fc *fakeConn) answer(id uint32, stdout, result string) {
	fc.t.Helper()
	fc.send(id, wire.TypeStdout, wire.Chunk{Data: []byte(stdout)})
	fc.send(id, wire.TypeResult, wire.Result{JSON: []byte(result)})
	fc.send(id, wire.TypeDone, wire.Done{ExitReason: wire.ExitOK, WallMS: 3})
}

// newClient returns a client of path that logs into a test hook.
func newClient(t *testing.T, path string, cfg Config) (*Client, *logtest.Hook) {
	t.Helper()
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	cfg.SocketPath = path
	cfg.Logger = logrus.NewEntry(logger)
	if cfg.ServerUID == 0 {
		cfg.ServerUID = os.Getuid() // the fake supervisor runs as the test
	}
	c := New(cfg)
	t.Cleanup(func() { c.Close() })
	return c, hook
}

type execResult struct {
	out    *Outcome
	err    error
	events []Event
}

// goExecute runs Execute in its own goroutine.
func goExecute(ctx context.Context, c *Client, req wire.Execute) <-chan execResult {
	done := make(chan execResult, 1)
	go func() {
		var r execResult
		r.out, r.err = c.Execute(ctx, req, func(ev Event) { r.events = append(r.events, ev) })
		done <- r
	}()
	return done
}

func await(t *testing.T, ch <-chan execResult) execResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(patience):
		t.Fatal("Execute did not return")
		return execResult{}
	}
}

// executeOnNewConn runs script through c while fs accepts the connection c
// dials for it and answers it with the script as its result, and fails the
// test unless the call returns that result.
func executeOnNewConn(t *testing.T, c *Client, fs *fakeSupervisor, what, script string) {
	t.Helper()
	res := goExecute(t.Context(), c, wire.Execute{Script: script})
	fc := fs.accept()
	fc.greet()
	fc.answer(fc.expect(wire.TypeExecute, nil).RequestID, "", script)
	if r := await(t, res); r.err != nil || string(r.out.Result) != script {
		t.Fatalf("%s = %+v, %v, want result %s", what, r.out, r.err, script)
	}
}

// wantUnavailable checks that err is a transport failure.
func wantUnavailable(t *testing.T, what string, out any, err error) {
	t.Helper()
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("%s = %v, %v, want an error wrapping ErrUnavailable", what, out, err)
	}
}

func TestHello(t *testing.T) {
	for _, tc := range []struct {
		name     string
		software string
		want     string
	}{
		{"default software", "", "python-executor-client"},
		{"named software", "gateway/1.2", "gateway/1.2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := socketPath(t)
			fs := startFake(t, path)
			c, _ := newClient(t, path, Config{Software: tc.software})
			done := make(chan error, 1)
			go func() {
				_, err := c.Status(t.Context())
				done <- err
			}()
			fc := fs.accept()
			h := fc.greet()
			if want := (wire.Hello{Version: int(wire.Version), Software: tc.want}); !reflect.DeepEqual(h, want) {
				t.Fatalf("client hello = %+v, want %+v", h, want)
			}
			fc.expect(wire.TypeStatusRequest, &wire.Empty{})
			fc.send(0, wire.TypeStatus, wire.Status{Engine: "cold"})
			if err := <-done; err != nil {
				t.Fatalf("Status() = %v, want nil", err)
			}
		})
	}
}

// featuresOf runs c.Features while fc's supervisor reads the client's hello
// (returned raw, to see which keys it has) and answers with answer.
func featuresOf(t *testing.T, c *Client, fs *fakeSupervisor, answer any) (wire.FeatureSet, map[string]any) {
	t.Helper()
	type got struct {
		set wire.FeatureSet
		err error
	}
	done := make(chan got, 1)
	go func() {
		set, err := c.Features(t.Context())
		done <- got{set, err}
	}()
	fc := fs.accept()
	var hello map[string]any
	fc.expect(wire.TypeHello, &hello)
	fc.send(0, wire.TypeHello, answer)
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("Features() = %v", r.err)
		}
		return r.set, hello
	case <-time.After(patience):
		t.Fatal("Features() did not return")
		return wire.FeatureSet{}, nil
	}
}

func TestHelloFeatures(t *testing.T) {
	base := wire.Hello{Version: int(wire.Version), Software: "fake-supervisor"}
	// A supervisor from before features: its hello has only the base keys,
	// so it cannot carry a features key even by accident.
	type oldHello struct {
		Version  int    `msgpack:"version"`
		Software string `msgpack:"software"`
	}
	old := oldHello{Version: int(wire.Version), Software: "old-supervisor"}
	for _, tc := range []struct {
		name      string
		ask       []string
		answer    any
		wantHello any // the client's hello's features key; nil = absent
		want      []string
	}{
		{"asks for nothing: base hello", nil, base, nil, nil},
		{"old supervisor offers nothing", []string{"files", "stream_events"}, old, []any{"files", "stream_events"}, nil},
		{"supervisor agrees to nothing", []string{"files"}, base, []any{"files"}, nil},
		{
			"agreed subset; duplicates collapse",
			[]string{"stream_events", "files", "files"},
			wire.Hello{Version: int(wire.Version), Features: []string{"stream_events"}},
			[]any{"files", "stream_events"},
			[]string{"stream_events"},
		},
		{
			// The supervisor must answer a subset; names it adds anyway
			// are ignored like any unknown feature.
			"names not asked for are ignored",
			[]string{"files"},
			wire.Hello{Version: int(wire.Version), Features: []string{"files", "images", "teleport"}},
			[]any{"files"},
			[]string{"files"},
		},
		{
			"unknown keys in the answer are ignored",
			[]string{"files"},
			map[string]any{"version": int(wire.Version), "software": "future", "features": []string{"files"}, "future_key": map[string]any{"x": []int{1}}},
			[]any{"files"},
			[]string{"files"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := socketPath(t)
			fs := startFake(t, path)
			c, _ := newClient(t, path, Config{Features: tc.ask})
			set, hello := featuresOf(t, c, fs, tc.answer)
			if got, ok := hello["features"]; tc.wantHello == nil && ok {
				t.Fatalf("client hello has features %v, want no features key", got)
			} else if tc.wantHello != nil && !reflect.DeepEqual(got, tc.wantHello) {
				t.Fatalf("client hello features = %#v, want %#v", got, tc.wantHello)
			}
			if !reflect.DeepEqual(set.Names(), tc.want) {
				t.Fatalf("Features() = %q, want %q", set.Names(), tc.want)
			}
		})
	}
}

// TestFeaturesPerConnection: a reconnection negotiates again, and Features
// reports the current connection's agreement.
func TestFeaturesPerConnection(t *testing.T) {
	path := socketPath(t)
	fs := startFake(t, path)
	c, _ := newClient(t, path, Config{Features: []string{"files"}})
	set, _ := featuresOf(t, c, fs, wire.Hello{Version: int(wire.Version), Features: []string{"files"}})
	if !set.Has("files") {
		t.Fatalf("first connection: Features() = %v, want files", set)
	}
	// The same connection answers again without a new hello.
	if again, err := c.Features(t.Context()); err != nil || !again.Has("files") {
		t.Fatalf("Features() again = %v, %v", again, err)
	}
	fs.noConnection()
	// The supervisor restarts as one without the feature.
	fs.mu.Lock()
	first := fs.all[len(fs.all)-1]
	fs.mu.Unlock()
	first.nc.Close()
	connected := func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.cn != nil && c.cn.alive()
	}
	deadline := time.Now().Add(patience)
	for connected() {
		if time.Now().After(deadline) {
			t.Fatal("the client did not notice the lost connection")
		}
		time.Sleep(10 * time.Millisecond)
	}
	set, _ = featuresOf(t, c, fs, wire.Hello{Version: int(wire.Version)})
	if set.Len() != 0 {
		t.Fatalf("after reconnecting to a supervisor without features: Features() = %v, want none", set)
	}
}

func TestHelloRefused(t *testing.T) {
	for _, tc := range []struct {
		name      string
		supervise func(fc *fakeConn)
		wantType  wire.ErrorType // the supervisor's refusal, if it sent one
		wantText  string
	}{
		{
			name: "version mismatch",
			supervise: func(fc *fakeConn) {
				fc.expect(wire.TypeHello, nil)
				fc.send(0, wire.TypeError, wire.Error{Type: wire.ErrVersionMismatch, Message: "protocol version 1 is not supported"})
				fc.nc.Close()
			},
			wantType: wire.ErrVersionMismatch,
			wantText: "version_mismatch",
		},
		{
			name: "version mismatch in a frame of another version",
			supervise: func(fc *fakeConn) {
				fc.expect(wire.TypeHello, nil)
				f, _ := wire.NewFrame(0, wire.TypeError, wire.Error{Type: wire.ErrVersionMismatch, Message: "speak 2"})
				f.Version = 2
				fc.sendRaw(wire.AppendFrame(nil, f))
			},
			wantType: wire.ErrVersionMismatch,
			wantText: "version_mismatch",
		},
		{
			name: "hello of another version",
			supervise: func(fc *fakeConn) {
				fc.expect(wire.TypeHello, nil)
				fc.send(0, wire.TypeHello, wire.Hello{Version: 2})
			},
			wantText: "version 2",
		},
		{
			name: "not a hello",
			supervise: func(fc *fakeConn) {
				fc.expect(wire.TypeHello, nil)
				fc.send(0, wire.TypeStatus, wire.Status{})
			},
			wantText: "expected hello, got status",
		},
		{
			name: "closed before hello",
			supervise: func(fc *fakeConn) {
				fc.expect(wire.TypeHello, nil)
				fc.nc.Close()
			},
			wantText: "EOF",
		},
		{
			name: "silent",
			supervise: func(fc *fakeConn) {
				fc.expect(wire.TypeHello, nil)
			},
			wantText: "timeout",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := socketPath(t)
			fs := startFake(t, path)
			c, _ := newClient(t, path, Config{DialTimeout: 200 * time.Millisecond})
			res := goExecute(t.Context(), c, wire.Execute{Script: "x"})
			tc.supervise(fs.accept())
			r := await(t, res)
			wantUnavailable(t, "Execute", r.out, r.err)
			if !strings.Contains(r.err.Error(), tc.wantText) {
				t.Fatalf("Execute() error = %q, want it to name %q", r.err, tc.wantText)
			}
			var we *wire.Error
			if got := errors.As(r.err, &we); got != (tc.wantType != "") || (got && we.Type != tc.wantType) {
				t.Fatalf("Execute() error = %v (*wire.Error %v), want refusal %q", r.err, we, tc.wantType)
			}
		})
	}
}

func TestNoSupervisor(t *testing.T) {
	c, _ := newClient(t, socketPath(t), Config{})
	start := time.Now()
	out, err := c.Execute(t.Context(), wire.Execute{Script: "x"}, nil)
	wantUnavailable(t, "Execute", out, err)
	st, err := c.Status(t.Context())
	wantUnavailable(t, "Status", st, err)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("failing to dial a missing socket took %v, want it at once", d)
	}
}

func TestExecute(t *testing.T) {
	path := socketPath(t)
	fs := startFake(t, path)
	c, _ := newClient(t, path, Config{})
	req := wire.Execute{Script: "def main():\n    return 1\n", TraceID: "req-7", Limits: wire.Limits{TimeoutMS: 900}}
	res := goExecute(t.Context(), c, req)

	fc := fs.accept()
	fc.greet()
	var got wire.Execute
	f := fc.expect(wire.TypeExecute, &got)
	if f.RequestID == 0 {
		t.Fatal("execute on request id 0, want a non-zero id")
	}
	if !reflect.DeepEqual(got, req) {
		t.Fatalf("supervisor got execute %+v, want %+v", got, req)
	}
	done := wire.Done{WallMS: 31, CPUMS: 25, PeakMemoryBytes: 9 << 20, ExitReason: wire.ExitOK, StderrTruncated: true}
	fc.send(f.RequestID, wire.TypeStdout, wire.Chunk{Data: []byte("hel")})
	fc.send(f.RequestID, wire.TypeStderr, wire.Chunk{Data: []byte{0xff, '\n'}})
	fc.send(f.RequestID, wire.TypeStdout, wire.Chunk{Data: []byte("lo\n")})
	fc.send(f.RequestID, wire.TypeResult, wire.Result{JSON: []byte(`{"a":[1,2.5,null]}`)})
	fc.send(f.RequestID, wire.TypeDone, done)

	r := await(t, res)
	if r.err != nil {
		t.Fatalf("Execute() = %v, want nil", r.err)
	}
	if string(r.out.Result) != `{"a":[1,2.5,null]}` || r.out.Err != nil || string(r.out.Stdout) != "hello\n" || string(r.out.Stderr) != "\xff\n" || r.out.Done != done {
		t.Fatalf("Execute() = %+v, want the result, stdout, stderr and done sent", r.out)
	}
	wantEvents := []Event{{wire.TypeStdout, []byte("hel")}, {wire.TypeStderr, []byte{0xff, '\n'}}, {wire.TypeStdout, []byte("lo\n")}}
	if fmt.Sprint(r.events) != fmt.Sprint(wantEvents) {
		t.Fatalf("events = %v, want %v", r.events, wantEvents)
	}

	// A second execution reuses the connection, with a new id; no onEvent.
	res2 := make(chan execResult, 1)
	go func() {
		out, err := c.Execute(t.Context(), req, nil)
		res2 <- execResult{out: out, err: err}
	}()
	f2 := fc.expect(wire.TypeExecute, nil)
	if f2.RequestID == f.RequestID || f2.RequestID == 0 {
		t.Fatalf("second execute on request %d, want a fresh non-zero id (first was %d)", f2.RequestID, f.RequestID)
	}
	fc.answer(f2.RequestID, "x", "2")
	if r := await(t, res2); r.err != nil || string(r.out.Result) != "2" || string(r.out.Stdout) != "x" {
		t.Fatalf("second Execute() = %+v, %v, want result 2 and stdout x", r.out, r.err)
	}
	fs.noConnection()
}

func TestExecuteErrorOutcome(t *testing.T) {
	for _, tc := range []struct {
		name   string
		events func(fc *fakeConn, id uint32)
		want   wire.Error
		reason wire.ExitReason
	}{
		{
			name: "exception",
			events: func(fc *fakeConn, id uint32) {
				fc.send(id, wire.TypeStderr, wire.Chunk{Data: []byte("boom\n")})
				fc.send(id, wire.TypeError, wire.Error{Type: wire.ErrException, Message: "ValueError: boom", Traceback: "Traceback ..."})
				fc.send(id, wire.TypeDone, wire.Done{ExitReason: wire.ExitError, ExitCode: 1})
			},
			want:   wire.Error{Type: wire.ErrException, Message: "ValueError: boom", Traceback: "Traceback ..."},
			reason: wire.ExitError,
		},
		{
			name: "busy",
			events: func(fc *fakeConn, id uint32) {
				fc.send(id, wire.TypeError, wire.Error{Type: wire.ErrBusy, Message: "retry shortly"})
				fc.send(id, wire.TypeDone, wire.Done{ExitReason: wire.ExitError, ExitCode: -1})
			},
			want:   wire.Error{Type: wire.ErrBusy, Message: "retry shortly"},
			reason: wire.ExitError,
		},
		{
			name: "done without result or error",
			events: func(fc *fakeConn, id uint32) {
				fc.send(id, wire.TypeDone, wire.Done{ExitReason: wire.ExitKilled})
			},
			want:   wire.Error{Type: wire.ErrInternal, Message: "the supervisor sent no result or error"},
			reason: wire.ExitKilled,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := socketPath(t)
			fs := startFake(t, path)
			c, _ := newClient(t, path, Config{})
			res := goExecute(t.Context(), c, wire.Execute{Script: "x"})
			fc := fs.accept()
			fc.greet()
			tc.events(fc, fc.expect(wire.TypeExecute, nil).RequestID)
			r := await(t, res)
			if r.err != nil {
				t.Fatalf("Execute() = %v, want an outcome, not an error", r.err)
			}
			if r.out.Err == nil || *r.out.Err != tc.want || r.out.Result != nil || r.out.Done.ExitReason != tc.reason {
				t.Fatalf("Execute() = %+v (Err %v), want Err %+v and exit reason %s", r.out, r.out.Err, tc.want, tc.reason)
			}
		})
	}
}

func TestConcurrentExecutions(t *testing.T) {
	const n = 20
	path := socketPath(t)
	fs := startFake(t, path)
	c, _ := newClient(t, path, Config{})
	results := make([]<-chan execResult, n)
	for i := range n {
		results[i] = goExecute(t.Context(), c, wire.Execute{Script: fmt.Sprint(i)})
	}
	fc := fs.accept()
	fc.greet()

	// Collect every execute, then answer them with their frames shuffled
	// across requests (in order within each request).
	scripts := make(map[uint32]string)
	for range n {
		var req wire.Execute
		f := fc.expect(wire.TypeExecute, &req)
		if _, dup := scripts[f.RequestID]; dup || f.RequestID == 0 {
			t.Fatalf("execute on request %d, want a distinct non-zero id", f.RequestID)
		}
		scripts[f.RequestID] = req.Script
	}
	type pending struct {
		id     uint32
		frames []func()
	}
	var queue []*pending
	for id, s := range scripts {
		p := &pending{id: id}
		for k := range 3 {
			p.frames = append(p.frames, func() { fc.send(id, wire.TypeStdout, wire.Chunk{Data: []byte(fmt.Sprintf("%s.%d;", s, k))}) })
		}
		p.frames = append(p.frames,
			func() { fc.send(id, wire.TypeStderr, wire.Chunk{Data: []byte(s)}) },
			func() { fc.send(id, wire.TypeResult, wire.Result{JSON: []byte(`"` + s + `"`)}) },
			func() { fc.send(id, wire.TypeDone, wire.Done{ExitReason: wire.ExitOK, WallMS: int64(id)}) },
		)
		queue = append(queue, p)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for len(queue) > 0 {
		i := rng.IntN(len(queue))
		p := queue[i]
		p.frames[0]()
		if p.frames = p.frames[1:]; len(p.frames) == 0 {
			queue = append(queue[:i], queue[i+1:]...)
		}
	}

	ids := make(map[string]uint32)
	for id, s := range scripts {
		ids[s] = id
	}
	for i, ch := range results {
		r := await(t, ch)
		s := fmt.Sprint(i)
		if r.err != nil {
			t.Fatalf("Execute(%s) = %v, want nil", s, r.err)
		}
		wantOut := fmt.Sprintf("%s.0;%s.1;%s.2;", s, s, s)
		if string(r.out.Result) != `"`+s+`"` || string(r.out.Stdout) != wantOut || string(r.out.Stderr) != s || r.out.Done.WallMS != int64(ids[s]) {
			t.Fatalf("Execute(%s) = result %s, stdout %q, stderr %q, wall %d; want %q, %q, %q, %d",
				s, r.out.Result, r.out.Stdout, r.out.Stderr, r.out.Done.WallMS, `"`+s+`"`, wantOut, s, ids[s])
		}
		if len(r.events) != 4 {
			t.Fatalf("Execute(%s) events = %v, want 4", s, r.events)
		}
	}
	fs.noConnection()
}

func TestCancel(t *testing.T) {
	for _, tc := range []struct {
		name string
		ctx  func(t *testing.T) (context.Context, func())
		want error
	}{
		{"cancelled", func(t *testing.T) (context.Context, func()) {
			return context.WithCancel(t.Context())
		}, context.Canceled},
		{"deadline", func(t *testing.T) (context.Context, func()) {
			return context.WithTimeout(t.Context(), 300*time.Millisecond)
		}, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := socketPath(t)
			fs := startFake(t, path)
			c, _ := newClient(t, path, Config{})
			ctx, cancel := tc.ctx(t)
			defer cancel()
			// A bystander on the same connection must not notice.
			other := goExecute(t.Context(), c, wire.Execute{Script: "other"})
			fc := fs.accept()
			fc.greet()
			otherID := fc.expect(wire.TypeExecute, nil).RequestID

			res := goExecute(ctx, c, wire.Execute{Script: "victim"})
			id := fc.expect(wire.TypeExecute, nil).RequestID
			fc.send(id, wire.TypeStdout, wire.Chunk{Data: []byte("started")})
			start := time.Now()
			if tc.want == context.Canceled {
				cancel()
			}
			r := await(t, res)
			if !errors.Is(r.err, tc.want) || r.out != nil {
				t.Fatalf("Execute() = %v, %v, want %v", r.out, r.err, tc.want)
			}
			if errors.Is(r.err, ErrUnavailable) {
				t.Fatalf("Execute() = %v, want no transport failure", r.err)
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("Execute() returned %v after the cancel, want at once", d)
			}
			if f := fc.expect(wire.TypeCancel, &wire.Empty{}); f.RequestID != id {
				t.Fatalf("cancel for request %d, want %d", f.RequestID, id)
			}

			// The supervisor finishes the cancelled execution: dropped.
			fc.send(id, wire.TypeError, wire.Error{Type: wire.ErrCancelled})
			fc.send(id, wire.TypeDone, wire.Done{ExitReason: wire.ExitCancelled})
			fc.answer(otherID, "o", "1")
			if r := await(t, other); r.err != nil || string(r.out.Result) != "1" {
				t.Fatalf("bystander Execute() = %+v, %v, want result 1", r.out, r.err)
			}

			// The connection is still good, and the id is not reused.
			res = goExecute(t.Context(), c, wire.Execute{Script: "after"})
			f := fc.expect(wire.TypeExecute, nil)
			if f.RequestID == id || f.RequestID == otherID {
				t.Fatalf("new execute on request %d, reusing an earlier id", f.RequestID)
			}
			fc.answer(f.RequestID, "a", "2")
			if r := await(t, res); r.err != nil || string(r.out.Result) != "2" {
				t.Fatalf("Execute() after cancel = %+v, %v, want result 2", r.out, r.err)
			}
			fs.noConnection()
		})
	}
}

// TestCancelledIDNotReusedBeforeDone checks that an id stays reserved after a
// cancel until the supervisor's done for it: the supervisor refuses an id
// that is still live on its side.
func TestCancelledIDNotReusedBeforeDone(t *testing.T) {
	path := socketPath(t)
	fs := startFake(t, path)
	c, _ := newClient(t, path, Config{})
	ctx, cancel := context.WithCancel(t.Context())
	res := goExecute(ctx, c, wire.Execute{Script: "x"})
	fc := fs.accept()
	fc.greet()
	id := fc.expect(wire.TypeExecute, nil).RequestID
	cancel()
	await(t, res)
	fc.expect(wire.TypeCancel, nil)

	c.mu.Lock()
	cn := c.cn
	c.mu.Unlock()
	cn.mu.Lock()
	_, reserved := cn.calls[id]
	cn.nextID = id - 1 // the next id would be id if it were free
	cn.mu.Unlock()
	if !reserved {
		t.Fatalf("request %d was released before its done", id)
	}
	res = goExecute(t.Context(), c, wire.Execute{Script: "y"})
	f := fc.expect(wire.TypeExecute, nil)
	if f.RequestID == id {
		t.Fatalf("execute on request %d, still live on the supervisor", id)
	}
	fc.send(id, wire.TypeDone, wire.Done{ExitReason: wire.ExitCancelled})
	fc.answer(f.RequestID, "", "null")
	if r := await(t, res); r.err != nil {
		t.Fatalf("Execute() = %v, want nil", r.err)
	}
	cn.mu.Lock()
	_, reserved = cn.calls[id]
	cn.mu.Unlock()
	if reserved {
		t.Fatalf("request %d still reserved after its done", id)
	}
}

func TestCancelWhileDialing(t *testing.T) {
	path := socketPath(t)
	fs := startFake(t, path)
	c, _ := newClient(t, path, Config{DialTimeout: time.Minute})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	res := goExecute(ctx, c, wire.Execute{Script: "x"})
	fc := fs.accept()
	fc.expect(wire.TypeHello, nil) // and never answer
	r := await(t, res)
	if !errors.Is(r.err, context.DeadlineExceeded) {
		t.Fatalf("Execute() = %v, %v, want %v", r.out, r.err, context.DeadlineExceeded)
	}
}

func TestServerClosesMidExecution(t *testing.T) {
	const n = 5
	path := socketPath(t)
	fs := startFake(t, path)
	c, hook := newClient(t, path, Config{})
	var results []<-chan execResult
	for i := range n {
		results = append(results, goExecute(t.Context(), c, wire.Execute{Script: fmt.Sprint(i)}))
	}
	status := make(chan error, 1)
	fc := fs.accept()
	fc.greet()
	for range n {
		f := fc.expect(wire.TypeExecute, nil)
		fc.send(f.RequestID, wire.TypeStdout, wire.Chunk{Data: []byte("partial")})
	}
	go func() {
		_, err := c.Status(t.Context())
		status <- err
	}()
	fc.expect(wire.TypeStatusRequest, nil)
	fc.nc.Close()
	for i, ch := range results {
		r := await(t, ch)
		wantUnavailable(t, fmt.Sprintf("Execute(%d)", i), r.out, r.err)
	}
	select {
	case err := <-status:
		wantUnavailable(t, "Status", nil, err)
	case <-time.After(patience):
		t.Fatal("Status did not return")
	}
	waitLog(t, hook, logrus.WarnLevel, "supervisor connection lost", "in_flight", "socket", "error")
}

// waitLog waits for an entry with msg at level that has every key.
func waitLog(t *testing.T, hook *logtest.Hook, level logrus.Level, msg string, keys ...string) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for time.Now().Before(deadline) {
		for _, e := range hook.AllEntries() {
			if e.Level != level || e.Message != msg {
				continue
			}
			for _, k := range keys {
				if _, ok := e.Data[k]; !ok {
					t.Fatalf("log %q has fields %v, want %q", msg, e.Data, k)
				}
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %s log %q", level, msg)
}

func TestReconnectAfterRestart(t *testing.T) {
	path := socketPath(t)
	fs := startFake(t, path)
	c, _ := newClient(t, path, Config{})
	executeOnNewConn(t, c, fs, "Execute()", "1")

	// The supervisor goes away: calls fail as unavailable...
	fs.stop()
	out, err := c.Execute(t.Context(), wire.Execute{Script: "2"}, nil)
	wantUnavailable(t, "Execute while the supervisor is down", out, err)

	// ...and heal once it is back on the same path.
	executeOnNewConn(t, c, startFake(t, path), "Execute() after restart", "3")
}

// TestRestartBetweenCalls checks that a restart between two calls costs the
// caller nothing: the request was never sent on the dead connection.
func TestRestartBetweenCalls(t *testing.T) {
	path := socketPath(t)
	fs := startFake(t, path)
	c, _ := newClient(t, path, Config{})
	executeOnNewConn(t, c, fs, "Execute()", "1")
	fs.stop()
	executeOnNewConn(t, c, startFake(t, path), "Execute() after restart", "2")
}

func TestServerProtocolViolation(t *testing.T) {
	header := func(n uint32, id uint32, typ wire.Type, version uint8) []byte {
		h := make([]byte, wire.HeaderSize)
		binary.BigEndian.PutUint32(h[0:4], n)
		binary.BigEndian.PutUint32(h[4:8], id)
		h[8], h[9] = uint8(typ), version
		return h
	}
	const limit = 1 << 10
	for _, tc := range []struct {
		name string
		send func(fc *fakeConn, id uint32)
		want string // in the error
		is   error  // wrapped by the error, if not nil
	}{
		{"oversize frame", func(fc *fakeConn, id uint32) {
			fc.sendRaw(header(limit+1, id, wire.TypeStdout, wire.Version))
		}, "frame too large", wire.ErrFrameTooLarge},
		{"unknown type", func(fc *fakeConn, id uint32) {
			fc.sendRaw(append(header(1, id, wire.Type(0x7f), wire.Version), 0x80))
		}, "type(0x7f)", nil},
		{"bad body", func(fc *fakeConn, id uint32) {
			fc.sendRaw(append(header(5, id, wire.TypeStdout, wire.Version), 0x81, 0xa4, 'd', 'a', 't'))
		}, "protocol error", nil},
		{"hostile body length", func(fc *fakeConn, id uint32) {
			body := []byte{0x81, 0xa4, 'd', 'a', 't', 'a', 0xc6, 0xff, 0xff, 0xff, 0xff}
			fc.sendRaw(append(header(uint32(len(body)), id, wire.TypeStdout, wire.Version), body...))
		}, "protocol error", nil},
		{"wrong frame version", func(fc *fakeConn, id uint32) {
			fc.sendRaw(append(header(1, id, wire.TypeDone, 2), 0x80))
		}, "frame version 2", nil},
		{"client-bound type", func(fc *fakeConn, id uint32) {
			fc.send(id, wire.TypeExecute, wire.Execute{})
		}, "unexpected execute", nil},
		{"status on an execution's id", func(fc *fakeConn, id uint32) {
			fc.send(id, wire.TypeStatus, wire.Status{})
		}, "status on request", nil},
		{"second result", func(fc *fakeConn, id uint32) {
			fc.send(id, wire.TypeResult, wire.Result{JSON: []byte("1")})
			fc.send(id, wire.TypeError, wire.Error{Type: wire.ErrException})
		}, "second result", nil},
		{"connection-level error", func(fc *fakeConn, id uint32) {
			fc.send(0, wire.TypeError, wire.Error{Type: wire.ErrProtocol, Message: "you sent garbage"})
		}, "you sent garbage", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := socketPath(t)
			fs := startFake(t, path)
			c, _ := newClient(t, path, Config{MaxFrame: limit})
			res := goExecute(t.Context(), c, wire.Execute{Script: "x"})
			fc := fs.accept()
			fc.greet()
			tc.send(fc, fc.expect(wire.TypeExecute, nil).RequestID)
			r := await(t, res)
			wantUnavailable(t, "Execute", r.out, r.err)
			if !strings.Contains(r.err.Error(), tc.want) || (tc.is != nil && !errors.Is(r.err, tc.is)) {
				t.Fatalf("Execute() = %v, want an error naming %q", r.err, tc.want)
			}
			fc.expectClosed()

			// The next call dials a fresh connection.
			executeOnNewConn(t, c, fs, "Execute() on a new connection", "true")
		})
	}
}

func TestFrameForUnknownIDDropped(t *testing.T) {
	path := socketPath(t)
	fs := startFake(t, path)
	c, hook := newClient(t, path, Config{})
	res := goExecute(t.Context(), c, wire.Execute{Script: "x"})
	fc := fs.accept()
	fc.greet()
	id := fc.expect(wire.TypeExecute, nil).RequestID
	fc.send(id+100, wire.TypeStdout, wire.Chunk{Data: []byte("not yours")})
	fc.send(id+100, wire.TypeDone, wire.Done{})
	fc.send(0, wire.TypeStdout, wire.Chunk{Data: []byte("nobody's")})
	fc.send(0, wire.TypeStatus, wire.Status{}) // nobody asked
	fc.answer(id, "mine", "1")
	r := await(t, res)
	if r.err != nil || string(r.out.Stdout) != "mine" {
		t.Fatalf("Execute() = %+v, %v, want stdout %q only", r.out, r.err, "mine")
	}
	waitLog(t, hook, logrus.DebugLevel, "dropped frame for no live request", "request_id", "type", "socket")
}

func TestStatus(t *testing.T) {
	path := socketPath(t)
	fs := startFake(t, path)
	c, _ := newClient(t, path, Config{})
	want := wire.Status{Software: "fake", Engine: "warm", Isolation: "full", Cgroups: "v2", Running: 1, Slots: 2, QueueSize: 8}
	const n = 5
	got := make(chan *wire.Status, n)
	errs := make(chan error, n)
	for range n {
		go func() {
			st, err := c.Status(t.Context())
			errs <- err
			got <- st
		}()
	}
	fc := fs.accept()
	fc.greet()
	for range n {
		if f := fc.expect(wire.TypeStatusRequest, &wire.Empty{}); f.RequestID != 0 {
			t.Fatalf("status_request on request %d, want 0", f.RequestID)
		}
		fc.send(0, wire.TypeStatus, want)
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("Status() = %v, want nil", err)
		}
		if st := <-got; !reflect.DeepEqual(*st, want) {
			t.Fatalf("Status() = %+v, want %+v", st, want)
		}
	}
}

func TestStatusGivesUp(t *testing.T) {
	path := socketPath(t)
	fs := startFake(t, path)
	c, _ := newClient(t, path, Config{})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	errs := make(chan error, 1)
	go func() {
		_, err := c.Status(ctx)
		errs <- err
	}()
	fc := fs.accept()
	fc.greet()
	fc.expect(wire.TypeStatusRequest, nil)
	if err := <-errs; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Status() = %v, want %v", err, context.DeadlineExceeded)
	}
	// The late answer goes to the caller that gave up, not to the next one.
	fc.send(0, wire.TypeStatus, wire.Status{Engine: "stale"})
	go func() {
		st, err := c.Status(t.Context())
		if err == nil && st.Engine != "fresh" {
			err = fmt.Errorf("engine %q", st.Engine)
		}
		errs <- err
	}()
	fc.expect(wire.TypeStatusRequest, nil)
	fc.send(0, wire.TypeStatus, wire.Status{Engine: "fresh"})
	if err := <-errs; err != nil {
		t.Fatalf("Status() = %v, want the fresh answer", err)
	}
}

func TestClose(t *testing.T) {
	path := socketPath(t)
	fs := startFake(t, path)
	c, _ := newClient(t, path, Config{})
	res := goExecute(t.Context(), c, wire.Execute{Script: "x"})
	fc := fs.accept()
	fc.greet()
	fc.expect(wire.TypeExecute, nil)
	if err := c.Close(); err != nil {
		t.Fatalf("Close() = %v, want nil", err)
	}
	r := await(t, res)
	if !errors.Is(r.err, ErrClosed) || !errors.Is(r.err, ErrUnavailable) {
		t.Fatalf("in-flight Execute() = %v, want ErrClosed and ErrUnavailable", r.err)
	}
	fc.expectClosed()
	out, err := c.Execute(t.Context(), wire.Execute{Script: "y"}, nil)
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("Execute() after Close = %v, %v, want ErrClosed", out, err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close() = %v, want nil", err)
	}
	fs.noConnection()
}

func TestRequestTooLarge(t *testing.T) {
	path := socketPath(t)
	fs := startFake(t, path)
	c, _ := newClient(t, path, Config{MaxFrame: 64})
	out, err := c.Execute(t.Context(), wire.Execute{Script: strings.Repeat("x", 64)}, nil)
	if !errors.Is(err, wire.ErrFrameTooLarge) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("Execute() = %v, %v, want wire.ErrFrameTooLarge and no transport failure", out, err)
	}
	fs.noConnection()
}

// TestExecuteWriteBlocked checks that a caller stuck writing to a supervisor
// that does not read gets its ctx error in time, and that the connection the
// partial frame broke is replaced.
func TestExecuteWriteBlocked(t *testing.T) {
	path := socketPath(t)
	fs := startFake(t, path)
	c, _ := newClient(t, path, Config{})
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	res := goExecute(ctx, c, wire.Execute{Script: strings.Repeat("#", 8<<20)})
	fc := fs.accept()
	fc.greet() // and read nothing more for now
	r := await(t, res)
	if !errors.Is(r.err, context.DeadlineExceeded) {
		t.Fatalf("Execute() = %v, %v, want %v", r.out, r.err, context.DeadlineExceeded)
	}
	fc.expectClosed()

	res = goExecute(t.Context(), c, wire.Execute{Script: "small"})
	fc2 := fs.accept()
	fc2.greet()
	fc2.answer(fc2.expect(wire.TypeExecute, nil).RequestID, "", "1")
	if r := await(t, res); r.err != nil {
		t.Fatalf("Execute() on a new connection = %v, want nil", r.err)
	}
}

// A socket served by anyone but the expected uid gets nothing sent to it.
func TestServerIdentityChecked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan int, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- len(b)
	}()
	c, _ := newClient(t, path, Config{ServerUID: os.Getuid() + 1})
	_, err = c.Status(context.Background())
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "runs as uid") {
		t.Fatalf("Status against a foreign server = %v, want ErrUnavailable naming the uid", err)
	}
	if n := <-got; n != 0 {
		t.Fatalf("the client sent %d bytes to a foreign server, want 0", n)
	}
}

// TestExecuteImages: on a connection that agreed to wire.FeatureImages the
// result's figures reach the Outcome as sent.
func TestExecuteImages(t *testing.T) {
	path := socketPath(t)
	fs := startFake(t, path)
	c, _ := newClient(t, path, Config{Features: []string{wire.FeatureImages}})
	res := goExecute(t.Context(), c, wire.Execute{Script: "def main(): return 1"})

	fc := fs.accept()
	var h wire.Hello
	fc.expect(wire.TypeHello, &h)
	if !slices.Contains(h.Features, wire.FeatureImages) {
		t.Fatalf("hello features %v, want %q", h.Features, wire.FeatureImages)
	}
	fc.send(0, wire.TypeHello, wire.Hello{Version: int(wire.Version), Software: "fake-supervisor", Features: []string{wire.FeatureImages}})
	f := fc.expect(wire.TypeExecute, nil)
	png := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR...")
	fc.send(f.RequestID, wire.TypeResult, wire.Result{JSON: []byte("1"), Images: []wire.Image{{MediaType: "image/png", Data: png}}, ImagesTruncated: true})
	fc.send(f.RequestID, wire.TypeDone, wire.Done{ExitReason: wire.ExitOK})
	r := await(t, res)
	if r.err != nil || string(r.out.Result) != "1" || len(r.out.Images) != 1 || r.out.Images[0].MediaType != "image/png" || !bytes.Equal(r.out.Images[0].Data, png) || !r.out.ImagesTruncated {
		t.Fatalf("Execute() = %+v, %v, want the result, one image and truncated", r.out, r.err)
	}
	if fs, err := c.Features(t.Context()); err != nil || !fs.Has(wire.FeatureImages) {
		t.Fatalf("Features() = %v, %v, want images agreed", fs, err)
	}
}

// Stream yields each chunk as it arrives, before the execution ends, then the
// outcome; leaving the loop cancels the execution.
func TestStream(t *testing.T) {
	path := socketPath(t)
	fs := startFake(t, path)
	c, _ := newClient(t, path, Config{})
	type item struct {
		ev  StreamEvent
		err error
	}
	items := make(chan item, 16)
	go func() {
		defer close(items)
		for ev, err := range c.Stream(t.Context(), wire.Execute{Script: "s"}) {
			items <- item{ev, err}
		}
	}()
	next := func() item {
		t.Helper()
		select {
		case it, ok := <-items:
			if !ok {
				t.Fatal("the stream ended early")
			}
			return it
		case <-time.After(5 * time.Second):
			t.Fatal("no stream item")
		}
		return item{}
	}
	fc := fs.accept()
	fc.greet()
	id := fc.expect(wire.TypeExecute, nil).RequestID
	fc.send(id, wire.TypeStdout, wire.Chunk{Data: []byte("one")})
	// Delivered while the execution still runs.
	if it := next(); it.err != nil || it.ev.Type != wire.TypeStdout || string(it.ev.Data) != "one" || it.ev.Outcome != nil {
		t.Fatalf("first item = %+v, want the stdout chunk", it)
	}
	fc.send(id, wire.TypeStderr, wire.Chunk{Data: []byte("two")})
	fc.send(id, wire.TypeResult, wire.Result{JSON: []byte(`3`)})
	fc.send(id, wire.TypeDone, wire.Done{ExitReason: wire.ExitOK})
	if it := next(); it.err != nil || it.ev.Type != wire.TypeStderr || string(it.ev.Data) != "two" {
		t.Fatalf("second item = %+v, want the stderr chunk", it)
	}
	if it := next(); it.err != nil || it.ev.Type != wire.TypeDone || it.ev.Outcome == nil || string(it.ev.Outcome.Result) != "3" || string(it.ev.Outcome.Stdout) != "one" {
		t.Fatalf("last item = %+v, want the outcome", it)
	}
	if _, ok := <-items; ok {
		t.Fatal("an item after the outcome")
	}

	// Breaking out of the loop cancels the execution on the supervisor.
	got := make(chan struct{})
	go func() {
		defer close(got)
		for ev := range c.Stream(t.Context(), wire.Execute{Script: "s"}) {
			_ = ev
			break
		}
	}()
	id = fc.expect(wire.TypeExecute, nil).RequestID
	fc.send(id, wire.TypeStdout, wire.Chunk{Data: []byte("x")})
	if f := fc.next(); f.Type != wire.TypeCancel || f.RequestID != id {
		t.Fatalf("after break the supervisor got %s on %d, want cancel on %d", f.Type, f.RequestID, id)
	}
	<-got

	// A transport failure is the only item, an error.
	fs.stop()
	fc.nc.Close()
	n := 0
	var last error
	for ev, err := range c.Stream(t.Context(), wire.Execute{Script: "s"}) {
		n++
		if ev.Type != 0 || ev.Outcome != nil {
			t.Errorf("item with a transport failure = %+v, want zero", ev)
		}
		last = err
	}
	if n != 1 || !errors.Is(last, ErrUnavailable) {
		t.Fatalf("stream with no supervisor: %d items, last error %v; want one item wrapping ErrUnavailable", n, last)
	}
}
