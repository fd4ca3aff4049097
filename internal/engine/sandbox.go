package engine

import (
	"bytes"
	"context"
	"encoding/binary"
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

	"github.com/python-executor/python-executor/internal/jail"
	"github.com/python-executor/python-executor/wire"
)

// resultOverhead is what a result frame may carry beyond the JSON itself
// (header, msgpack framing, or an error's message and traceback).
const resultOverhead = 1 << 20

// ResultGrace is how long the runner gets to exit by itself after sending its
// answer before the jail is killed. The runner calls os._exit right after
// writing, so this only matters when something in the jail misbehaves (or
// the script hid the answer's writer). After a failed fork's answer the
// runner waits to be killed instead, which Supervise does at once.
const ResultGrace = 100 * time.Millisecond

// Sandbox is one started execution as the shared supervision loop
// (Supervise) sees it, whatever the engine that started it.
type Sandbox interface {
	// Wait blocks until every process of the execution is gone. It is
	// called once, after the output and result pipes reached EOF.
	Wait() (SandboxExit, error)
	// Kill ends every process of the execution. It may be called more
	// than once, and concurrently with Wait.
	Kill()
}

// watchedSandbox is a sandbox whose memory the supervisor watches itself
// (see memWatch) because no memory cgroup limits it.
type watchedSandbox interface {
	Sandbox
	// Processes lists every live process of the execution.
	Processes() []int
	// DiskUsage is what the execution has written where no private tmpfs
	// bounds it (the container tier): bytes and files. ok is false where
	// a tmpfs does.
	DiskUsage() (bytes int64, files int, ok bool)
}

// SandboxExit is how the execution's main process (the runner) ended.
type SandboxExit struct {
	Code, Sig int           // exit code, or the signal that killed it (Code -1)
	CPU       time.Duration // CPU time of the execution's processes, when known
	MaxRSS    int64         // bytes; 0 when unknown
	// Failure is set when the engine's own machinery failed (nsjail, a
	// zygote), not the script: the execution is internal, and this is
	// logged.
	Failure string
}

// PipeEnds are the supervisor's ends of an execution's pipes. Supervise
// closes them.
type PipeEnds struct {
	RequestW, ResultR, StdoutR, StderrR *os.File
}

