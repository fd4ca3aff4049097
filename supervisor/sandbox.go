package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/python-executor/python-executor/jail"
	"github.com/python-executor/python-executor/supervisor/wire"
)

// resultOverhead is what a result frame may carry beyond the JSON itself
// (header, msgpack framing, or an error's message and traceback).
const resultOverhead = 1 << 20

// resultGrace is how long the runner gets to exit by itself after sending its
// answer before the jail is killed. The runner calls os._exit right after
// writing, so this only matters when something in the jail misbehaves.
const resultGrace = 100 * time.Millisecond

// sandbox is one started execution as the shared supervision loop
// (supervise) sees it, whatever the engine that started it.
type sandbox interface {
	// wait blocks until every process of the execution is gone. It is
	// called once, after the output and result pipes reached EOF.
	wait() (sandboxExit, error)
	// kill ends every process of the execution. It may be called more
	// than once, and concurrently with wait.
	kill()
}

// sandboxExit is how the execution's main process (the runner) ended.
type sandboxExit struct {
	code, sig int           // exit code, or the signal that killed it (code -1)
	cpu       time.Duration // CPU time of the execution's processes, when known
	maxRSS    int64         // bytes; 0 when unknown
	// failure is set when the engine's own machinery failed (nsjail, a
	// zygote), not the script: the execution is internal, and this is
	// logged.
	failure string
}

// pipeEnds are the supervisor's ends of an execution's pipes. supervise
// closes them.
type pipeEnds struct {
	requestW, resultR, stdoutR, stderrR *os.File
}

func (p pipeEnds) close() {
	for _, f := range []*os.File{p.requestW, p.resultR, p.stdoutR, p.stderrR} {
		if f != nil {
			f.Close()
		}
	}
}

// runnerAnswer is what came back on the result fd.
type runnerAnswer struct {
	frame wire.Frame
	err   error // io.EOF: the runner sent nothing
}

// supervise drives one started execution to its outcome: it sends the
// request, captures the output and the answer, enforces the deadline and
// cancellation, and maps how it ended to an Outcome. The sandbox's processes
// are gone when it returns. An error means the engine failed (internal).
func supervise(ctx context.Context, x *Execution, p pipeEnds, sb sandbox, cg *jail.ExecCgroup, log *logrus.Entry) (Outcome, error) {
	defer p.close()
	// The request goes over its own pipe, never argv: scripts can be large.
	go func() {
		body, err := wire.NewFrame(1, wire.TypeExecute, wire.RunnerRequest{Script: x.Script, MaxResultBytes: x.Limits.ResultBytes})
		if err == nil {
			err = wire.WriteFrame(p.requestW, body)
		}
		if err != nil && !errors.Is(err, syscall.EPIPE) {
			log.WithError(err).Debug("write request")
		}
		p.requestW.Close()
	}()

	var (
		wg                         sync.WaitGroup
		stdoutTrunc, stderrTrunc   bool
		answerCh                   = make(chan runnerAnswer, 1)
		readersDone, processExited = make(chan struct{}), make(chan struct{})
	)
	wg.Add(3)
	go func() { defer wg.Done(); stdoutTrunc = captureStream(p.stdoutR, x.Limits.OutputBytes, x.Stdout) }()
	go func() { defer wg.Done(); stderrTrunc = captureStream(p.stderrR, x.Limits.OutputBytes, x.Stderr) }()
	go func() {
		defer wg.Done()
		f, err := readRunnerAnswer(p.resultR, int(x.Limits.ResultBytes)+resultOverhead)
		answerCh <- runnerAnswer{frame: f, err: err}
		// Anything after the first frame is ignored, but drained so that a
		// writer in the jail never blocks on us.
		io.Copy(io.Discard, p.resultR)
	}()
	go func() { wg.Wait(); close(readersDone) }()
	var (
		exit    sandboxExit
		waitErr error
	)
	go func() {
		<-readersDone
		exit, waitErr = sb.wait()
		close(processExited)
	}()

	deadline := time.NewTimer(x.Limits.Timeout)
	defer deadline.Stop()
	var (
		answer    *runnerAnswer
		reason    wire.ExitReason
		graceC    <-chan time.Time
		killed    bool
		killAll   = func() { killed = true; sb.kill() }
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
			killAll()
		case <-deadline.C:
			if answer == nil || answer.err != nil {
				reason = wire.ExitTimeout
			}
			killAll()
		case <-cancelled:
			cancelled = nil
			reason = wire.ExitCancelled
			killAll()
		case <-processExited:
			break loop
		}
	}
	if answer == nil { // the reader finished before the process was reaped
		a := <-answerCh
		answer = &a
	}
	if waitErr != nil {
		return Outcome{}, waitErr
	}

	out := Outcome{}
	out.Done.StdoutTruncated = stdoutTrunc
	out.Done.StderrTruncated = stderrTrunc
	// The cgroup's counters are read once: they serve the stats and the
	// outcome alike.
	var st jail.Stats
	if cg != nil {
		var err error
		if st, err = cg.Stats(); err != nil {
			log.WithError(err).Debug("cgroup stats")
		}
	}
	fillStats(&out.Done, exit, st)
	code, sig := exit.code, exit.sig
	out.Done.ExitCode, out.Done.Signal = code, sig
	oom, pidsHit := st.OOMKilled, st.PidsLimitHit
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
	case cpuLimitKill(sig, out.Done.CPUMS, x.Limits.CPUTime):
		reason = wire.ExitKilled
		out.Err = &wire.Error{Type: wire.ErrResourceLimit, Message: fmt.Sprintf("the script used more than the CPU time limit of %s", x.Limits.CPUTime)}
	case exit.failure != "":
		return Outcome{}, errors.New(exit.failure)
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

