package supervisor_test

import (
	"context"
	"testing"
	"time"

	"github.com/python-executor/python-executor/client"
	"github.com/python-executor/python-executor/wire"
)

// SIGTERM to the supervisor alone (Ctrl-C reaches every process of the
// group) drains too: the execution in flight finishes, a new one is refused
// busy, the status says "shutting down", and then it exits cleanly.
func TestSupervisorDrainsOnSIGTERM(t *testing.T) {
	inst := startSupervisor(t, "cold")
	// Stop closes inst.Client first; this connection outlives that.
	c := client.New(client.Config{SocketPath: inst.Socket})
	defer c.Close()
	done := make(chan *client.Outcome, 1)
	go func() {
		out, err := c.Execute(context.Background(), wire.Execute{Script: "import time\ndef main():\n    time.sleep(3)\n    return 1\n"}, nil)
		if err != nil {
			t.Errorf("in-flight Execute: %v", err)
		}
		done <- out
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if st, err := c.Status(context.Background()); err == nil && st.Running == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the execution did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopped := make(chan struct{})
	go func() { inst.Stop(t); close(stopped) }()
	deadline = time.Now().Add(2 * time.Second)
	for {
		st, err := c.Status(context.Background())
		if err == nil && st.NotReady == "shutting down" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status during the drain: %+v %v", st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, err := c.Execute(context.Background(), wire.Execute{Script: "def main(): return 2"}, nil)
	if err != nil || out.Err == nil || out.Err.Type != wire.ErrBusy {
		t.Fatalf("a new execution during the drain: %+v %v, want busy", out, err)
	}
	if out := <-done; out == nil {
		t.Fatal("no outcome")
	} else {
		wantResult(t, out, "1")
	}
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("the supervisor did not stop after the drain")
	}
}
