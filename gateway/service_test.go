package gateway

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/python-executor/python-executor/client"
	"github.com/python-executor/python-executor/wire"
)

// The gateway tells the supervisor how long it waits for a start, reports
// the time queued, and its deadline counts the queue wait.
func TestQueueWaitPassedOnAndReported(t *testing.T) {
	f := &fakeExec{execute: func(ctx context.Context, _ wire.Execute) (*client.Outcome, error) {
		return &client.Outcome{Result: []byte(`1`), Done: wire.Done{ExitReason: wire.ExitOK, QueueMS: 42}}, nil
	}}
	ts := start(t, f, func(c *Config) { c.MaxQueueWait = 3 * time.Second })
	r := postJSON(t, ts, `{"script":"x"}`)
	if r.status != 200 || !strings.Contains(r.body, `"peak_memory_bytes":0,"queue_ms":42}`) {
		t.Fatalf("got %d %s, want stats with queue_ms 42", r.status, r.body)
	}
	if got := f.lastReq(t).MaxQueueMS; got != 3000 {
		t.Fatalf("max_queue_ms %d, want 3000", got)
	}
	// A busy answer from the supervisor is a 503 with Retry-After.
	f.execute = func(ctx context.Context, _ wire.Execute) (*client.Outcome, error) {
		return &client.Outcome{Err: &wire.Error{Type: wire.ErrBusy, Message: "no slot"}, Done: wire.Done{ExitReason: wire.ExitError}}, nil
	}
	r = postJSON(t, ts, `{"script":"x"}`)
	checkError(t, r, 503, "busy")
	if r.header.Get("Retry-After") == "" {
		t.Fatal("busy without Retry-After")
	}
}

// A supervisor that cannot run executions makes /health 503 with its reason.
func TestHealthNotReady(t *testing.T) {
	f := &fakeExec{status: func(context.Context) (*wire.Status, error) {
		return &wire.Status{Engine: "warm", Isolation: "full", Cgroups: "v1", NotReady: "no zygote has been ready for 6s"}, nil
	}}
	ts := start(t, f)
	r := do(t, "GET", ts.url+"/health", "", "", nil)
	if r.status != 503 || r.body != `{"status":"unhealthy","supervisor":"reachable","engine":"warm","isolation":"full","cgroups":"v1","reason":"no zygote has been ready for 6s"}` {
		t.Fatalf("got %d %s", r.status, r.body)
	}
}

// While draining, /health is 503 and new executions are refused with
// unavailable; the one in flight still gets its answer.
func TestDrain(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	f := &fakeExec{execute: func(ctx context.Context, _ wire.Execute) (*client.Outcome, error) {
		started <- struct{}{}
		<-release
		return &client.Outcome{Result: []byte(`1`)}, nil
	}}
	ts := start(t, f)
	got := make(chan reply, 1)
	go func() { got <- tryPost(ts, `{"script":"x"}`) }()
	waitStarted(t, started)
	ts.cancel()
	deadline := time.Now().Add(2 * time.Second)
	for {
		r := do(t, "GET", ts.url+"/health", "", "", nil)
		if r.status == 503 {
			if r.body != `{"status":"unhealthy","reason":"shutting down"}` {
				t.Fatalf("draining health %s", r.body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health %d %s while draining", r.status, r.body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	checkError(t, postJSON(t, ts, `{"script":"x"}`), 503, "unavailable")
	close(release)
	if r := <-got; r.status != 200 {
		t.Fatalf("in-flight: %d %s", r.status, r.body)
	}
	if err := <-ts.errc; err != nil {
		t.Errorf("Serve() = %v, want nil", err)
	}
	ts.errc <- nil
}

// Connections over the per-address cap are answered 429 at once; the
// count is released when a connection closes.
func TestMaxConnsPerIP(t *testing.T) {
	ts := start(t, &fakeExec{}, func(c *Config) { c.MaxConnsPerIP = 2 })
	a, b := dial(t, ts.addr), dial(t, ts.addr)
	defer b.Close()
	time.Sleep(50 * time.Millisecond) // let the server accept both
	c := dial(t, ts.addr)
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 512)
	n, _ := c.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 429 ") || !strings.Contains(string(buf[:n]), `"type":"too_many_connections"`) {
		t.Fatalf("third connection read %q, want a 429", buf[:n])
	}
	a.Close()
	deadline := time.Now().Add(2 * time.Second)
	for {
		d := dial(t, ts.addr)
		d.Write([]byte("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
		d.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _ := d.Read(buf)
		d.Close()
		if strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200 ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after one closed, a new connection read %q", buf[:n])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The defaults cap connections and close idle ones well before the old 60 s.
func TestConnectionDefaults(t *testing.T) {
	c := DefaultConfig()
	if c.MaxConns <= 0 || c.MaxConnsPerIP <= 0 || c.IdleTimeout > 15*time.Second || c.ReadTimeout > 10*time.Second {
		t.Fatalf("defaults: conns %d per ip %d idle %v read %v", c.MaxConns, c.MaxConnsPerIP, c.IdleTimeout, c.ReadTimeout)
	}
	if c.ShutdownTimeout >= 10*time.Second {
		t.Fatalf("drain limit %v does not fit Cloud Run's 10 s", c.ShutdownTimeout)
	}
}
