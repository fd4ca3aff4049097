package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/python-executor/python-executor/jail"
	"github.com/python-executor/python-executor/supervisor/wire"
)

// The fds the runner finds inside the jail (nsjail keeps exactly these open
// besides 0-2, see jail.Policy.PassFDs).
const (
	requestFD = 3
	resultFD  = 4
	configFD  = 5 // nsjail reads its config here; not passed into the jail
	logFD     = 6 // nsjail's own log, kept out of the script's stderr
)

// resultOverhead is what a result frame may carry beyond the JSON itself
// (header, msgpack framing, or an error's message and traceback).
const resultOverhead = 1 << 20

// resultGrace is how long the runner gets to exit by itself after sending its
// answer before the jail is killed. The runner calls os._exit right after
// writing, so this only matters when something in the jail misbehaves.
const resultGrace = 100 * time.Millisecond

// coldEngine runs every execution in a fresh nsjail running the runner.
type coldEngine struct {
	nsjail  string
	policy  jail.Policy   // everything but the per-execution fields
	cgroups *jail.Cgroups // nil: no usable cgroups, rlimits only
	reaper  *reaper       // nil: no subreaper (tests)
}

func (e *coldEngine) Name() string { return "cold" }

// runnerAnswer is what came back on the result fd.
type runnerAnswer struct {
	frame wire.Frame
	err   error // io.EOF: the runner sent nothing
}

func (e *coldEngine) Run(ctx context.Context, x *Execution) Outcome {
	start := time.Now()
	out, err := e.run(ctx, x, start)
	if err != nil {
		x.Log.WithError(err).Error("execution failed")
		out = Outcome{Err: &wire.Error{Type: wire.ErrInternal, Message: "the supervisor could not run the script"}}
		out.Done.ExitReason = wire.ExitError
		out.Done.ExitCode = -1
	}
	out.Done.WallMS = time.Since(start).Milliseconds()
	return out
}

func (e *coldEngine) run(ctx context.Context, x *Execution, start time.Time) (Outcome, error) {
	pol := e.policy
	pol.Limits = x.Limits.jailLimits()
	pol.PassFDs = []int{requestFD, resultFD}
	pol.LogFD = logFD

	var cg *jail.ExecCgroup
	if e.cgroups != nil {
		var err error
		cg, err = e.cgroups.NewExec("exec-"+x.ID, pol.Limits)
		if err != nil {
			return Outcome{}, fmt.Errorf("create cgroup: %w", err)
		}
		defer func() {
			if err := cg.Kill(); err != nil {
				x.Log.WithError(err).Warn("kill cgroup")
			}
			if err := cg.Remove(); err != nil {
				x.Log.WithError(err).Warn("remove cgroup")
			}
		}()
		pol.Cgroup = cg.Placement()
	}
	cfg, err := jail.Render(pol)
	if err != nil {
		return Outcome{}, fmt.Errorf("render jail config: %w", err)
	}

	files, err := newJailFiles(cfg)
	if err != nil {
		return Outcome{}, err
	}
	defer files.closeAll()

	argv := jail.Argv(e.nsjail, fmt.Sprintf("/proc/self/fd/%d", configFD))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{} // nsjail needs nothing; the jail's env is in the config
	cmd.Stdin = nil      // /dev/null
	cmd.Stdout = files.stdoutW
	cmd.Stderr = files.stderrW
	cmd.ExtraFiles = []*os.File{files.requestR, files.resultW, files.config, files.logW}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// If the supervisor dies, nsjail dies, and nsjail's own death signal
		// takes the jail with it.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := e.reaper.start(cmd); err != nil {
		return Outcome{}, fmt.Errorf("start nsjail: %w", err)
	}
	files.closeChildEnds()
	log := x.Log.WithField("nsjail_pid", cmd.Process.Pid)

	// The request goes over its own pipe, never argv: scripts can be large.
	go func() {
		body, err := wire.NewFrame(1, wire.TypeExecute, wire.RunnerRequest{Script: x.Script, MaxResultBytes: x.Limits.ResultBytes})
		if err == nil {
			err = wire.WriteFrame(files.requestW, body)
		}
		if err != nil && !errors.Is(err, syscall.EPIPE) {
			log.WithError(err).Debug("write request")
		}
		files.requestW.Close()
	}()

	var (
		wg                         sync.WaitGroup
		stdoutTrunc, stderrTrunc   bool
		answerCh                   = make(chan runnerAnswer, 1)
		nsjailLog                  strings.Builder
		readersDone, processExited = make(chan struct{}), make(chan struct{})
	)
	wg.Add(4)
	go func() { defer wg.Done(); stdoutTrunc = captureStream(files.stdoutR, x.Limits.OutputBytes, x.Stdout) }()
	go func() { defer wg.Done(); stderrTrunc = captureStream(files.stderrR, x.Limits.OutputBytes, x.Stderr) }()
	go func() {
		defer wg.Done()
		f, err := readRunnerAnswer(files.resultR, int(x.Limits.ResultBytes)+resultOverhead)
		answerCh <- runnerAnswer{frame: f, err: err}
		// Anything after the first frame is ignored, but drained so that a
		// writer in the jail never blocks on us.
		io.Copy(io.Discard, files.resultR)
	}()
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(io.LimitReader(files.logR, 64<<10))
		for sc.Scan() {
			line := sc.Text()
			if nsjailLog.Len() < 8<<10 {
				nsjailLog.WriteString(line + "\n")
			}
			log.WithField("nsjail", line).Debug("nsjail log")
		}
		io.Copy(io.Discard, files.logR)
	}()
	go func() { wg.Wait(); close(readersDone) }()
	var waitErr error
	go func() {
		<-readersDone
		waitErr = cmd.Wait()
		e.reaper.forget(cmd.Process.Pid)
		close(processExited)
	}()

	deadline := time.NewTimer(x.Limits.Timeout)
	defer deadline.Stop()
	var (
		answer    *runnerAnswer
		reason    wire.ExitReason
		graceC    <-chan time.Time
		killed    bool
		killJail  = func() { killed = true; e.kill(cmd.Process, cg) }
		answerIn  = (<-chan runnerAnswer)(answerCh)
		cancelled = ctx.Done()
	)
