package supervisor

import (
	"context"
	"testing"
	"time"
)

// A queued execution waits at most maxWait, then is refused; one admitted
// after waiting reports how long; after close nothing new is admitted.
func TestAdmissionBoundsTheQueueWait(t *testing.T) {
	a := newAdmission(1, 4)
	release, waited, why := a.enter(context.Background(), time.Second)
	if why != admitted || waited != 0 {
		t.Fatalf("free slot: %v after %v", why, waited)
	}
	begin := time.Now()
	if _, waited, why := a.enter(context.Background(), 100*time.Millisecond); why != waitedTooLong || waited < 100*time.Millisecond || time.Since(begin) > time.Second {
		t.Fatalf("full: %v after %v, want waitedTooLong after 100ms", why, waited)
	}
	go func() { time.Sleep(50 * time.Millisecond); release() }()
	release2, waited, why := a.enter(context.Background(), time.Second)
	if why != admitted || waited < 40*time.Millisecond {
		t.Fatalf("slot freed while queued: %v after %v", why, waited)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, why := a.enter(ctx, time.Second); why != ctxDone {
		t.Fatalf("cancelled while queued: %v", why)
	}
	a.close()
	release2()
	if _, _, why := a.enter(context.Background(), time.Second); why != draining {
		t.Fatalf("after close: %v, want draining", why)
	}
	if r, q := a.counts(); r != 0 || q != 0 {
		t.Fatalf("counts %d running %d queued, want none", r, q)
	}
}

// With a zero-size queue, a full server refuses at once.
func TestAdmissionQueueFull(t *testing.T) {
	a := newAdmission(1, 0)
	release, _, _ := a.enter(context.Background(), time.Second)
	defer release()
	if _, _, why := a.enter(context.Background(), time.Second); why != queueFull {
		t.Fatalf("got %v, want queueFull", why)
	}
}
