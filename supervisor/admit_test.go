package supervisor

import (
	"context"
	"testing"
	"time"
)

// A queued execution waits at most maxWait, then is refused; one admitted
// after waiting reports how long; after close nothing new is admitted.
func TestAdmissionBoundsTheQueueWait(t *testing.T) {
	a := newAdmission(1, 4, 1, 4, ClientGateway)
	release, waited, why := a.enter(context.Background(), ClientGateway, time.Second)
	if why != admitted || waited != 0 {
		t.Fatalf("free slot: %v after %v", why, waited)
	}
	begin := time.Now()
	if _, waited, why := a.enter(context.Background(), ClientGateway, 100*time.Millisecond); why != waitedTooLong || waited < 100*time.Millisecond || time.Since(begin) > time.Second {
		t.Fatalf("full: %v after %v, want waitedTooLong after 100ms", why, waited)
	}
	go func() { time.Sleep(50 * time.Millisecond); release() }()
	release2, waited, why := a.enter(context.Background(), ClientGateway, time.Second)
	if why != admitted || waited < 40*time.Millisecond {
		t.Fatalf("slot freed while queued: %v after %v", why, waited)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, why := a.enter(ctx, ClientGateway, time.Second); why != ctxDone {
		t.Fatalf("cancelled while queued: %v", why)
	}
	a.close()
	release2()
	if _, _, why := a.enter(context.Background(), ClientGateway, time.Second); why != draining {
		t.Fatalf("after close: %v, want draining", why)
	}
	if r, q := a.counts(); r != 0 || q != 0 {
		t.Fatalf("counts %d running %d queued, want none", r, q)
	}
}

// With a zero-size queue, a full server refuses at once.
func TestAdmissionQueueFull(t *testing.T) {
	a := newAdmission(1, 0, 1, 0, ClientGateway)
	release, _, _ := a.enter(context.Background(), ClientGateway, time.Second)
	defer release()
	if _, _, why := a.enter(context.Background(), ClientGateway, time.Second); why != queueFull {
		t.Fatalf("got %v, want queueFull", why)
	}
}

// One busy internal client gets its share of the slots and of the queue and
// no more: past its queue share it is refused at once, while the gateway
// still runs at once and queues in the places left.
func TestAdmissionOneClientCannotStarveTheGateway(t *testing.T) {
	a := newAdmission(2, 4, 1, 2, ClientGateway, ClientRoot)
	bg := context.Background()
	busy, _, why := a.enter(bg, "batch", time.Second)
	if why != admitted {
		t.Fatalf("batch's first: %v", why)
	}
	// batch runs its share (1 slot): the next two queue, the third is
	// refused, though a slot and queue places are free.
	type result struct {
		release func()
		why     refusal
	}
	queued := make(chan result, 2)
	for range 2 {
		go func() {
			r, _, why := a.enter(bg, "batch", 5*time.Second)
			queued <- result{r, why}
		}()
	}
	waitCounts(t, a, "batch", 1, 2)
	if _, _, why := a.enter(bg, "batch", time.Second); why != clientFull {
		t.Fatalf("batch past its queue share: %v, want clientFull", why)
	}
	// The gateway takes the free slot at once, though batch waits.
	gw, waited, why := a.enter(bg, ClientGateway, time.Second)
	if why != admitted || waited != 0 {
		t.Fatalf("gateway with a slot free: %v after %v", why, waited)
	}
	// Both slots taken: the gateway queues in the places batch left, and
	// gets the next free slot before batch's older waiters, which may not
	// take it (batch still runs its share).
	gwQueued := make(chan result, 1)
	go func() {
		r, _, why := a.enter(bg, ClientGateway, 5*time.Second)
		gwQueued <- result{r, why}
	}()
	waitCounts(t, a, ClientGateway, 1, 1)
	gw()
	r := <-gwQueued
	if r.why != admitted {
		t.Fatalf("queued gateway: %v", r.why)
	}
	if run, q := a.clientCounts("batch"); run != 1 || q != 2 {
		t.Fatalf("batch runs %d and waits %d, want 1 and 2", run, q)
	}
	// batch's slot freed: its oldest waiter runs next.
	busy()
	got := <-queued
	if got.why != admitted {
		t.Fatalf("batch's queued: %v", got.why)
	}
	got.release()
	got = <-queued
	if got.why != admitted {
		t.Fatalf("batch's second queued: %v", got.why)
	}
	got.release()
	r.release()
	if run, q := a.counts(); run != 0 || q != 0 {
		t.Fatalf("after all: %d running %d queued", run, q)
	}
	if len(a.clients) != 0 {
		t.Fatalf("client counters left: %v", a.clients)
	}
}

// Root and the gateway are not capped; a capped client's share is counted
// over all its executions, not per call.
func TestAdmissionUncappedClients(t *testing.T) {
	a := newAdmission(3, 0, 1, 0, ClientGateway, ClientRoot)
	bg := context.Background()
	for _, c := range []string{ClientRoot, ClientRoot} {
		if _, _, why := a.enter(bg, c, time.Second); why != admitted {
			t.Fatalf("%s: %v", c, why)
		}
	}
	if _, _, why := a.enter(bg, "alice", time.Second); why != admitted {
		t.Fatalf("alice's first: %v", why)
	}
	if _, _, why := a.enter(bg, ClientGateway, time.Second); why != queueFull {
		t.Fatalf("gateway with every slot taken and no queue: %v", why)
	}
}

// A waiter whose time runs out leaves the queue and its client's count.
func TestAdmissionCappedWaiterTimesOut(t *testing.T) {
	a := newAdmission(2, 2, 1, 1, ClientGateway)
	bg := context.Background()
	rel, _, _ := a.enter(bg, "bob", time.Second)
	if _, waited, why := a.enter(bg, "bob", 50*time.Millisecond); why != waitedTooLong || waited < 50*time.Millisecond {
		t.Fatalf("bob past his share: %v after %v, want waitedTooLong", why, waited)
	}
	if run, q := a.clientCounts("bob"); run != 1 || q != 0 {
		t.Fatalf("bob runs %d and waits %d, want 1 and 0", run, q)
	}
	rel()
	if len(a.clients) != 0 {
		t.Fatalf("client counters left: %v", a.clients)
	}
}

// waitCounts waits until client runs and waits the given numbers.
func waitCounts(t *testing.T, a *admission, client string, running, queued int) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); ; {
		r, q := a.clientCounts(client)
		if r == running && q == queued {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("%s runs %d and waits %d, want %d and %d", client, r, q, running, queued)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// An execution whose processes are gone gives its slot back early; at most
// slots of them linger at once, and they count as running until they end.
func TestLingeringExecutionsFreeTheirSlots(t *testing.T) {
	a := newAdmission(1, 4, 1, 4, ClientGateway)
	enter := func() *slotHold {
		t.Helper()
		release, _, why := a.enter(context.Background(), ClientGateway, 50*time.Millisecond)
		if why != admitted {
			t.Fatalf("enter: %v, want admitted", why)
		}
		return &slotHold{admit: a, release: release}
	}
	first := enter()
	first.gone()
	first.gone() // at most once
	second := enter()
	if r, q := a.counts(); r != 2 || q != 0 {
		t.Fatalf("counts %d running %d queued with one lingering, want 2 and 0", r, q)
	}
	second.gone() // the one lingering place is taken: the slot stays held
	if _, _, why := a.enter(context.Background(), ClientGateway, 50*time.Millisecond); why != waitedTooLong {
		t.Fatalf("a third with one lingering and one holding its slot: %v, want waitedTooLong", why)
	}
	first.end()
	second.end()
	third := enter()
	third.end()
	third.gone() // after the end: nothing more
	if r, q := a.counts(); r != 0 || q != 0 {
		t.Fatalf("counts %d running %d queued at the end, want none", r, q)
	}
}
