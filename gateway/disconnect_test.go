package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/python-executor/python-executor/client"
	"github.com/python-executor/python-executor/wire"
)

// blockingExec blocks every execution until its context is done, and
// reports when it started and how it ended.
func blockingExec() (*fakeExec, chan struct{}, chan error) {
	started := make(chan struct{}, 10)
	ended := make(chan error, 10)
	f := &fakeExec{execute: func(ctx context.Context, _ wire.Execute) (*client.Outcome, error) {
		started <- struct{}{}
		<-ctx.Done()
		ended <- ctx.Err()
		return nil, fmt.Errorf("execute: %w", ctx.Err())
	}}
	return f, started, ended
}

func waitStarted(t *testing.T, started chan struct{}) {
	t.Helper()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("the execution did not start")
	}
}

const executeRequest = "POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n{\"script\":\"x\"}"

func TestClientDisconnectCancels(t *testing.T) {
	tests := []struct {
		name  string
		leave func(*net.TCPConn)
	}{
		{"close", func(c *net.TCPConn) { c.Close() }},
		{"reset", func(c *net.TCPConn) { _ = c.SetLinger(0); c.Close() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, started, ended := blockingExec()
			ts := start(t, f)
			conn := dial(t, ts.addr).(*net.TCPConn)
			if _, err := io.WriteString(conn, executeRequest); err != nil {
				t.Fatal(err)
			}
			waitStarted(t, started)
			left := time.Now()
			tt.leave(conn)
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
			deadline := time.Now().Add(2 * time.Second)
			for !strings.Contains(ts.logs.String(), "client went away") && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if !strings.Contains(ts.logs.String(), "client went away") {
				t.Error("no log line for the cancellation")
			}
		})
	}
}

// TestConnectionUsableAfterWatch checks that the disconnect watcher leaves
// the connection as it found it: keep-alive requests after an execution,
// and pipelined ones, are served.
func TestConnectionUsableAfterWatch(t *testing.T) {
	f := &fakeExec{execute: func(ctx context.Context, req wire.Execute) (*client.Outcome, error) {
		if req.Script == "slow" {
			select {
			case <-time.After(400 * time.Millisecond):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return &client.Outcome{Result: []byte(`"` + req.Script + `"`)}, nil
	}}
	// Executions outlast the read timeout, which the watcher must lift and
	// fasthttp must re-arm.
	ts := start(t, f, func(c *Config) { c.ReadTimeout = 200 * time.Millisecond })

	t.Run("keep-alive", func(t *testing.T) {
		conn := dial(t, ts.addr)
		br := bufio.NewReader(conn)
		for i := 0; i < 3; i++ {
			body := `{"script":"slow"}`
			fmt.Fprintf(conn, "POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			expectResult(t, br, `"slow"`)
		}
	})
	t.Run("pipelined", func(t *testing.T) {
		conn := dial(t, ts.addr)
		br := bufio.NewReader(conn)
		var reqs strings.Builder
		for _, s := range []string{"slow", "b", "slow"} {
			body := `{"script":"` + s + `"}`
			fmt.Fprintf(&reqs, "POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		}
		if _, err := io.WriteString(conn, reqs.String()); err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"slow", "b", "slow"} {
			expectResult(t, br, `"`+s+`"`)
		}
	})
	t.Run("pipelined after the first request started", func(t *testing.T) {
		conn := dial(t, ts.addr)
		br := bufio.NewReader(conn)
		body := `{"script":"slow"}`
		req := fmt.Sprintf("POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		io.WriteString(conn, req)
		time.Sleep(100 * time.Millisecond) // the watcher is waiting now
		io.WriteString(conn, req)
		expectResult(t, br, `"slow"`)
		expectResult(t, br, `"slow"`)
	})
}

func expectResult(t *testing.T, br *bufio.Reader, result string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("ReadResponse: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(string(b), `{"result":`+result+`,`) {
		t.Fatalf("got %d %s, want result %s", resp.StatusCode, b, result)
	}
}

// TestSupervisorLateIsInternal checks the gateway's own backstop: a
// supervisor that never answers gets an internal error after the queue wait,
// the timeout and the grace period, on each way in (/execute, the NDJSON
// stream, the MCP tool), and each passes the queue wait on.
func TestSupervisorLateIsInternal(t *testing.T) {
	f, _, ended := blockingExec()
	ts := start(t, f, func(c *Config) { c.ExecuteGrace = 200 * time.Millisecond; c.MaxQueueWait = 100 * time.Millisecond })
	for _, way := range []string{"execute", "stream", "mcp"} {
		t.Run(way, func(t *testing.T) {
			begin := time.Now()
			switch way {
			case "execute":
				checkError(t, postJSON(t, ts, `{"script":"x","timeout":0.1}`), 500, "internal")
			case "stream":
				// A failure of the service is streamed as the done line.
				r, lines := postStream(t, ts, `{"script":"x","timeout":0.1}`)
				if r.status != 200 || len(lines) != 1 || lines[0].Event != "done" || lines[0].Status != 500 ||
					!strings.Contains(string(lines[0].Response), `"type":"internal"`) {
					t.Fatalf("got %d %s, want one done line with the internal error", r.status, r.body)
				}
			case "mcp":
				res := callRunPython(t, mcpConnect(t, ts.url), map[string]any{"script": "x", "timeout": 0.1})
				if e, _ := structured(t, res)["error"].(map[string]any); !res.IsError || e["type"] != "internal" {
					t.Fatalf("tool result %+v, want the internal error", res)
				}
			}
			if err := <-ended; !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("ctx.Err() = %v, want DeadlineExceeded", err)
			}
			if d := time.Since(begin); d < 400*time.Millisecond || d > 3*time.Second {
				t.Errorf("answered after %v, want about 400ms", d)
			}
			if got := f.lastReq(t).MaxQueueMS; got != 100 {
				t.Errorf("max_queue_ms %d, want 100", got)
			}
		})
	}
}

func TestShutdown(t *testing.T) {
	t.Run("in-flight execution finishes", func(t *testing.T) {
		release := make(chan struct{})
		started := make(chan struct{})
		f := &fakeExec{execute: func(ctx context.Context, _ wire.Execute) (*client.Outcome, error) {
			close(started)
			<-release
			return &client.Outcome{Result: []byte(`1`)}, nil
		}}
		ts := start(t, f)
		got := make(chan reply, 1)
		go func() { got <- tryPost(ts, `{"script":"x"}`) }()
		<-started
		ts.cancel()
		time.Sleep(100 * time.Millisecond)
		close(release)
		if r := <-got; r.status != 200 {
			t.Errorf("status = %d, want 200: %s", r.status, r.body)
		}
		if err := <-ts.errc; err != nil {
			t.Errorf("Serve() = %v, want nil", err)
		}
		ts.errc <- nil // for the cleanup
	})
	t.Run("grace period over cancels executions", func(t *testing.T) {
		f, started, ended := blockingExec()
		ts := start(t, f, func(c *Config) { c.ShutdownTimeout = 200 * time.Millisecond })
		got := make(chan reply, 1)
		go func() { got <- tryPost(ts, `{"script":"x"}`) }()
		waitStarted(t, started)
		ts.cancel()
		select {
		case err := <-ended:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("ctx.Err() = %v, want Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("execution not cancelled at the end of the grace period")
		}
		if err := <-ts.errc; err == nil || !strings.Contains(err.Error(), "shutdown") {
			t.Errorf("Serve() = %v, want a shutdown error", err)
		}
		ts.errc <- nil
		r := <-got
		checkError(t, r, 503, "unavailable")
	})
}
