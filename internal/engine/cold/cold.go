package cold

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/python-executor/python-executor/internal/engine"
	"github.com/python-executor/python-executor/internal/jail"
	"github.com/python-executor/python-executor/internal/proc"
)

// The fds the runner finds inside the jail (nsjail keeps exactly these open
// besides 0-2, see jail.Policy.PassFDs).
const (
	RequestFD = 3
	ResultFD  = 4
	configFD  = 5 // nsjail reads its config here; not passed into the jail
	logFD     = 6 // nsjail's own log, kept out of the script's stderr
)

// coldEngine runs every execution in a fresh nsjail running the runner.
type coldEngine struct {
	nsjail  string
	policy  jail.Policy   // everything but the per-execution fields
	cgroups *jail.Cgroups // nil: no usable cgroups, rlimits only
	uids    *proc.UIDPool // nil: every jail maps to the sandbox user
	workDir string        // the container tier's (policy.NoNamespaces) work dirs
	reaper  *proc.Reaper  // nil: no subreaper (tests)
}

// New returns the cold engine for host h. r may be nil.
func New(h engine.Host, r *proc.Reaper) engine.Engine {
	return &coldEngine{nsjail: h.Nsjail, policy: h.Policy, cgroups: h.Cgroups, uids: h.UIDs, workDir: h.WorkDir, reaper: r}
}

func (e *coldEngine) Name() string { return "cold" }

func (e *coldEngine) Run(ctx context.Context, x *engine.Execution) engine.Outcome {
	return engine.TimedRun(ctx, x, e.run)
}

func (e *coldEngine) run(ctx context.Context, x *engine.Execution) (engine.Outcome, error) {
	pol := e.policy
	pol.Limits = x.Limits.JailLimits()
	pol.PassFDs = []int{RequestFD, ResultFD}
	pol.LogFD = logFD

	if e.uids != nil {
		uid, err := e.uids.Get()
		if err != nil {
			return engine.Outcome{}, err
		}
		// Given back once engine.Supervise has returned: every process of the
		// jail is gone by then.
		defer e.uids.Put(uid)
		pol.OutsideUID, pol.OutsideGID = uid, uid
	}
	if pol.NoNamespaces {
		dir, err := newWorkDir(e.workDir, x.ID, pol.OutsideUID)
		if err != nil {
			return engine.Outcome{}, err
		}
		// matplotlib's config dir beside it, not in it: the working
		// directory holds only what the request and the script put there,
		// as in the jailed tiers (where it is a tmpfs of its own).
		mpl, err := newWorkDir(e.workDir, x.ID+"-matplotlib", pol.OutsideUID)
		if err != nil {
			os.RemoveAll(dir)
			return engine.Outcome{}, err
		}
		// Deferred after the uid's return, so run first: no process of
		// the execution survives it, and its directory goes with it.
		uid := pol.OutsideUID
		defer func() {
			if err := killUID(uid); err != nil {
				x.Log.WithError(err).Error("kill the execution's processes")
			}
			for _, d := range []string{dir, mpl} {
				if err := os.RemoveAll(d); err != nil {
					x.Log.WithError(err).Error("remove the execution's work dir")
				}
			}
			// And whatever it left in the shared writable directories.
			var left []string
			filesOfUID(uid, sharedWritableDirs, &left)
			for _, p := range left {
				if err := os.RemoveAll(p); err != nil {
					x.Log.WithError(err).Error("remove a file the execution left")
				}
			}
		}()
		pol.Cwd = dir
		pol.Env = execEnv(pol.Env, dir, mpl)
	}
	var cg *jail.ExecCgroup
	if e.cgroups != nil {
		// The cgroup's limits are the Spec's (the same description the
		// warm engine's child cgroups come from); Render describes the
		// same Spec once the placement is in the policy.
		spec, err := jail.DescribeWithCgroup(pol)
		if err != nil {
			return engine.Outcome{}, fmt.Errorf("describe jail: %w", err)
		}
		cg, err = e.cgroups.NewExec("exec-"+x.ID, spec.Cgroup)
		if err != nil {
			return engine.Outcome{}, fmt.Errorf("create cgroup: %w", err)
		}
		defer engine.RemoveCgroup(cg, x.Log)
		pol.Cgroup = cg.Placement()
	}
	cfg, err := jail.Render(pol)
	if err != nil {
		return engine.Outcome{}, fmt.Errorf("render jail config: %w", err)
	}

	files, err := newJailFiles()
	if err != nil {
		return engine.Outcome{}, err
	}
	defer files.closeAll()

	sb := &nsjailSandbox{cg: cg, reaper: e.reaper, logDone: make(chan struct{}), pidfd: -1, uid: -1}
	if pol.NoNamespaces {
		sb.uid = pol.OutsideUID
	}
	sb.cmd, sb.pidfd, err = jail.Launch{
		Nsjail: e.nsjail, Config: cfg, ConfigFD: configFD,
		Files:  []*os.File{files.requestR, files.resultW, nil, files.logW},
		Stdout: files.stdoutW, Stderr: files.stderrW,
	}.Start(e.reaper.Start)
	if err != nil {
		return engine.Outcome{}, err
	}
	cmd := sb.cmd
	files.closeChildEnds()
	log := x.Log.WithField("nsjail_pid", cmd.Process.Pid)

	if pol.NoNamespaces {
		// No PID namespace whose init's death takes every process with it:
		// once the runner (and so nsjail) has exited, what is left of the
		// execution is killed, so that a daemonised child holding the
		// output pipes cannot keep the answer waiting until the deadline.
		stop := make(chan struct{})
		defer close(stop)
		go killAfterExit(cmd.Process.Pid, sb.uid, stop)
	}
	go func() {
		defer close(sb.logDone)
		sc := bufio.NewScanner(io.LimitReader(files.logR, 64<<10))
		for sc.Scan() {
			line := sc.Text()
			if sb.log.Len() < 8<<10 {
				sb.log.WriteString(line + "\n")
			}
			log.WithField("nsjail", line).Debug("nsjail log")
		}
		io.Copy(io.Discard, files.logR)
	}()
	pipes := engine.PipeEnds{RequestW: files.requestW, ResultR: files.resultR, StdoutR: files.stdoutR, StderrR: files.stderrR}
	return engine.Supervise(ctx, x, pipes, sb, cg, log)
}