loop:
	for {
		select {
		case a := <-answerIn:
			answerIn = nil
			answer = &a
			if a.err == nil {
				graceC = time.After(resultGrace)
			}
		case <-graceC:
			graceC = nil
			killJail()
		case <-deadline.C:
			if answer == nil || answer.err != nil {
				reason = wire.ExitTimeout
			}
			killJail()
		case <-cancelled:
			cancelled = nil
			reason = wire.ExitCancelled
			killJail()
		case <-processExited:
			break loop
		}
	}
	if answer == nil { // the reader finished before the process was reaped
		a := <-answerCh
		answer = &a
	}

	out := Outcome{}
	out.Done.StdoutTruncated = stdoutTrunc
	out.Done.StderrTruncated = stderrTrunc
	e.fillStats(&out.Done, cmd.ProcessState, cg, log)
	status, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	code, sig := jailExit(status)
	out.Done.ExitCode, out.Done.Signal = code, sig
	if _, ok := waitErr.(*exec.ExitError); waitErr != nil && !ok {
		return Outcome{}, fmt.Errorf("wait nsjail: %w", waitErr)
	}

	var oom, pidsHit bool
	if cg != nil {
		if st, err := cg.Stats(); err == nil {
			oom, pidsHit = st.OOMKilled, st.PidsLimitHit
		}
	}
	switch {
	case reason == wire.ExitCancelled:
		out.Err = &wire.Error{Type: wire.ErrCancelled, Message: "the execution was cancelled"}
	case reason == wire.ExitTimeout:
		out.Err = &wire.Error{Type: wire.ErrTimeout, Message: fmt.Sprintf("the script did not finish within %s", x.Limits.Timeout)}
	case answer.err == nil:
		out.Result, out.Err = interpretAnswer(answer.frame, x.Limits.ResultBytes)
		reason = wire.ExitOK
		if out.Err != nil {
			reason = wire.ExitError
		}
		if out.Err != nil && out.Err.Type == wire.ErrMemoryLimit {
			reason = wire.ExitMemoryLimit
		}
		// A script that died of a failed fork (BlockingIOError and kin)
		// hit the process limit: say so, keeping its traceback.
		if out.Err != nil && out.Err.Type == wire.ErrException && pidsHit {
			out.Err.Type = wire.ErrResourceLimit
			out.Err.Message = fmt.Sprintf("the script reached the limit of %d processes: %s", x.Limits.Pids, out.Err.Message)
		}
	case errors.Is(answer.err, wire.ErrFrameTooLarge):
		reason = wire.ExitError
		out.Err = &wire.Error{Type: wire.ErrResultTooLarge, Message: fmt.Sprintf("the result is over the limit of %d bytes", x.Limits.ResultBytes)}
	case oom:
		reason = wire.ExitMemoryLimit
		out.Err = &wire.Error{Type: wire.ErrMemoryLimit, Message: fmt.Sprintf("the script used more than the memory limit of %d MiB", x.Limits.MemoryBytes>>20)}
	case sig == int(syscall.SIGXCPU) || (sig == int(syscall.SIGKILL) && out.Done.CPUMS >= x.Limits.CPUTime.Milliseconds()):
		reason = wire.ExitKilled
		out.Err = &wire.Error{Type: wire.ErrResourceLimit, Message: fmt.Sprintf("the script used more than the CPU time limit of %s", x.Limits.CPUTime)}
	case code == 255 && nsjailFailed(nsjailLog.String()):
		return Outcome{}, fmt.Errorf("nsjail failed: %s", strings.TrimSpace(nsjailLog.String()))
	case answer.err != io.EOF && !killed:
		// The runner wrote garbage on its result fd: this execution's answer
		// is spoilt, nothing else is.
		reason = wire.ExitError
		out.Err = &wire.Error{Type: wire.ErrInternal, Message: "the runner sent a malformed answer"}
		log.WithError(answer.err).Warn("malformed runner answer")
	default:
		reason = wire.ExitExited
		out.Err = &wire.Error{Type: wire.ErrExited, Message: exitMessage(code, sig)}
	}
	out.Done.ExitReason = reason
	return out, nil
}

