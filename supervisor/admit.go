package supervisor

import (
	"context"
	"sync"
	"time"
)

// admission bounds concurrency: at most slots executions run, at most queue
// more wait, each for a bounded time; anyone past that is refused rather
// than left to run into its caller's deadline.
//
// It is also fair between clients (see Config.ClientSlots): every client
// but the uncapped ones (the gateway and root) may hold at most clientSlots of the
// slots and clientQueue of the queue places, so one busy internal consumer
// cannot take every slot and queue place from the gateway. Waiters are
// served first come, first served, skipping a waiter whose client already
// runs its share: a free slot goes to the oldest waiter that may take it.
type admission struct {
	slots       int
	queue       int
	clientSlots int             // per capped client; >= 1
	clientQueue int             // per capped client; >= 0
	uncapped    map[string]bool // the clients the caps do not apply to

	mu      sync.Mutex // guards everything below
	running int
	// lingering counts the admitted executions whose processes are gone
	// but whose bookkeeping goes on: they hold no slot (see linger).
	lingering int
	waiting   []*waiter // FIFO
	clients   map[string]*clientUse
	closed    bool
}

// clientUse is what one client holds; dropped when it holds nothing.
type clientUse struct{ running, waiting int }

// waiter is one queued enter; granted is closed when it got a slot.
type waiter struct {
	client  string
	granted chan struct{}
	done    bool // granted (under admission.mu)
}

// newAdmission returns an admission with slots slots and queue queue places;
// clients not among uncapped get at most clientSlots and clientQueue of them
// (clientSlots is raised to 1: every client may run something).
func newAdmission(slots, queue, clientSlots, clientQueue int, uncapped ...string) *admission {
	free := make(map[string]bool, len(uncapped))
	for _, c := range uncapped {
		free[c] = true
	}
	return &admission{
		slots: slots, queue: queue,
		clientSlots: max(1, clientSlots), clientQueue: max(0, clientQueue),
		uncapped: free,
		clients:  make(map[string]*clientUse),
	}
}

// Why enter refused.
type refusal int

const (
	admitted      refusal = iota
	queueFull             // the queue was full on arrival
	clientFull            // the client's share of the queue was full on arrival
	waitedTooLong         // no slot came free within maxWait
	ctxDone               // ctx ended while waiting
	draining              // the server is shutting down
)

// use returns client's counters, creating them.
func (a *admission) use(client string) *clientUse {
	u := a.clients[client]
	if u == nil {
		u = &clientUse{}
		a.clients[client] = u
	}
	return u
}

// forget drops client's counters once it holds nothing.
func (a *admission) forget(client string) {
	if u := a.clients[client]; u != nil && u.running == 0 && u.waiting == 0 {
		delete(a.clients, client)
	}
}

// mayRun reports whether client may take a free slot now (a.mu held).
func (a *admission) mayRun(client string) bool {
	if a.running >= a.slots {
		return false
	}
	return a.uncapped[client] || a.clients[client] == nil || a.clients[client].running < a.clientSlots
}

// enter waits for a slot for client. It refuses at once when the queue (or
// the client's share of it) is full or the server drains, and gives up when
// no slot comes free within maxWait or ctx ends. waited is the time spent
// queued. The caller must call release exactly once after an admitted result.
func (a *admission) enter(ctx context.Context, client string, maxWait time.Duration) (release func(), waited time.Duration, why refusal) {
	release = sync.OnceFunc(func() { a.release(client) })
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil, 0, draining
	}
	// A newcomer does not overtake the queue: it runs at once only when
	// nobody who could take the slot is waiting.
	if a.mayRun(client) && !a.someoneMayRun() {
		a.running++
		a.use(client).running++
		a.mu.Unlock()
		return release, 0, admitted
	}
	if len(a.waiting) >= a.queue {
		a.mu.Unlock()
		return nil, 0, queueFull
	}
	u := a.use(client)
	if !a.uncapped[client] && u.waiting >= a.clientQueue {
		a.forget(client)
		a.mu.Unlock()
		return nil, 0, clientFull
	}
	w := &waiter{client: client, granted: make(chan struct{})}
	a.waiting = append(a.waiting, w)
	u.waiting++
	a.mu.Unlock()

	start := time.Now()
	timer := time.NewTimer(maxWait)
	defer timer.Stop()
	select {
	case <-w.granted:
		return release, time.Since(start), admitted
	case <-timer.C:
		why = waitedTooLong
	case <-ctx.Done():
		why = ctxDone
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if w.done {
		// Granted as the wait ended: the slot is ours, and taking it
		// is better than handing it back.
		return release, time.Since(start), admitted
	}
	a.dequeue(w)
	return nil, time.Since(start), why
}

// someoneMayRun reports whether a queued waiter could take a free slot now
// (a.mu held).
func (a *admission) someoneMayRun() bool {
	for _, w := range a.waiting {
		if a.mayRun(w.client) {
			return true
		}
	}
	return false
}

// dequeue removes w from the queue (a.mu held).
func (a *admission) dequeue(w *waiter) {
	for i, x := range a.waiting {
		if x == w {
			a.waiting = append(a.waiting[:i], a.waiting[i+1:]...)
			break
		}
	}
	a.use(w.client).waiting--
	a.forget(w.client)
}

// release frees client's slot and hands free slots to the oldest waiters
// that may take them.
func (a *admission) release(client string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.running--
	a.use(client).running--
	a.forget(client)
	a.grant()
}

// grant gives free slots to waiters in order, skipping those whose client
// runs its share (a.mu held).
func (a *admission) grant() {
	for i := 0; i < len(a.waiting) && a.running < a.slots; {
		w := a.waiting[i]
		if !a.mayRun(w.client) {
			i++
			continue
		}
		a.waiting = append(a.waiting[:i], a.waiting[i+1:]...)
		u := a.use(w.client)
		u.waiting--
		u.running++
		a.running++
		w.done = true
		close(w.granted)
	}
}

// linger reports whether an execution whose processes are all gone may
// give its slot back before it has finished (the zygote's report, the
// cgroup's removal). At most slots executions linger at once: a zygote
// that stops reaping cannot make executions pile up past twice the slots.
// A true answer must be matched by one unlinger, after the slot's release.
func (a *admission) linger() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.lingering >= a.slots {
		return false
	}
	a.lingering++
	return true
}

// unlinger ends a lingering execution (see linger).
func (a *admission) unlinger() {
	a.mu.Lock()
	a.lingering--
	a.mu.Unlock()
}

// close refuses every later enter; executions already admitted or queued go
// on.
func (a *admission) close() {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
}

// counts reports how many executions run and wait. The running include
// the lingering ones: they have not ended (their answer may not have gone
// out yet), and a drain waits for them.
func (a *admission) counts() (running, queued int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.running + a.lingering, len(a.waiting)
}

// clientCounts reports how many executions client runs and has waiting.
func (a *admission) clientCounts(client string) (running, queued int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if u := a.clients[client]; u != nil {
		return u.running, u.waiting
	}
	return 0, 0
}
