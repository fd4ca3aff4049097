package warm

import (
	"fmt"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/python-executor/python-executor/internal/engine"
	"github.com/python-executor/python-executor/internal/jail"
	"github.com/python-executor/python-executor/internal/proc"
)

// A spare is an execution's child launched before its execution exists:
// forked by a zygote with the default limits, attached to its own cgroup,
// released, and locked down; it waits in the runner for a request on its
// request pipe, which nobody has written yet. An execution with those limits
// takes it and starts at once: the fork, the cgroup attach (sometimes more
// than 10 ms on cgroup v1) and the child's set-up are off its path, and
// they overlap other executions instead of leaving a CPU idle while they
// wait. A spare is single-use like every child; nothing of an execution
// reaches it before it is taken.
type spare struct {
	zygote *zygoteProc // that forked it
	child  *zygoteChild
	files  *orderFiles
	key    jail.Limits // it was launched with (spareKey's)
}

// fields name the spare's zygote and child in a log.
func (sp *spare) fields() logrus.Fields {
	return logrus.Fields{"zygote": sp.zygote.slot, "zygote_kind": sp.zygote.pool.kind.String(), "zygote_pid": sp.zygote.pid, "child_pid": sp.child.pid}
}

// SparePolicy is the scheduling policy of a spare's child until an execution
// takes it (SCHED_BATCH; executions run under SCHED_OTHER): the set-up of a
// spare does not preempt running executions, and an untaken spare is told
// from an execution's process by it (the tests' leftover checks). The
// niceness, the jail's, stays as it is.
const SparePolicy = 3

// setSchedPolicy sets the policy of pid, keeping its niceness. Best effort:
// the policy only marks and orders the child.
func setSchedPolicy(pid, policy int) {
	var param struct{ priority int32 }
	unix.Syscall(unix.SYS_SCHED_SETSCHEDULER, uintptr(pid), uintptr(policy), uintptr(unsafe.Pointer(&param)))
}

// spareRetry is the pause before a keeper tries again after a failed launch
// (its zygote restarting, most likely).
const spareRetry = 50 * time.Millisecond

// spareKey is what of an execution's limits its child depends on: all but
// the wall time, which the supervisor enforces.
func spareKey(l jail.Limits) jail.Limits {
	l.Wall = 0
	return l
}

// The spares follow the limits executions ask for: a deployment whose
// clients always send, say, memory_mb would otherwise never find a spare.
// They switch from one set of limits to another when spareSwitch of the
// last spareWindow executions asked for the other, so that a client with
// limits of its own among many with the defaults changes nothing, and
// limits that alternate cannot make every execution discard a spare.
const (
	spareWindow = 16
	spareSwitch = 12
)

// spareTarget keeps the limits (spareKey's) the spares are launched with
// and the limits of the last spareWindow executions. Safe for concurrent
// use.
type spareTarget struct {
	mu     sync.Mutex
	key    jail.Limits
	recent [spareWindow]jail.Limits
	seen   int // executions observed: the ring's next index, modulo spareWindow
}

func newSpareTarget(initial jail.Limits) *spareTarget {
	return &spareTarget{key: initial}
}

// current returns the limits new spares are launched with.
func (s *spareTarget) current() jail.Limits {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.key
}

// observe records an execution's limits and returns the spares' limits
// after it, key itself once spareSwitch of the last spareWindow executions
// (this one included) asked for it, and whether this call switched them.
func (s *spareTarget) observe(key jail.Limits) (jail.Limits, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recent[s.seen%spareWindow] = key
	s.seen++
	if key == s.key {
		return s.key, false
	}
	n := 0
	for _, k := range s.recent {
		if k == key {
			n++
		}
	}
	if n < spareSwitch {
		return s.key, false
	}
	s.key = key
	return key, true
}

// takeSpare returns a live spare launched with limits lim by a zygote of
// kind, or nil when there is none ready: the caller launches a child of
// its own. A slim script takes a preloaded spare when no slim one is
// ready: running it there is correct and cheaper than a fresh fork. A
// preloaded script never takes a slim spare: it would import the preload
// itself, far slower than a fresh fork of a preloaded zygote.
func (e *warmEngine) takeSpare(lim jail.Limits, kind Kind) *spare {
	key := spareKey(lim)
	target, switched := e.spareLimits.observe(key)
	if switched {
		e.log.WithFields(logrus.Fields{"memory_bytes": key.MemoryBytes, "pids": key.Pids, "cpu_time": key.CPUTime.String(),
			"file_size_bytes": key.FileSizeBytes, "open_files": key.OpenFiles, "tmp_bytes": key.TmpBytes, "tmp_inodes": key.TmpInodes,
			"defaults": key == e.defaultKey}).Info("spares now launched with the limits most recent executions asked for")
	}
	var sp *spare
	if target == key {
		sp = e.pools[kind].takeSpare(e, key)
		if sp == nil && kind == KindSlim {
			sp = e.pools[KindPreloaded].takeSpare(e, key)
		}
	}
	// Every execution counts: one with limits the spares do not follow
	// misses too (a deployment whose clients mix limits sees it).
	engine.CountSpare(sp != nil)
	return sp
}

