package supervisor

import (
	"context"
	"sync"
)

// admission bounds concurrency: at most slots executions run, at most queue
// more wait; anyone past that is refused at once rather than left to time out.
type admission struct {
	slots chan struct{}
	queue int

	mu      sync.Mutex // guards waiting
	waiting int
}

func newAdmission(slots, queue int) *admission {
	return &admission{slots: make(chan struct{}, slots), queue: queue}
}

// enter waits for a slot. It reports false at once when the queue is full,
// or when ctx ends while waiting. The caller must call release exactly once
// after a true result.
func (a *admission) enter(ctx context.Context) (release func(), ok bool) {
	release = func() { <-a.slots }
	select {
	case a.slots <- struct{}{}:
		return release, true
	default:
	}
	a.mu.Lock()
	if a.waiting >= a.queue {
		a.mu.Unlock()
		return nil, false
	}
	a.waiting++
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.waiting--
		a.mu.Unlock()
	}()
	select {
	case a.slots <- struct{}{}:
		return release, true
	case <-ctx.Done():
		return nil, false
	}
}

// counts reports how many executions run and wait.
func (a *admission) counts() (running, queued int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.slots), a.waiting
}