// Close closes every end that is set.
func (p PipeEnds) Close() {
	for _, f := range []*os.File{p.RequestW, p.ResultR, p.StdoutR, p.StderrR} {
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

// Supervise drives one started execution to its outcome: it sends the
// request, captures the output and the answer, enforces the deadline and
// cancellation, and maps how it ended to an Outcome. The sandbox's processes
// are gone when it returns. An error means the engine failed (internal).
func Supervise(ctx context.Context, x *Execution, p PipeEnds, sb Sandbox, cg *jail.ExecCgroup, log *logrus.Entry) (Outcome, error) {
	defer p.Close()
	// The request goes over its own pipe, never argv: scripts can be large.
	go func() {
		req := wire.RunnerRequest{
			Script: x.Script, MaxResultBytes: x.Limits.ResultBytes,
			Args: x.Args, Files: x.Files,
			MaxFilesOut: int64(x.Limits.FilesOutCount), MaxFilesOutBytes: x.Limits.FilesOutBytes,
		}
		if x.Images {
			req.MaxImages, req.MaxImageBytes = MaxImages, MaxImageBytes
		}
		body, err := wire.NewFrame(1, wire.TypeExecute, req)
		if err == nil {
			err = wire.WriteFrame(p.RequestW, body)
		}
		if err != nil && !errors.Is(err, syscall.EPIPE) {
			log.WithError(err).Debug("write request")
		}
		p.RequestW.Close()
	}()

	var (
		wg                         sync.WaitGroup
		stdoutTrunc, stderrTrunc   bool
		answerCh                   = make(chan runnerAnswer, 1)
		readersDone, processExited = make(chan struct{}), make(chan struct{})
	)
	wg.Add(3)
	go func() { defer wg.Done(); stdoutTrunc = captureStream(p.StdoutR, x.Limits.OutputBytes, x.Stdout) }()
	go func() { defer wg.Done(); stderrTrunc = captureStream(p.StderrR, x.Limits.OutputBytes, x.Stderr) }()
	go func() {
		defer wg.Done()
		f, err := readRunnerAnswer(p.ResultR, answerCap(x))
		answerCh <- runnerAnswer{frame: f, err: err}
		// Anything after the first frame is ignored, but drained so that a
		// writer in the jail never blocks on us.
		io.Copy(io.Discard, p.ResultR)
	}()
	go func() { wg.Wait(); close(readersDone) }()
	var (
		exit    SandboxExit
		waitErr error
	)
	go func() {
		<-readersDone
		exit, waitErr = sb.Wait()
		close(processExited)
	}()

	// Without a memory cgroup the supervisor enforces the memory limit.
	var (
		watch   *memWatch
		memOver <-chan struct{}
		memHit  bool
		// tasksAtAnswer is the most tasks the execution held up to its
		// answer, counted only where no cgroup counts them.
		tasksAtAnswer int64
	)
	if ws, ok := sb.(watchedSandbox); ok && cg == nil {
		watch = startMemWatch(x.Limits, ws)
		memOver = watch.over
	}

	deadline := time.NewTimer(x.Limits.Timeout)
	defer deadline.Stop()
	var (
		answer    *runnerAnswer
		reason    wire.ExitReason
		graceC    <-chan time.Time
		killed    bool
		killAll   = func() { killed = true; sb.Kill() }
		answerIn  = (<-chan runnerAnswer)(answerCh)
		cancelled = ctx.Done()
		// early is the outcome already given to x.Answer, if any.
		early     *Outcome
		readersIn <-chan struct{}
	)
	if x.Answer != nil && cg != nil {
		// An answer can go out before the processes are gone only where
		// a cgroup counts the memory (see earlyOutcome): without one,
		// the peak comes from the rusage the sandbox reports once it is
		// reaped.
		readersIn = readersDone
	}
	gotAnswer := func(a runnerAnswer) {
		answerIn = nil
		answer = &a
		if a.err == nil && answerIsBlockingIO(a.frame) {
			if watch != nil {
				// What the execution holds when it answers tells a
				// failed fork at the process limit (RLIMIT_NPROC,
				// EAGAIN) from any other EAGAIN; there is no pids
				// cgroup to ask. The runner does not exit after such
				// an answer (runner.py, _wait_to_be_counted): its exit
				// as PID 1 would reap every zombie of the execution and
				// kill the rest, and a count after it would find
				// nothing, however close to the limit the execution
				// was when its fork failed.
				tasksAtAnswer = max(int64(countTasks(sb.(watchedSandbox).Processes())), watch.peakTasks.Load())
			}
			// Counted (or counted by the pids cgroup): the runner waits
			// for this, not for the grace period.
			killAll()
		}
		if a.err == nil {
			graceC = time.After(ResultGrace)
		}
	}
loop:
	for {
		select {
		case a := <-answerIn:
			gotAnswer(a)
		case <-readersIn:
			readersIn = nil
			if answer == nil {
				// The result reader has finished, so its answer is in the
				// channel.
				gotAnswer(<-answerCh)
			}
			// The runner answered and closed its output: nothing more can
			// come out of the sandbox, and a sandbox's exit after its
			// answer does not change the outcome (see the switch below).
			// Its teardown (exit, namespaces, reaping, the cgroup's
			// removal) takes longer than the execution itself for a
			// small script; the caller need not wait for it.
			if answer.err == nil && reason == "" && !killed {
				if out, ok := earlyOutcome(answer.frame, x, sb, cg, log); ok {
					out.Done.StdoutTruncated, out.Done.StderrTruncated = stdoutTrunc, stderrTrunc
					early = &out
					x.Answer(out)
				}
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
		case <-memOver:
			memOver = nil
			memHit = true
			killAll()
		case <-processExited:
			break loop
		}
	}
	if answer == nil { // the reader finished before the process was reaped
		a := <-answerCh
		answer = &a
	}
	var watchPeak int64
	if watch != nil {
		watchPeak = watch.finish()
	}
	if early != nil {
		// The caller has its answer; nothing the teardown finds changes
		// it (as in the switch below, where a well-formed answer wins over
		// the exit), but a failure to wait is still the engine's (logged
		// by TimedRun).
		return *early, waitErr
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
	out.Done.PeakMemoryBytes = max(out.Done.PeakMemoryBytes, watchPeak)
	code, sig := exit.Code, exit.Sig
	out.Done.ExitCode, out.Done.Signal = code, sig
	diskHit := memHit && watch.diskHit.Load()
	oom, pidsHit := st.OOMKilled || (memHit && !diskHit), st.PidsLimitHit
	if watch != nil && tasksAtAnswer >= int64(x.Limits.Pids/2) {
		// No cgroup: a failed fork while the execution held at least half
		// of its process limit is that limit.
		pidsHit = answer != nil && answer.err == nil && answerIsBlockingIO(answer.frame)
	}
	switch {
	case reason == wire.ExitCancelled:
		out.Err = &wire.Error{Type: wire.ErrCancelled, Message: "the execution was cancelled"}
	case reason == wire.ExitTimeout:
		out.Err = &wire.Error{Type: wire.ErrTimeout, Message: fmt.Sprintf("the script did not finish within %s", x.Limits.Timeout)}
	case answer.err == nil:
		// The runner's answer decides; how the sandbox exited after it
		// does not (an early answer relies on that).
		a := answeredOutcome(answer.frame, x, exit, st, pidsHit, log)
		a.Done.PeakMemoryBytes = out.Done.PeakMemoryBytes
		a.Done.StdoutTruncated, a.Done.StderrTruncated = stdoutTrunc, stderrTrunc
		out, reason = a, a.Done.ExitReason
		out.Done.ExitCode, out.Done.Signal = code, sig
	case errors.Is(answer.err, wire.ErrFrameTooLarge):
		reason = wire.ExitError
		out.Err = &wire.Error{Type: wire.ErrResultTooLarge, Message: fmt.Sprintf("the result is over the limit of %d bytes", x.Limits.ResultBytes)}
	case diskHit:
		reason = wire.ExitKilled
		out.Err = &wire.Error{Type: wire.ErrResourceLimit, Message: fmt.Sprintf("the script wrote more than the limit of %d MiB or %d files", x.Limits.TmpBytes>>20, x.Limits.TmpInodes)}
	case oom:
		reason = wire.ExitMemoryLimit
		out.Err = &wire.Error{Type: wire.ErrMemoryLimit, Message: fmt.Sprintf("the script used more than the memory limit of %d MiB", x.Limits.MemoryBytes>>20)}
	// A SIGKILL the supervisor sent (deadline, cancel) is not the limit;
	// of the others, the rusage and the cgroup each miss some of the
	// other's CPU time (a warm child's first milliseconds before it joins
	// its cgroup; nsjail's own accounting in the tiers without one), so the
	// larger of the two is asked.
	case !killed && cpuLimitKill(sig, max(out.Done.CPUMS, exit.CPU.Milliseconds()), x.Limits.CPUTime):
		reason = wire.ExitKilled
		out.Err = &wire.Error{Type: wire.ErrResourceLimit, Message: fmt.Sprintf("the script used more than the CPU time limit of %s", x.Limits.CPUTime)}
	case exit.Failure != "":
		return Outcome{}, errors.New(exit.Failure)
	case answer.err != io.EOF && !killed:
		// Garbage on the result fd: the script can write there (it runs in
		// the runner's process), so the script spoilt its own answer;
		// nothing else is affected and the service did not fail.
		reason = wire.ExitError
		out.Err = corruptedAnswer("")
		log.WithError(answer.err).Warn("malformed runner answer")
	default:
		reason = wire.ExitExited
		out.Err = &wire.Error{Type: wire.ErrExited, Message: exitMessage(code, sig)}
	}
	out.Done.ExitReason = reason
	return out, nil
}

// cpuSoFar is a sandbox that can tell the CPU time its processes have used
// while they exit, before they are gone (the warm engine's child). ok is
// false when it cannot.
type cpuSoFar interface {
	CPUTime() (d time.Duration, ok bool)
}

// earlyOutcome is the outcome of an execution that answered (frame f) and
// closed its output, given before its processes are gone: the CPU time
// from the cgroup (v2) or from the sandbox itself, the peak memory from
// the cgroup. ok is false when either cannot be had: the caller then waits
// for the sandbox's exit, as before.
func earlyOutcome(f wire.Frame, x *Execution, sb Sandbox, cg *jail.ExecCgroup, log *logrus.Entry) (out Outcome, ok bool) {
	st, err := cg.Stats()
	if err != nil {
		log.WithError(err).Debug("cgroup stats")
		return Outcome{}, false
	}
	if st.PeakMemoryBytes <= 0 {
		// No peak from the cgroup (v2 before Linux 5.19): the rusage
		// after the exit has it.
		return Outcome{}, false
	}
	if st.CPUTime <= 0 {
		c, isCPU := sb.(cpuSoFar)
		if !isCPU {
			return Outcome{}, false
		}
		d, known := c.CPUTime()
		if !known {
			return Outcome{}, false
		}
		st.CPUTime = d
	}
	return answeredOutcome(f, x, SandboxExit{}, st, st.PidsLimitHit, log), true
}

// answeredOutcome is the outcome of an execution whose runner answered
// with frame f, whatever happened to its processes afterwards; pidsHit says
// whether the process limit was reached, which turns a failed fork into
// resource_limit.
func answeredOutcome(f wire.Frame, x *Execution, exit SandboxExit, st jail.Stats, pidsHit bool, log *logrus.Entry) Outcome {
	var out Outcome
	fillStats(&out.Done, exit, st)
	var r wire.Result
	r, out.Err = interpretAnswer(f, x.Limits, x.Images)
	out.Result, out.Files, out.FilesTruncated = r.JSON, r.Files, r.FilesTruncated
	out.Images, out.ImagesTruncated = r.Images, r.ImagesTruncated
	if out.Err != nil && out.Err.Type == wire.ErrResultCorrupted {
		log.WithField("detail", out.Err.Message).Warn("runner answer refused")
	}
	reason := wire.ExitOK
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
	out.Done.ExitReason = reason
	return out
}

// TimedRun runs one execution through run and stamps its wall time; an
// error of the engine itself (not of the script) is logged and answered as
// internal. Both engines' Run methods are this.
func TimedRun(ctx context.Context, x *Execution, run func(context.Context, *Execution) (Outcome, error)) Outcome {
	start := time.Now()
	if answer := x.Answer; answer != nil {
		// An early answer's wall time ends at the answer, as the caller
		// sees it, not at the teardown after it.
		x.Answer = func(out Outcome) {
			out.Done.WallMS = time.Since(start).Milliseconds()
			answer(out)
		}
	}
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
func interpretAnswer(f wire.Frame, lim LimitSet, images bool) (wire.Result, *wire.Error) {
	var none wire.Result
	resultCap := lim.ResultBytes
	bad := corruptedAnswer("")
	if f.Version != wire.Version {
		return none, bad
	}
	switch f.Type {
	case wire.TypeResult:
		var r wire.Result
		if err := wire.Unmarshal(f.Body, &r); err != nil {
			return none, bad
		}
		if int64(len(r.JSON)) > resultCap {
			return none, &wire.Error{Type: wire.ErrResultTooLarge, Message: fmt.Sprintf("the result is %d bytes, over the limit of %d bytes", len(r.JSON), resultCap)}
		}
		if !utf8.Valid(r.JSON) || !json.Valid(r.JSON) {
			return none, &wire.Error{Type: wire.ErrInvalidResult, Message: "the result is not valid JSON"}
		}
		if err := checkOutputFiles(r.Files, lim); err != nil {
			return none, corruptedAnswer(err.Error())
		}
		if detail := checkImages(r, images); detail != "" {
			return none, corruptedAnswer(detail)
		}
		return r, nil
	case wire.TypeError:
		return none, interpretError(f)
	default:
		return none, bad
	}
}

// MaxOutputNameBytes bounds the name of an output file, a relative path
// under output/ (the runner's MAX_OUTPUT_NAME_BYTES), and MaxOutputDepth
// its names (the runner's MAX_OUTPUT_DEPTH); a name on disk is at most 255
// bytes, four times that once its bytes that are not UTF-8 are escaped.
const (
	MaxOutputNameBytes    = 4096
	MaxOutputDepth        = 16
	maxOutputElementBytes = 4 * 255
)

// FilesOutOverhead is what count output files may add to a result frame
// beyond their contents: their names and msgpack framing.
func FilesOutOverhead(count int) int64 { return int64(count) * (MaxOutputNameBytes + 64) }

// checkOutputFiles checks the output files of a result from the jail, which
// are hostile: the runner caps them, but the script may have written the
// frame itself. Names must be valid UTF-8 relative paths within bounds,
// unique, never both a file and the directory of another (a client that
// saves them could not), and the caps must hold: nothing a directory walk
// could not have produced.
func checkOutputFiles(files []wire.File, lim LimitSet) error {
	if len(files) > lim.FilesOutCount {
		return fmt.Errorf("%d output files, over the limit of %d", len(files), lim.FilesOutCount)
	}
	malformed := errors.New("an output file has a malformed name")
	var total int64
	seen := make(map[string]bool, len(files))
	for _, f := range files {
		total += int64(len(f.Data))
		if f.Name == "" || len(f.Name) > MaxOutputNameBytes || !utf8.ValidString(f.Name) || strings.ContainsRune(f.Name, 0) {
			return malformed
		}
		depth := 0
		for part := range strings.SplitSeq(f.Name, "/") {
			depth++
			if part == "" || part == "." || part == ".." || len(part) > maxOutputElementBytes || depth > MaxOutputDepth {
				return malformed
			}
		}
		if seen[f.Name] {
			return fmt.Errorf("an output file name is given twice")
		}
		seen[f.Name] = true
	}
	for _, f := range files {
		for i := range len(f.Name) {
			if f.Name[i] == '/' && seen[f.Name[:i]] {
				return fmt.Errorf("an output file name is also the directory of another")
			}
		}
	}
	if total > lim.FilesOutBytes {
		return fmt.Errorf("output files of %d bytes, over the limit of %d", total, lim.FilesOutBytes)
	}
	return nil
}

// interpretError is interpretAnswer for an error frame.
func interpretError(f wire.Frame) *wire.Error {
	bad := corruptedAnswer("")
	{
		var e wire.Error
		if err := wire.Unmarshal(f.Body, &e); err != nil {
			return bad
		}
		e.Message = clipText(strings.ToValidUTF8(e.Message, "\uFFFD"), MaxErrorMessageRunes)
		e.Traceback = clipText(strings.ToValidUTF8(e.Traceback, "\uFFFD"), MaxErrorTracebackRunes)
		switch e.Type {
		case wire.ErrSyntax, wire.ErrMissingMain, wire.ErrInvalidResult, wire.ErrResultTooLarge, wire.ErrExited:
		case wire.ErrInvalidArgs, wire.ErrInvalidRequest:
			// The runner's verdict on the request's args and files, made
			// before the script ran (a script forging one spoils only its
			// own answer).
		case wire.ErrInternal:
			// The runner reports a failure of its own code this way, but a
			// frame from the jail is never the service's own failure: the
			// script can forge it, or break the runner it runs in.
			return corruptedAnswer(e.Message)
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
			return bad
		}
		return &e
	}
}

// answerCap is the largest runner frame read: the result cap, the output
// files' caps and their names, the images' cap when images were asked for,
// and the frame's own overhead.
func answerCap(x *Execution) int {
	n := int(x.Limits.ResultBytes+x.Limits.FilesOutBytes+FilesOutOverhead(x.Limits.FilesOutCount)) + resultOverhead
	if x.Images {
		// Each image's map (keys, media type, bin header) besides its data.
		n += MaxImageBytes + MaxImages*64
	}
	return n
}

// pngHeader is a PNG's signature and the start of its IHDR chunk (length 13,
// type "IHDR"), which every PNG has first.
var pngHeader = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR")

// checkImages checks the images of a runner's answer, hostile bytes like the
// rest of the frame: none unless asked for, within the caps, each a PNG.
// It returns what is wrong, or "".
func checkImages(r wire.Result, asked bool) string {
	if !asked {
		if len(r.Images) > 0 || r.ImagesTruncated {
			return "images that were not asked for"
		}
		return ""
	}
	if len(r.Images) > MaxImages {
		return fmt.Sprintf("%d images, over the limit of %d", len(r.Images), MaxImages)
	}
	total := 0
	for i, im := range r.Images {
		if im.MediaType != "image/png" || len(im.Data) < len(pngHeader)+8 || !bytes.HasPrefix(im.Data, pngHeader) {
			return fmt.Sprintf("image %d is not a PNG", i)
		}
		// The raster it claims, checked here and not only by the runner
		// (whose frame a script can forge): a small PNG that decodes to
		// gigapixels would reach every client that shows it.
		w := binary.BigEndian.Uint32(im.Data[len(pngHeader):])
		h := binary.BigEndian.Uint32(im.Data[len(pngHeader)+4:])
		if w == 0 || h == 0 || uint64(w)*uint64(h) > MaxImagePixels {
			return fmt.Sprintf("image %d claims %d×%d pixels, over the limit of %d", i, w, h, MaxImagePixels)
		}
		total += len(im.Data)
	}
	if total > MaxImageBytes {
		return fmt.Sprintf("images of %d bytes, over the limit of %d", total, MaxImageBytes)
	}
	return ""
}

// The longest message and traceback of an error from the jail, in
// characters; longer ones lose their middle. The runner cuts its own at the
// same lengths (runner.MAX_MESSAGE_CHARS, MAX_TRACEBACK_CHARS); these hold
// whatever a forged frame carries, so an answer stays small however the
// gateway escapes it (at most six bytes of JSON per character).
const (
	MaxErrorMessageRunes   = 8 << 10
	MaxErrorTracebackRunes = 64 << 10
	ClipMarkerRoom         = 64
)

// corruptedAnswer is the error of an execution whose result channel carried
// something no honest runner sends, or whose runner reported a failure of
// its own (detail, clipped): the script's doing, never the service's.
func corruptedAnswer(detail string) *wire.Error {
	msg := "the script's process did not deliver a well-formed answer (the script wrote to the result channel or broke the runner)"
	if detail != "" {
		msg += ": " + clipText(detail, MaxErrorMessageRunes-len(msg)-2)
	}
	return &wire.Error{Type: wire.ErrResultCorrupted, Message: msg}
}

// clipText cuts s to at most limit characters by dropping its middle (the
// start names the problem, the end holds the innermost frame), like the
// runner's _clip. The runner's clipped text is its limit plus the marker,
// so up to ClipMarkerRoom characters over passes: an honest runner's text
// is never cut twice.
func clipText(s string, limit int) string {
	if utf8.RuneCountInString(s) <= limit+ClipMarkerRoom {
		return s
	}
	r := []rune(s)
	half := limit / 2
	return fmt.Sprintf("%s\n... [%d characters omitted] ...\n%s", string(r[:half]), len(r)-2*half, string(r[len(r)-half:]))
}

// WaitStatusExit decodes a wait status into an exit code and a signal.
func WaitStatusExit(ws syscall.WaitStatus) (code, sig int) {
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
// milliseconds per tick: 980 ms was seen under a 1 s limit with a cgroup,
// and 916 ms in the container tier, which has none. So the SIGKILL counts
// from 80 % of the limit: a script that kills itself with SIGKILL after
// spending that much of its budget is the only one told wrongly, and it
// is told it hit its CPU limit, not that the service failed.
func cpuLimitKill(sig int, cpuMS int64, limit time.Duration) bool {
	if sig == int(syscall.SIGXCPU) {
		return true
	}
	return sig == int(syscall.SIGKILL) && limit > 0 && cpuMS*100 >= limit.Milliseconds()*80
}

// fillStats fills the done event's CPU time and peak memory: from the
// sandbox's rusage, overridden by the cgroup's counters (st, zero without a
// cgroup) where they know better.
func fillStats(d *wire.Done, exit SandboxExit, st jail.Stats) {
	d.CPUMS = exit.CPU.Milliseconds()
	d.PeakMemoryBytes = exit.MaxRSS
	if st.PeakMemoryBytes > 0 {
		d.PeakMemoryBytes = st.PeakMemoryBytes
	}
	if st.CPUTime > 0 {
		d.CPUMS = st.CPUTime.Milliseconds()
	}
}

// answerIsBlockingIO reports whether the runner's answer is an uncaught
// BlockingIOError (EAGAIN), what a failed fork or thread start raises.
func answerIsBlockingIO(f wire.Frame) bool {
	if f.Type != wire.TypeError {
		return false
	}
	var e wire.Error
	return wire.Unmarshal(f.Body, &e) == nil && e.Type == wire.ErrException &&
		(strings.HasPrefix(e.Message, "BlockingIOError") || strings.HasPrefix(e.Message, "RuntimeError: can't start new thread"))
}