// errMalformedAnswer is a result-fd header that no runner writes.
var errMalformedAnswer = errors.New("malformed runner answer")

// readRunnerAnswer reads the runner's one frame. The header is checked before
// the length, so garbage written to the fd reads as garbage, not as an
// oversized result; a well-formed header announcing too much is
// wire.ErrFrameTooLarge. io.EOF means nothing was sent.
func readRunnerAnswer(r io.Reader, max int) (wire.Frame, error) {
	var h [wire.HeaderSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return wire.Frame{}, err
	}
	if t := wire.Type(h[8]); h[9] != wire.Version || (t != wire.TypeResult && t != wire.TypeError) {
		return wire.Frame{}, errMalformedAnswer
	}
	return wire.ReadFrame(io.MultiReader(bytes.NewReader(h[:]), r), max)
}

// interpretAnswer turns the runner's frame into a result or an error. The
// frame is hostile (user code can write to the result fd), so everything is
// checked, and the JSON bytes are validated but never re-encoded.
func interpretAnswer(f wire.Frame, resultCap int64) ([]byte, *wire.Error) {
	bad := &wire.Error{Type: wire.ErrInternal, Message: "the runner sent a malformed answer"}
	if f.Version != wire.Version {
		return nil, bad
	}
	switch f.Type {
	case wire.TypeResult:
		var r wire.Result
		if err := wire.Unmarshal(f.Body, &r); err != nil {
			return nil, bad
		}
		if int64(len(r.JSON)) > resultCap {
			return nil, &wire.Error{Type: wire.ErrResultTooLarge, Message: fmt.Sprintf("the result is %d bytes, over the limit of %d bytes", len(r.JSON), resultCap)}
		}
		if !utf8.Valid(r.JSON) || !json.Valid(r.JSON) {
			return nil, &wire.Error{Type: wire.ErrInvalidResult, Message: "the result is not valid JSON"}
		}
		return r.JSON, nil
	case wire.TypeError:
		var e wire.Error
		if err := wire.Unmarshal(f.Body, &e); err != nil {
			return nil, bad
		}
		switch e.Type {
		case wire.ErrSyntax, wire.ErrMissingMain, wire.ErrInvalidResult, wire.ErrResultTooLarge, wire.ErrExited, wire.ErrInternal:
		case wire.ErrException:
			// Without a cgroup (or before it triggers) running out of
			// memory surfaces as MemoryError; it is still the limit.
			if strings.HasPrefix(e.Message, "MemoryError") {
				e.Type = wire.ErrMemoryLimit
			}
		default:
			return nil, bad
		}
		e.Message = strings.ToValidUTF8(e.Message, "\uFFFD")
		e.Traceback = strings.ToValidUTF8(e.Traceback, "\uFFFD")
		return nil, &e
	default:
		return nil, bad
	}
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

func exitMessage(code, sig int) string {
	if sig != 0 {
		return fmt.Sprintf("the script was killed by signal %s before returning a result", unix.SignalName(syscall.Signal(sig)))
	}
	return fmt.Sprintf("the script exited with status %d before returning a result", code)
}

// nsjailFailed reports whether nsjail's log shows it failed itself (rather
// than the script exiting with 255).
func nsjailFailed(log string) bool {
	return strings.Contains(log, "[E]") || strings.Contains(log, "[F]")
}

// nsjailGrace is how long nsjail gets to reap a killed jail and exit by
// itself before it is killed too.
const nsjailGrace = 2 * time.Second

// kill ends the whole jail. It kills the jail's init (nsjail's child): when a
// PID namespace's init dies the kernel kills every process in it, and nsjail
// then reaps it, removes its own cgroup and exits. The cgroup kill is a
// second line for anything that escaped. nsjail itself is killed only if it
// does not exit soon after; the jail then dies by nsjail's parent-death
// signal, and the supervisor, a subreaper, reaps what is left.
func (e *coldEngine) kill(proc *os.Process, cg *jail.ExecCgroup) {
	for _, c := range childrenOf(proc.Pid) {
		syscall.Kill(c, syscall.SIGKILL)
	}
	if cg != nil {
		cg.Kill()
	}
	time.AfterFunc(nsjailGrace, func() { proc.Kill() })
}

// childrenOf lists pid's children.
func childrenOf(pid int) []int {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, _ := os.ReadDir(dir)
	var out []int
	for _, t := range tasks {
		b, _ := os.ReadFile(dir + "/" + t.Name() + "/children")
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

func (e *coldEngine) fillStats(d *wire.Done, ps *os.ProcessState, cg *jail.ExecCgroup, log interface{ Debug(...any) }) {
	if ps != nil {
		d.CPUMS = (ps.UserTime() + ps.SystemTime()).Milliseconds()
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			d.PeakMemoryBytes = ru.Maxrss << 10
		}
	}
	if cg == nil {
		return
	}
	st, err := cg.Stats()
	if err != nil {
		log.Debug("cgroup stats: ", err)
		return
	}
	if st.PeakMemoryBytes > 0 {
		d.PeakMemoryBytes = st.PeakMemoryBytes
	}
	if st.CPUTime > 0 {
		d.CPUMS = st.CPUTime.Milliseconds()
	}
}

// jailFiles are the pipes and the config file of one nsjail run.
type jailFiles struct {
	requestR, requestW *os.File
	resultR, resultW   *os.File
	stdoutR, stdoutW   *os.File
	stderrR, stderrW   *os.File
	logR, logW         *os.File
	config             *os.File
}

func newJailFiles(cfg []byte) (*jailFiles, error) {
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
	// The config travels in a memfd: nothing on disk, nothing to clean up.
	fd, err := unix.MemfdCreate("nsjail-config", unix.MFD_CLOEXEC)
	if err != nil {
		f.closeAll()
		return nil, fmt.Errorf("memfd: %w", err)
	}
	f.config = os.NewFile(uintptr(fd), "nsjail-config")
	if _, err := f.config.Write(cfg); err != nil {
		f.closeAll()
		return nil, fmt.Errorf("write config: %w", err)
	}
	return f, nil
}

// closeChildEnds closes the parent's copies of the fds nsjail inherited, so
// EOF on the read ends means every jailed writer is gone.
func (f *jailFiles) closeChildEnds() {
	for _, c := range []*os.File{f.requestR, f.resultW, f.stdoutW, f.stderrW, f.logW, f.config} {
		c.Close()
	}
}

func (f *jailFiles) closeAll() {
	for _, c := range []*os.File{f.requestR, f.requestW, f.resultR, f.resultW, f.stdoutR, f.stdoutW, f.stderrR, f.stderrW, f.logR, f.logW, f.config} {
		if c != nil {
			c.Close()
		}
	}
}
