package supervisor

import (
	"context"
	"sync"
	"time"
)

// admission bounds concurrency: at most slots executions run, at most queue
// more wait, each for a bounded time; anyone past that is refused rather
// than left to run into its caller's deadline.
type admission struct {
	slots chan struct{}
	queue int

	mu      sync.Mutex // guards waiting and closed
	waiting int
	closed  bool
}

func newAdmission(slots, queue int) *admission {
	return &admission{slots: make(chan struct{}, slots), queue: queue}
}

// Why enter refused.
type refusal int

const (
	admitted      refusal = iota
	queueFull             // the queue was full on arrival
	waitedTooLong         // no slot came free within maxWait
	ctxDone               // ctx ended while waiting
	draining              // the server is shutting down
)

// enter waits for a slot. It refuses at once when the queue is full or the
// server drains, and gives up when no slot comes free within maxWait or
// ctx ends. waited is the time spent queued. The caller must call release
// exactly once after an admitted result.
func (a *admission) enter(ctx context.Context, maxWait time.Duration) (release func(), waited time.Duration, why refusal) {
	release = func() { <-a.slots }
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil, 0, draining
	}
	a.mu.Unlock()
	select {
	case a.slots <- struct{}{}:
		return release, 0, admitted
	default:
	}
	a.mu.Lock()
	if a.waiting >= a.queue {
		a.mu.Unlock()
		return nil, 0, queueFull
	}
	a.waiting++
	a.mu.Unlock()
	start := time.Now()
	defer func() {
		a.mu.Lock()
		a.waiting--
		a.mu.Unlock()
	}()
	timer := time.NewTimer(maxWait)
	defer timer.Stop()
	select {
	case a.slots <- struct{}{}:
		return release, time.Since(start), admitted
	case <-timer.C:
		return nil, time.Since(start), waitedTooLong
	case <-ctx.Done():
		return nil, time.Since(start), ctxDone
	}
}

// close refuses every later enter; executions already admitted go on.
func (a *admission) close() {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
}

// counts reports how many executions run and wait.
func (a *admission) counts() (running, queued int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.slots), a.waiting
}