// timedRun runs one execution through run and stamps its wall time; an
// error of the engine itself (not of the script) is logged and answered as
// internal. Both engines' Run methods are this.
func timedRun(ctx context.Context, x *Execution, run func(context.Context, *Execution) (Outcome, error)) Outcome {
	start := time.Now()
	out, err := run(ctx, x)
	if err != nil {
		x.Log.WithError(err).Error("execution failed")
		out = internalOutcome()
	}
	out.Done.WallMS = time.Since(start).Milliseconds()
	return out
}

// internalOutcome is the answer when the engine itself failed.
func internalOutcome() Outcome {
	out := Outcome{Err: &wire.Error{Type: wire.ErrInternal, Message: "the supervisor could not run the script"}}
	out.Done.ExitReason = wire.ExitError
	out.Done.ExitCode = -1
	return out
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
			// memory surfaces as MemoryError; it is still the limit. So
			// does an allocation the kernel refuses outright (larger
			// than the machine's memory under the default overcommit
			// policy), which numpy raises as its own subclass
			// (numpy._core._exceptions._ArrayMemoryError).
			if name, _, _ := strings.Cut(e.Message, ":"); strings.HasSuffix(name, "MemoryError") {
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

// waitStatusExit decodes a wait status into an exit code and a signal.
func waitStatusExit(ws syscall.WaitStatus) (code, sig int) {
	if ws.Signaled() {
		return -1, int(ws.Signal())
	}
	return ws.ExitStatus(), 0
}

func exitMessage(code, sig int) string {
	if sig != 0 {
		return fmt.Sprintf("the script was killed by signal %s before returning a result", unix.SignalName(syscall.Signal(sig)))
	}
	return fmt.Sprintf("the script exited with status %d before returning a result", code)
}

// cpuLimitKill reports whether a process killed by signal sig after cpuMS
// of CPU time was stopped by its CPU-time limit: SIGXCPU, or the SIGKILL the
// kernel sends at the hard limit. The kernel checks RLIMIT_CPU against the
// process's own clock, sampled at each tick, while the CPU time measured
// here (the cgroup's usage, or the rusage) can trail it by a few
// milliseconds per tick: 980 ms was seen under a 1 s limit. So the SIGKILL
// counts within 5 % of the limit.
func cpuLimitKill(sig int, cpuMS int64, limit time.Duration) bool {
	if sig == int(syscall.SIGXCPU) {
		return true
	}
	return sig == int(syscall.SIGKILL) && limit > 0 && cpuMS*100 >= limit.Milliseconds()*95
}

// fillStats fills the done event's CPU time and peak memory: from the
// sandbox's rusage, overridden by the cgroup's counters (st, zero without a
// cgroup) where they know better.
func fillStats(d *wire.Done, exit sandboxExit, st jail.Stats) {
	d.CPUMS = exit.cpu.Milliseconds()
	d.PeakMemoryBytes = exit.maxRSS
	if st.PeakMemoryBytes > 0 {
		d.PeakMemoryBytes = st.PeakMemoryBytes
	}
	if st.CPUTime > 0 {
		d.CPUMS = st.CPUTime.Milliseconds()
	}
}