// takeSpare returns a live spare of the pool launched with limits key, or
// nil. A spare launched with limits the spares no longer follow is ended
// (in the background: the request does not wait for its teardown), and its
// keeper launches the next with the new ones.
func (p *zygotePool) takeSpare(e *warmEngine, key jail.Limits) *spare {
	for {
		select {
		case sp := <-p.spares:
			if sp.key != key {
				e.wg.Add(1)
				go func() {
					defer e.wg.Done()
					e.discardSpare(sp)
				}()
				continue
			}
			if sp.alive() && !exiting(sp.zygote.pid) {
				// The execution runs with its cgroup's own CPU weight,
				// not the set-up's (newSpare); a spare that cannot have
				// it back is not taken.
				if sp.child.cg != nil {
					if err := sp.child.cg.SetBackground(false); err != nil {
						e.log.WithError(err).WithFields(sp.fields()).Warn("spare's CPU weight not restored; discarding it")
						e.wg.Add(1)
						go func() {
							defer e.wg.Done()
							e.discardSpare(sp)
						}()
						continue
					}
				}
				setSchedPolicy(sp.child.pid, 0) // SCHED_OTHER
				return sp
			}
			// Its zygote died, and it with it.
			e.discardSpare(sp)
		default:
			return nil
		}
	}
}

// alive reports whether the spare's child has not exited.
func (sp *spare) alive() bool {
	exited, err := pidfdExited(sp.child.pidfd)
	return err == nil && !exited
}

// pidfdExited reports, without waiting, whether the process behind pidfd
// has exited: a pidfd polls readable from its exit on, before it is reaped.
func pidfdExited(pidfd int) (bool, error) {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return n > 0, err
}

// exiting reports whether process pid is exiting or gone. A zygote is PID 1
// of its jail's PID namespace: while it exits, the kernel kills its
// descendants and waits for them, so for a moment a spare it forked is
// dying but not dead yet; its zygote's PF_EXITING tells.
func exiting(pid int) bool {
	const pfExiting = 0x4
	f, err := proc.Stat(pid)
	if err != nil || f[0] == "Z" || f[0] == "X" {
		return true
	}
	flags, err := strconv.ParseUint(f[6], 10, 64) // field 9
	return err != nil || flags&pfExiting != 0
}

// keepSpare offers one spare of slot's zygote at a time until the engine
// stops: it launches one, waits until an execution takes it, and launches
// the next.
func (e *warmEngine) keepSpare(slot *zygoteSlot) {
	log := e.log.WithFields(logrus.Fields{"zygote": slot.idx, "zygote_kind": slot.pool.kind.String()})
	for {
		select {
		case <-e.stop:
			return
		default:
		}
		z := slot.current()
		var sp *spare
		var err error
		if z != nil && !z.broken.Load() {
			sp, err = e.newSpare(z, log)
		}
		if sp == nil {
			if err != nil {
				log.WithError(err).Debug("no spare launched")
			}
			select {
			case <-e.stop:
				return
			case <-time.After(spareRetry):
			}
			continue
		}
		select {
		case slot.pool.spares <- sp:
		case <-e.stop:
			e.discardSpare(sp)
			return
		}
	}
}

// newSpare launches a child on zygote z with the spares' current limits.
func (e *warmEngine) newSpare(z *zygoteProc, log *logrus.Entry) (*spare, error) {
	key := e.spareLimits.current()
	order, err := e.newOrder(key, e.cgroups != nil)
	if err != nil {
		return nil, err
	}
	body, err := encodeOrder(order, z.pool)
	if err != nil {
		return nil, err
	}
	cgLimits := order.cgroup
	var pending *pendingCgroup
	if e.cgroups != nil {
		pending = &pendingCgroup{done: make(chan struct{})}
		pending.cg, pending.err = e.cgroups.NewExec(fmt.Sprintf("spare-%d", e.spareSeq.Add(1)), cgLimits)
		close(pending.done)
		if pending.err != nil {
			return nil, fmt.Errorf("create cgroup: %w", pending.err)
		}
		// Its set-up (namespaces, mounts, the runner's imports and
		// pre-faulting) yields the CPU to executions in flight: no
		// request waits for it. takeSpare restores the weight.
		if err := pending.cg.SetBackground(true); err != nil {
			engine.RemoveCgroup(pending.cg, log)
			return nil, fmt.Errorf("lower the spare's CPU weight: %w", err)
		}
	}
	files, err := newOrderFiles()
	if err == nil {
		var child *zygoteChild
		var clog *logrus.Entry
		if child, clog, err = e.launchOn(z, log, body, files, pending, true); err == nil {
			clog.Debug("spare child ready")
			return &spare{zygote: z, child: child, files: files, key: key}, nil
		}
		files.closeAll()
	}
	if pending != nil {
		engine.RemoveCgroup(pending.cg, log)
	}
	return nil, err
}

// discardSpare ends a spare that no execution will take, and waits until it
// is gone before removing its cgroup.
func (e *warmEngine) discardSpare(sp *spare) {
	sp.child.Kill()
	// Returns once the zygote has reaped the child (or died).
	sp.child.Wait()
	sp.child.close()
	sp.files.closeAll()
	if sp.child.cg != nil {
		engine.RemoveCgroup(sp.child.cg, e.log.WithFields(sp.fields()))
	}
}
