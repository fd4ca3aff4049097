package warm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vmihailenco/msgpack/v5"
	"golang.org/x/sys/unix"

	"github.com/python-executor/python-executor/internal/engine"
	"github.com/python-executor/python-executor/internal/jail"
	"github.com/python-executor/python-executor/internal/proc"
	"github.com/python-executor/python-executor/wire"
)

const (
	// childHelloTimeout bounds how long a zygote may take to fork the child
	// of an order and the child to say hello; past it the zygote is
	// considered hung and replaced.
	childHelloTimeout = 10 * time.Second
)

// warmEngine runs executions in single-use children of long-lived zygotes:
// runners that imported the heavy modules once (docs/ARCHITECTURE.md#warm-engine-zygotes-spares-orders). Each
// child builds fresh namespaces, joins its own cgroup and locks itself down
// before the script runs; see runner/zygote.py for the child's side.
type warmEngine struct {
	nsjail    string
	policy    jail.Policy // the zygote jail's template (jail.Policy.Zygote)
	maxLimits jail.Limits // ceilings of every execution's limits
	cgroups   *jail.Cgroups
	reaper    *proc.Reaper
	setup     jail.ChildSetup // the same for every child, sent to each zygote once
	log       *logrus.Entry
	// zygoteWait bounds an execution's wait for a ready zygote.
	zygoteWait time.Duration

	// pools are the zygotes by Kind: pools[KindPreloaded] always has
	// some, pools[KindSlim] none when the slim kind is off.
	pools [2]*zygotePool
	// modules are the preload's top-level names, which send a script to
	// the preloaded kind (chooseKind).
	modules []string
	stop    chan struct{}
	wg      sync.WaitGroup

	// defaultKey is the default limits as spareKey has them; defaultOrder
	// is their order (before encodeOrder's RLIMIT_AS adjustment).
	defaultKey   jail.Limits
	defaultOrder zygoteOrder
	// spareLimits chooses the limits the spares are launched with: the
	// defaults, or what most recent executions asked for. spareSeq names
	// the spares' cgroups.
	spareLimits *spareTarget
	spareSeq    atomic.Uint64

	// noneSince is when the last ready preloaded zygote went away (unix
	// ns), 0 while one is ready; see NotReady.
	noneSince atomic.Int64
}

// New starts n zygotes that import preload and slim zygotes that import
// nothing (none when preload is empty: the n are slim already), and waits
// until each is ready. On error nothing is left running.
//
// zygoteWait bounds how long an execution waits for a ready zygote (all of
// them restarting): about a restart with the preload, and short enough that
// the caller, whose deadline counts it, gets busy in time (-not-ready-after).
func New(h engine.Host, r *proc.Reaper, n, slim int, preload []string, defaults, maxLimits engine.LimitSet, zygoteWait time.Duration, log *logrus.Entry) (*warmEngine, error) {
	pol := h.Policy
	pol.Mounts = append(append([]jail.Mount(nil), pol.Mounts...), h.ZygoteMount)
	// What every child gets, from the same jail.Spec as a cold jail.
	spec, err := jail.ChildSpec(pol, defaults.JailLimits(), h.Cgroups != nil)
	if err != nil {
		return nil, fmt.Errorf("execution jail: %w", err)
	}
	setup, err := spec.ChildSetup()
	if err != nil {
		return nil, fmt.Errorf("execution jail: %w", err)
	}
	e := &warmEngine{
		nsjail: h.Nsjail, policy: pol, maxLimits: maxLimits.JailLimits(), cgroups: h.Cgroups,
		reaper: r, setup: setup, log: log, stop: make(chan struct{}),
		defaultKey: spareKey(defaults.JailLimits()), spareLimits: newSpareTarget(spareKey(defaults.JailLimits())), zygoteWait: zygoteWait,
		modules: topLevelModules(preload),
	}
	if len(preload) == 0 {
		slim = 0
	}
	e.pools[KindPreloaded] = &zygotePool{kind: KindPreloaded, preload: preload, spares: make(chan *spare)}
	e.pools[KindSlim] = &zygotePool{kind: KindSlim, preload: []string{}, spares: make(chan *spare)}
	if e.defaultOrder, err = newOrder(pol, defaults.JailLimits(), h.Cgroups != nil); err != nil {
		return nil, err
	}
	// Slot numbers run on across the kinds: they name the zygotes'
	// cgroups and log lines.
	var slots []*zygoteSlot
	for kind, count := range [2]int{KindPreloaded: n, KindSlim: slim} {
		p := e.pools[kind]
		for range count {
			s := &zygoteSlot{idx: len(slots), pool: p}
			p.slots = append(p.slots, s)
			slots = append(slots, s)
		}
	}
	first := make(chan error, len(slots))
	for _, s := range slots {
		e.wg.Add(1)
		go func() { defer e.wg.Done(); e.keep(s, e.stop, first) }()
	}
	var errs []error
	for range slots {
		if err := <-first; err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		e.Close()
		return nil, fmt.Errorf("start zygotes: %w", err)
	}
	for _, s := range slots {
		e.wg.Add(1)
		go func() { defer e.wg.Done(); e.keepSpare(s) }()
	}
	return e, nil
}