// nsjailSandbox is one nsjail process and its jail.
type nsjailSandbox struct {
	cmd     *exec.Cmd
	cg      *jail.ExecCgroup
	reaper  *proc.Reaper
	log     strings.Builder // nsjail's log, capped; written until logDone
	logDone chan struct{}

	mu    sync.Mutex // guards pidfd: kill may run while wait reaps
	pidfd int        // nsjail's pidfd; -1 once nsjail has been reaped
	// uid is the execution's own uid where it has no PID namespace (the
	// container tier): its processes are those of that uid. -1 otherwise.
	uid int
}

// Processes lists the jail's processes: nsjail's descendants (its PID
// namespace's init adopts every orphan).
func (s *nsjailSandbox) Processes() []int {
	if s.uid >= 0 {
		return engine.ProcessesOfUID(s.uid)
	}
	return engine.Descendants(s.cmd.Process.Pid)[1:]
}

// DiskUsage is what the execution wrote: in the container tier, the files
// of its uid in its directory and the shared writable ones.
func (s *nsjailSandbox) DiskUsage() (int64, int, bool) {
	if s.uid < 0 {
		return 0, 0, false
	}
	b, n := filesOfUID(s.uid, sharedWritableDirs, nil)
	return b, n, true
}

func (s *nsjailSandbox) Wait() (engine.SandboxExit, error) {
	<-s.logDone
	err := s.reaper.Wait(s.cmd)
	s.mu.Lock()
	if s.pidfd >= 0 {
		unix.Close(s.pidfd)
		s.pidfd = -1
	}
	s.mu.Unlock()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		return engine.SandboxExit{}, fmt.Errorf("wait nsjail: %w", err)
	}
	ps := s.cmd.ProcessState
	var exit engine.SandboxExit
	exit.CPU = ps.UserTime() + ps.SystemTime()
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		exit.MaxRSS = ru.Maxrss << 10
	}
	status, _ := ps.Sys().(syscall.WaitStatus)
	exit.Code, exit.Sig = jailExit(status)
	if exit.Code == 255 && nsjailFailed(s.log.String()) {
		exit.Failure = "nsjail failed: " + strings.TrimSpace(s.log.String())
	}
	return exit, nil
}

// nsjailGrace is how long nsjail gets to reap a killed jail and exit by
// itself before it is killed too.
const nsjailGrace = 2 * time.Second

// Kill ends the whole jail. It kills the jail's init (nsjail's child): when a
// PID namespace's init dies the kernel kills every process in it, and nsjail
// then reaps it, removes its own cgroup and exits. The cgroup kill is a
// second line for anything that escaped. nsjail itself is killed only if it
// does not exit soon after; the jail then dies by nsjail's parent-death
// signal, and the supervisor, a subreaper, reaps what is left. Every signal
// goes through a pidfd (os.Process uses one too): nsjail's pid, and its
// child's, may belong to another process once they have been reaped.
func (s *nsjailSandbox) Kill() {
	p := s.cmd.Process
	s.mu.Lock()
	if s.pidfd >= 0 {
		proc.KillChildren(p.Pid, s.pidfd)
	}
	s.mu.Unlock()
	if s.cg != nil {
		s.cg.Kill()
	}
	if s.uid >= 0 {
		// No PID namespace: every process of the uid, orphans included.
		go killUID(s.uid)
	}
	time.AfterFunc(nsjailGrace, func() { p.Kill() })
}

// jailExit decodes nsjail's exit status into the jailed process's exit code
// and signal: nsjail exits with the child's code, or 128+signal when the child
// was killed by one.
func jailExit(ws syscall.WaitStatus) (code, sig int) {
	switch {
	case ws.Signaled():
		return -1, int(ws.Signal())
	case ws.ExitStatus() > 128 && ws.ExitStatus() < 128+65:
		return -1, ws.ExitStatus() - 128
	default:
		return ws.ExitStatus(), 0
	}
}

// nsjailFailed reports whether nsjail's log shows it failed itself (rather
// than the script exiting with 255).
func nsjailFailed(log string) bool {
	return strings.Contains(log, "[E]") || strings.Contains(log, "[F]")
}

// jailFiles are the pipes of one nsjail run.
type jailFiles struct {
	requestR, requestW *os.File
	resultR, resultW   *os.File
	stdoutR, stdoutW   *os.File
	stderrR, stderrW   *os.File
	logR, logW         *os.File
}

func newJailFiles() (*jailFiles, error) {
	f := &jailFiles{}
	pairs := []struct{ r, w **os.File }{
		{&f.requestR, &f.requestW}, {&f.resultR, &f.resultW},
		{&f.stdoutR, &f.stdoutW}, {&f.stderrR, &f.stderrW}, {&f.logR, &f.logW},
	}
	for _, p := range pairs {
		r, w, err := os.Pipe()
		if err != nil {
			f.closeAll()
			return nil, fmt.Errorf("create pipe: %w", err)
		}
		*p.r, *p.w = r, w
	}
	return f, nil
}

// closeChildEnds closes the parent's copies of the fds nsjail inherited, so
// EOF on the read ends means every jailed writer is gone.
func (f *jailFiles) closeChildEnds() {
	for _, c := range []*os.File{f.requestR, f.resultW, f.stdoutW, f.stderrW, f.logW} {
		c.Close()
	}
}

func (f *jailFiles) closeAll() {
	for _, c := range []*os.File{f.requestR, f.requestW, f.resultR, f.resultW, f.stdoutR, f.stdoutW, f.stderrR, f.stderrW, f.logR, f.logW} {
		if c != nil {
			c.Close()
		}
	}
}