func (e *warmEngine) Name() string { return "warm" }

// Close stops every zygote and spare and removes their cgroups. Call it
// after the last execution.
func (e *warmEngine) Close() error {
	close(e.stop)
	e.wg.Wait()
	return nil
}

// kindFor is the zygote kind execution x should run on: chooseKind's, when
// the slim kind is on.
func (e *warmEngine) kindFor(x *engine.Execution) Kind {
	if len(e.pools[KindSlim].slots) == 0 {
		return KindPreloaded
	}
	return chooseKind(x.Script, e.modules)
}

// pick returns a ready zygote of kind, round robin; when none of that kind
// is ready (restarting, or none configured), one of the other kind rather
// than wait: either kind runs every script correctly, the other only
// slower. It waits only while no zygote of either kind is ready.
func (e *warmEngine) pick(ctx context.Context, kind Kind) (*zygoteProc, error) {
	deadline := time.Now().Add(e.zygoteWait)
	for {
		if z := e.pools[kind].ready(); z != nil {
			return z, nil
		}
		if z := e.pools[1-kind].ready(); z != nil {
			return z, nil
		}
		if time.Now().After(deadline) {
			return nil, errNoZygote
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// errNoZygote: every zygote has been restarting for the zygote wait.
var errNoZygote = errors.New("no zygote is ready")

func (e *warmEngine) Run(ctx context.Context, x *engine.Execution) engine.Outcome {
	return engine.TimedRun(ctx, x, func(ctx context.Context, x *engine.Execution) (engine.Outcome, error) {
		out, err := e.run(ctx, x)
		if errors.Is(err, errNoZygote) {
			// Nothing of the script ran and /health says not ready:
			// the caller should retry (elsewhere), not count a failure.
			x.Log.WithError(err).Warn("execution refused: no zygote")
			return engine.Outcome{Err: &wire.Error{Type: wire.ErrBusy, Message: "no execution sandbox is ready; retry"},
				Done: wire.Done{ExitReason: wire.ExitError, ExitCode: -1}}, nil
		}
		return out, err
	})
}

// zygoteOrder is the order message: the part of the execution's jail.Spec
// that depends on its limits, which the child applies (runner/ZYGOTE.md).
type zygoteOrder struct {
	V                int `msgpack:"v"`
	jail.ChildLimits `msgpack:",inline"`
	// cgroup is the Spec's cgroup section, which the supervisor applies
	// (NewExec) and the zygote never sees.
	cgroup jail.CgroupLimits
}

// newOrder is what the cold engine's jail with limits l would get: both
// come from the one jail.Spec of pol (the zygote's template).
func newOrder(pol jail.Policy, l jail.Limits, withCgroup bool) (zygoteOrder, error) {
	spec, err := jail.ChildSpec(pol, l, withCgroup)
	if err != nil {
		return zygoteOrder{}, fmt.Errorf("execution jail: %w", err)
	}
	return zygoteOrder{V: zygoteProtocol, ChildLimits: spec.ChildLimits(), cgroup: spec.Cgroup}, nil
}

// newOrder is newOrder for this engine, with the default limits' order
// derived once (most executions' and every spare's limits; tens of
// microseconds saved per execution). Its cgroup field is the limits of the
// child's cgroup (zero without one), from the same Spec.
func (e *warmEngine) newOrder(l jail.Limits, withCgroup bool) (zygoteOrder, error) {
	if spareKey(l) == e.defaultKey && withCgroup == (e.cgroups != nil) {
		return e.defaultOrder, nil
	}
	return newOrder(e.policy, l, withCgroup)
}

// encodeOrder is the order message of o for a zygote of pool p: without a
// cgroup, a child's RLIMIT_AS also leaves room for the address space it
// inherits from its zygote (the preloaded modules, hundreds of MiB of
// mostly shared mappings that cost the execution nothing), so the limit
// bounds what the script adds. The supervisor's memory watch enforces the
// limit on the sum.
func encodeOrder(o zygoteOrder, p *zygotePool) ([]byte, error) {
	o.Rlimits = slices.Clone(o.Rlimits)
	for i, r := range o.Rlimits {
		if r.Resource == unix.RLIMIT_AS {
			o.Rlimits[i].Value += uint64(p.vm.Load())
		}
	}
	body, err := msgpack.Marshal(o)
	if err != nil {
		return nil, fmt.Errorf("encode order: %w", err)
	}
	return body, nil
}

// orderFiles are one execution's pipes and sync socket: the supervisor's
// ends and the child's.
type orderFiles struct {
	ours   engine.PipeEnds
	theirs []*os.File // stdout, stderr, request, result, sync: in the order's fd order
	sync   *net.UnixConn
}

func newOrderFiles() (*orderFiles, error) {
	f := &orderFiles{}
	var ws [4]*os.File
	var rs [4]*os.File
	for i := range ws {
		r, w, err := os.Pipe()
		if err != nil {
			f.closeAll()
			for _, c := range append(ws[:i], rs[:i]...) {
				c.Close()
			}
			return nil, fmt.Errorf("create pipe: %w", err)
		}
		rs[i], ws[i] = r, w
	}
	// stdout, stderr, result: the child writes; request: the child reads.
	f.ours = engine.PipeEnds{StdoutR: rs[0], StderrR: rs[1], RequestW: ws[2], ResultR: rs[3]}
	f.theirs = []*os.File{ws[0], ws[1], rs[2], ws[3]}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		f.closeAll()
		return nil, fmt.Errorf("sync socket: %w", err)
	}
	f.theirs = append(f.theirs, os.NewFile(uintptr(fds[1]), "sync"))
	if f.sync, err = packetConn(fds[0], "sync"); err != nil {
		f.closeAll()
		return nil, err
	}
	if err := setPassCred(f.sync); err != nil {
		f.closeAll()
		return nil, err
	}
	return f, nil
}

func (f *orderFiles) closeTheirs() {
	for _, c := range f.theirs {
		c.Close()
	}
	f.theirs = nil
}

func (f *orderFiles) closeAll() {
	f.closeTheirs()
	f.ours.Close()
	if f.sync != nil {
		f.sync.Close()
	}
}

func (e *warmEngine) run(ctx context.Context, x *engine.Execution) (engine.Outcome, error) {
	lim := x.Limits.JailLimits()
	kind := e.kindFor(x)
	if sp := e.takeSpare(lim, kind); sp != nil {
		out, lost, err := e.runSpare(ctx, x, sp)
		if !lost {
			return out, err
		}
		x.Log.WithError(err).WithFields(sp.fields()).Warn("the spare died with its zygote before the execution produced anything; running it in a new child")
	}
	// The order and the cgroup's limits come from the one Spec.
	order, err := e.newOrder(lim, e.cgroups != nil)
	if err != nil {
		return engine.Outcome{}, err
	}
	cgLimits := order.cgroup
	// The cgroup is created while the zygote forks the child; the child
	// waits for it before anything of the script runs.
	var cg *pendingCgroup
	if e.cgroups != nil {
		cg = &pendingCgroup{done: make(chan struct{})}
		go func() {
			defer close(cg.done)
			cg.cg, cg.err = e.cgroups.NewExec("exec-"+x.ID, cgLimits)
		}()
		defer func() {
			if c, err := cg.get(); err == nil {
				engine.RemoveCgroup(c, x.Log)
			}
		}()
	}
	// Everything before the child is released is retried on another
	// zygote: nothing of the script has run yet.
	var lastErr error
	for attempt := 1; attempt <= launchAttempts; attempt++ {
		files, err := newOrderFiles()
		if err != nil {
			return engine.Outcome{}, err
		}
		child, log, err := e.launch(ctx, x.Log, kind, order, files, cg)
		if err != nil {
			files.closeAll()
			lastErr = err
			if ctx.Err() != nil || errors.Is(err, errNoZygote) {
				break // another attempt would wait for the same zygotes
			}
			if cg != nil {
				if _, cerr := cg.get(); cerr != nil {
					return engine.Outcome{}, cerr // no zygote would do better
				}
			}
			x.Log.WithError(err).WithField("attempt", attempt).Warn("zygote failed to start the execution")
			continue
		}
		defer files.closeAll()
		defer child.close()
		child.gone = x.Gone
		return engine.Supervise(ctx, x, files.ours, child, child.cg, log)
	}
	return engine.Outcome{}, lastErr
}

// runSpare runs x in a spare child. lost reports whether the spare died
// with its zygote (killed, crashed) before anything of the execution came
// out: no output and no answer reached the caller, so the execution can run
// again in a new child. Running a script a second time is harmless: a jail
// reaches nothing outside but its answer, and this one never gave one.
// (A spare is checked when it is taken, but its zygote can die a moment
// later, between the check and the request.)
func (e *warmEngine) runSpare(ctx context.Context, x *engine.Execution, sp *spare) (out engine.Outcome, lost bool, err error) {
	defer sp.files.closeAll()
	defer sp.child.close()
	if sp.child.cg != nil {
		defer engine.RemoveCgroup(sp.child.cg, x.Log)
	}
	log := x.Log.WithFields(sp.fields())
	log.Debug("execution took a spare child")
	var wrote atomic.Bool
	xs := *x
	xs.Stdout = func(b []byte) {
		wrote.Store(true)
		if x.Stdout != nil {
			x.Stdout(b)
		}
	}
	xs.Stderr = func(b []byte) {
		wrote.Store(true)
		if x.Stderr != nil {
			x.Stderr(b)
		}
	}
	sp.child.gone = x.Gone
	out, err = engine.Supervise(ctx, &xs, sp.files.ours, sp.child, sp.child.cg, log)
	zygoteGone := sp.zygote.broken.Load() || exiting(sp.zygote.pid)
	lost = err != nil && !wrote.Load() && ctx.Err() == nil && zygoteGone
	return out, lost, err
}

// pendingCgroup is an execution's cgroup being created.
type pendingCgroup struct {
	done chan struct{} // closed once cg or err is set
	cg   *jail.ExecCgroup
	err  error
}

func (p *pendingCgroup) get() (*jail.ExecCgroup, error) {
	<-p.done
	if p.err != nil {
		return nil, fmt.Errorf("create cgroup: %w", p.err)
	}
	return p.cg, nil
}

// childExitWait bounds the wait for a child that closed its sync socket to
// finish exiting; the cgroup removal kills whatever is left after it.
const childExitWait = 2 * time.Second

// launchAttempts is how many zygotes an execution tries before it fails.
const launchAttempts = 3

// launch has a zygote of kind (or of the other kind, see pick) fork the
// execution's child, moves the child into the execution's cgroup and
// releases it. A zygote that fails at any step is killed (and replaced by
// its keeper).
func (e *warmEngine) launch(ctx context.Context, log *logrus.Entry, kind Kind, order zygoteOrder, files *orderFiles, pending *pendingCgroup) (*zygoteChild, *logrus.Entry, error) {
	z, err := e.pick(ctx, kind)
	if err != nil {
		return nil, nil, err
	}
	body, err := encodeOrder(order, z.pool)
	if err != nil {
		return nil, nil, err
	}
	if z.pool.kind != kind {
		log = log.WithField("zygote_kind_chosen", kind.String())
	}
	child, log, err := e.launchOn(z, log, body, files, pending, false)
	if err == nil {
		log.Debug("execution child released")
	}
	return child, log, err
}

// launchOn is launch on zygote z; a spare's child runs under SparePolicy.
func (e *warmEngine) launchOn(z *zygoteProc, log *logrus.Entry, body []byte, files *orderFiles, pending *pendingCgroup, spare bool) (*zygoteChild, *logrus.Entry, error) {
	begin := time.Now()
	log = log.WithFields(logrus.Fields{"zygote": z.slot, "zygote_kind": z.pool.kind.String(), "zygote_pid": z.pid})
	fds := make([]int, len(files.theirs))
	for i, f := range files.theirs {
		fds[i] = int(f.Fd())
	}
	if err := z.order(body, fds); err != nil {
		z.kill()
		return nil, nil, fmt.Errorf("send order to zygote %d: %w", z.slot, err)
	}
	files.closeTheirs()

	// The child says hello; the kernel tells us its pid. Only then does it
	// join the execution's cgroup and get to go on.
	msg, pid, err := readPacket(files.sync, time.Now().Add(childHelloTimeout))
	if err != nil || string(msg) != "hello" {
		z.kill()
		return nil, nil, fmt.Errorf("zygote %d did not start a child (%q): %w", z.slot, msg, err)
	}
	pidfd, err := proc.PidfdOfChild(pid, z.pid, z.pidfd)
	if err != nil {
		z.kill()
		return nil, nil, fmt.Errorf("hello from pid %d, not a child of zygote %d: %w", pid, z.pid, err)
	}
	child := &zygoteChild{pid: pid, pidfd: pidfd, sync: files.sync}
	log = log.WithField("child_pid", pid)
	if spare {
		setSchedPolicy(pid, SparePolicy)
	}
	attachStart := time.Now()
	if pending != nil {
		cg, err := pending.get()
		if err != nil {
			child.Kill()
			child.close()
			return nil, nil, err
		}
		child.cg = cg
		if err := cg.Attach(pid); err != nil {
			child.Kill()
			child.close()
			return nil, nil, err
		}
	}
	log = log.WithField("attach_us", time.Since(attachStart).Microseconds())
	files.sync.SetWriteDeadline(time.Now().Add(zygoteSendTimeout))
	if _, err := files.sync.Write([]byte("go")); err != nil {
		child.Kill()
		child.close()
		return nil, nil, fmt.Errorf("release child %d: %w", pid, err)
	}
	return child, log.WithField("setup_us", time.Since(begin).Microseconds()), nil
}

// zygoteChild is the single-use child of one order and the script's process
// tree under it.
type zygoteChild struct {
	pid   int // host pid
	pidfd int // for signals that cannot reach a recycled pid
	sync  *net.UnixConn
	cg    *jail.ExecCgroup
	// gone is the execution's Gone (engine.Execution), set before Wait.
	gone func()
}

// childReport is the child's last message.
type childReport struct {
	Status   *int   `msgpack:"status"`
	UtimeUS  int64  `msgpack:"utime_us"`
	StimeUS  int64  `msgpack:"stime_us"`
	MaxRSSKB int64  `msgpack:"maxrss_kb"`
	Error    string `msgpack:"error"`
}

// Wait reads the reports on the sync socket until it is closed: the child
// (the script's process, PID 1 of the execution's namespaces) reports only a
// failed set-up, and closes its end before the script runs; the zygote reports
// how the child ended and closes its end once it has reaped it, hence once
// every process of the execution is gone.
func (c *zygoteChild) Wait() (engine.SandboxExit, error) {
	var (
		report *childReport
		failed string
	)
	if c.gone != nil {
		stop := watchExit(c.pidfd, c.gone)
		defer stop()
	}
	for {
		msg, _, err := readPacket(c.sync, time.Time{})
		if err != nil {
			if !errors.Is(err, errPeerClosed) {
				failed = "read child report: " + err.Error()
			}
			break
		}
		if report != nil {
			continue // only the first report counts
		}
		var r childReport
		if err := msgpack.Unmarshal(msg, &r); err != nil {
			failed = "malformed child report"
			continue
		}
		report = &r
	}
	// The socket closes once the child has been reaped, or when its zygote
	// died; the pidfd is readable once the child has gone completely, which
	// spares removing the cgroup a retry.
	proc.WaitPidfd(c.pidfd, childExitWait)
	exit := engine.SandboxExit{Code: -1, Sig: int(syscall.SIGKILL)}
	switch {
	case report != nil && report.Error != "":
		exit.Failure = "zygote child: " + report.Error
	case report != nil && report.Status != nil:
		exit.Code, exit.Sig = engine.WaitStatusExit(syscall.WaitStatus(*report.Status))
		exit.CPU = time.Duration(max(report.UtimeUS, 0)+max(report.StimeUS, 0)) * time.Microsecond
		exit.MaxRSS = max(report.MaxRSSKB, 0) << 10
	case failed != "":
		exit.Failure = failed
	default:
		// Killed by us (a deadline), by the memory limit, or with its
		// zygote: the outcome switch tells which, and calls the rest
		// internal.
		exit.Failure = "the zygote child ended without a report"
	}
	return exit, nil
}

// watchExit calls gone once the process of pidfd has exited, unless stop is
// called first; stop returns once the watch has ended. The child is PID 1
// of the execution's PID namespace, whose exit ends every other process in
// it first: once its pidfd is readable, nothing of the execution runs,
// though its zygote may not have reaped it yet (a zygote forking a child
// of another execution reaps it a few milliseconds later, sometimes tens). The
// watch waits in the runtime's poller, on a duplicate of the pidfd that
// it closes itself. Best effort: without it, gone is never called.
func watchExit(pidfd int, gone func()) (stop func()) {
	fd, err := unix.FcntlInt(uintptr(pidfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return func() {}
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return func() {}
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		exited := false
		// Read waits in the poller until the callback reports the pidfd
		// readable; Close (stop) ends the wait with an error.
		err := rc.Read(func(fd uintptr) bool {
			e, err := pidfdExited(int(fd))
			exited = err == nil && e
			return exited
		})
		if err == nil && exited {
			gone()
		}
	}()
	return func() {
		f.Close()
		<-done
	}
}

// CPUTime is the execution's CPU time so far, for an answer given before
// the child is gone (engine.Supervise): the child's process clock, which
// counts its exited threads, and the children it reaped. Not once the
// zygote has reaped the child: its pid may name another process by then.
func (c *zygoteChild) CPUTime() (time.Duration, bool) {
	d, err := proc.ProcessCPU(c.pid)
	if err != nil {
		return 0, false
	}
	// Still this child after the read (a zombie until the zygote reaps
	// it), so it was during the read.
	if unix.PidfdSendSignal(c.pidfd, 0, nil, 0) != nil {
		return 0, false
	}
	return d, true
}

// Processes lists the execution's processes: the child, PID 1 of its
// namespace, and its descendants.
func (c *zygoteChild) Processes() []int {
	return engine.Descendants(c.pid)
}

// DiskUsage: a warm child has a private tmpfs.
func (c *zygoteChild) DiskUsage() (int64, int, bool) { return 0, 0, false }

func (c *zygoteChild) Kill() {
	// The script's process dies with it (PR_SET_PDEATHSIG), and with that
	// process, as PID 1, its whole namespace. The cgroup kill is the second
	// line.
	unix.PidfdSendSignal(c.pidfd, unix.SIGKILL, nil, 0)
	if c.cg != nil {
		c.cg.Kill()
	}
}

func (c *zygoteChild) close() {
	unix.Close(c.pidfd)
}
