package supervisor_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/python-executor/python-executor/client"
	warmengine "github.com/python-executor/python-executor/internal/engine/warm"
	"github.com/python-executor/python-executor/internal/proc"
	"github.com/python-executor/python-executor/internal/supervisortest"
	"github.com/python-executor/python-executor/wire"
)

// taintScript changes every kind of process state a script can reach: the
// preloaded modules, pandas options, files in /tmp and /dev/shm, the
// environment, the cwd, signal handlers, the PRNGs' seeds. With one zygote
// every later execution is forked from the same process as this one.
const taintScript = `
import os, signal, random, sys, json, time
import numpy, pandas

HOLD = 0  # seconds to keep running after tainting

def main():
    numpy.foo = 1
    numpy.array = None
    pandas.set_option("display.max_rows", 7)
    json.tainted = True
    sys.modules["tainted_module"] = object()
    with open("/tmp/secret", "w") as f:
        f.write("secret")
    with open("/dev/shm/secret", "w") as f:
        f.write("secret")
    os.environ["TAINTED"] = "1"
    os.chdir("/dev/shm")
    signal.signal(signal.SIGTERM, lambda *a: None)
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    random.seed(42)
    numpy.random.seed(42)
    sys.setrecursionlimit(50)
    time.sleep(HOLD)
    return "tainted"
`

// checkScript reports what of taintScript's changes it can see.
const checkScript = `
import os, signal, random, sys, json
import numpy, pandas

def main():
    return {
        "numpy_foo": hasattr(numpy, "foo"),
        "numpy_array": numpy.array is None,
        "max_rows": pandas.get_option("display.max_rows"),
        "json": hasattr(json, "tainted"),
        "module": "tainted_module" in sys.modules,
        "tmp": sorted(os.listdir("/tmp")),
        "shm": sorted(os.listdir("/dev/shm")),
        "env": "TAINTED" in os.environ,
        "cwd": os.getcwd(),
        "sigterm": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
        "sigalrm": signal.getsignal(signal.SIGALRM) == signal.SIG_DFL,
        "recursion": sys.getrecursionlimit(),
        "random": random.random(),
        "np_random": float(numpy.random.rand()),
    }
`

type checked struct {
	NumpyFoo   bool     `json:"numpy_foo"`
	NumpyArray bool     `json:"numpy_array"`
	MaxRows    int      `json:"max_rows"`
	JSON       bool     `json:"json"`
	Module     bool     `json:"module"`
	Tmp        []string `json:"tmp"`
	Shm        []string `json:"shm"`
	Env        bool     `json:"env"`
	Cwd        string   `json:"cwd"`
	SigTerm    bool     `json:"sigterm"`
	SigAlrm    bool     `json:"sigalrm"`
	Recursion  int      `json:"recursion"`
	Random     float64  `json:"random"`
	NpRandom   float64  `json:"np_random"`
}

// slimVariant is a taint or check script without numpy and pandas: it
// runs on the slim zygote kind (unless the slim kind is off), where it
// checks the same state but the preloaded modules'.
func slimVariant(script string) string {
	var keep []string
	for _, line := range strings.Split(script, "\n") {
		if !strings.Contains(line, "numpy") && !strings.Contains(line, "pandas") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}

func runCheck(t *testing.T, inst *supervisortest.Supervisor, script string) checked {
	t.Helper()
	out := run(t, inst, script, wire.Limits{})
	if out.Err != nil {
		t.Fatalf("check: %s: %s\n%s", out.Err.Type, out.Err.Message, out.Err.Traceback)
	}
	var c checked
	if err := json.Unmarshal(out.Result, &c); err != nil {
		t.Fatalf("check result %s: %v", out.Result, err)
	}
	return c
}

func wantClean(t *testing.T, c checked) {
	t.Helper()
	switch {
	case c.NumpyFoo || c.NumpyArray:
		t.Errorf("numpy changes of an earlier execution are visible: %+v", c)
	case c.MaxRows == 7:
		t.Errorf("pandas option of an earlier execution is visible")
	case c.JSON || c.Module:
		t.Errorf("module changes of an earlier execution are visible: %+v", c)
	case len(c.Tmp) != 0 || len(c.Shm) != 0:
		t.Errorf("files of an earlier execution are visible: /tmp %v, /dev/shm %v", c.Tmp, c.Shm)
	case c.Env:
		t.Errorf("environment of an earlier execution is visible")
	case c.Cwd != "/tmp":
		t.Errorf("cwd %q, want /tmp", c.Cwd)
	case !c.SigTerm || !c.SigAlrm:
		t.Errorf("signal handlers of an earlier execution are visible: %+v", c)
	case c.Recursion == 50:
		t.Errorf("recursion limit of an earlier execution is visible")
	}
}

// One zygote of each kind forks every execution: nothing one of them
// changes may reach the next one, or one running beside it. The scripts
// with numpy and pandas run on the preloaded zygote, their variants without
// on the slim one (on the preloaded one too when the tests run with
// PYEXEC_SLIM_ZYGOTES=0), and each taints the zygote the other checks
// from besides.
func TestNoStateCrossesExecutions(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		inst := startSupervisor(t, engine, "-zygotes", "1")
		for _, kind := range []struct {
			name          string
			taint, check  string
			numpyInScript bool
		}{
			{"preloaded", taintScript, checkScript, true},
			{"slim", slimVariant(taintScript), slimVariant(checkScript), false},
		} {
			t.Run(kind.name+"/sequential", func(t *testing.T) {
				wantResult(t, run(t, inst, kind.taint, wire.Limits{}), `"tainted"`)
				a := runCheck(t, inst, kind.check)
				wantClean(t, a)
				b := runCheck(t, inst, kind.check)
				wantClean(t, b)
				if a.Random == b.Random || (kind.numpyInScript && a.NpRandom == b.NpRandom) {
					t.Errorf("two executions drew the same random numbers: %+v, %+v", a, b)
				}
			})
			t.Run(kind.name+"/concurrent", func(t *testing.T) {
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					// The tainting execution is still running while
					// the checks run.
					held := strings.Replace(kind.taint, "HOLD = 0", "HOLD = 2", 1)
					out := run(t, inst, held, wire.Limits{})
					if out.Err != nil {
						t.Errorf("taint: %s: %s", out.Err.Type, out.Err.Message)
					}
				}()
				time.Sleep(700 * time.Millisecond)
				for i := 0; i < 3; i++ {
					wantClean(t, runCheck(t, inst, kind.check))
				}
				wg.Wait()
			})
		}
	})
}

// A zygote killed from the host is replaced; executions keep working.
func TestZygoteKilledIsReplaced(t *testing.T) {
	// Two preloaded zygotes and one slim.
	inst := startSupervisor(t, "warm", "-zygotes", "2", "-slim-zygotes", "1")
	zs := supervisortest.ZygoteProcesses(t)
	if len(zs) != 3 {
		t.Fatalf("%d zygotes, want 3: %v", len(zs), zs)
	}
	syscall.Kill(zs[0], syscall.SIGKILL)
	for i := 0; i < 6; i++ {
		wantResult(t, run(t, inst, "def main(): return 5", wire.Limits{}), "5")
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		now := supervisortest.ZygoteProcesses(t)
		if len(now) == 3 && !slices.Contains(now, zs[0]) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("zygotes %v 60s after killing %d, want three others", now, zs[0])
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Every zygote dead at once: executions wait for the new ones.
	for _, pid := range supervisortest.ZygoteProcesses(t) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for i := 0; i < 4; i++ {
		wantResult(t, run(t, inst, "import pandas\ndef main(): return pandas.__name__", wire.Limits{}), `"pandas"`)
	}
	if !strings.Contains(inst.Logs.String(), "zygote exited; starting a new one") {
		t.Errorf("the supervisor did not log the zygote's death")
	}
}

// A zygote that dies while one of its executions runs: that execution is an
// internal error at once (not at its deadline), the next one works.
func TestZygoteDiesMidExecution(t *testing.T) {
	inst := startSupervisor(t, "warm", "-zygotes", "1")
	// The self-test's sandboxes may still be going away (an answer goes
	// out before the teardown): let them, so that the processes seen
	// next are this execution's.
	for end := time.Now().Add(10 * time.Second); len(supervisortest.SandboxProcesses(t)) > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("sandbox processes before any execution: %v", supervisortest.SandboxProcesses(t))
		}
	}
	done := make(chan struct{})
	var outErr *wire.Error
	start := time.Now()
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := inst.Client.Execute(ctx, wire.Execute{Script: "import time\ndef main():\n    print('started', flush=True)\n    time.sleep(30)\n", Limits: wire.Limits{TimeoutMS: 20000}}, nil)
		if err != nil {
			t.Errorf("Execute: %v", err)
			return
		}
		outErr = out.Err
	}()
	deadline := time.Now().Add(20 * time.Second)
	for len(supervisortest.SandboxProcesses(t)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the execution never started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, pid := range supervisortest.ZygoteProcesses(t) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	<-done
	if outErr == nil || outErr.Type != wire.ErrInternal {
		t.Fatalf("execution whose zygote died: %+v, want internal", outErr)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("the answer took %s: it waited for the deadline", took)
	}
	wantResult(t, run(t, inst, "def main(): return 6", wire.Limits{}), "6")
}

// refusingZygote is zygote.py on a host that refuses nested namespaces: its
// clone into fresh namespaces fails with EPERM, as the kernel's does when
// user namespaces are disabled or exhausted. Everything else is the real
// zygote in its real jail.
func refusingZygote(t *testing.T) string {
	t.Helper()
	root := supervisortest.RepoRoot(t)
	src, err := os.ReadFile(filepath.Join(root, "runner", "zygote.py"))
	if err != nil {
		t.Fatal(err)
	}
	const entry = "\nif __name__ == \"__main__\":"
	if !bytes.Contains(src, []byte(entry)) {
		t.Fatalf("zygote.py has no %q to patch before", entry)
	}
	refuse := "\ndef _clone(flags: int) -> int:\n    raise OSError(1, \"clone: Operation not permitted\")\n\n"
	patched := bytes.Replace(src, []byte(entry), []byte(refuse+entry), 1)
	// Not t.TempDir (0700): the files are bound into the jails.
	dir := filepath.Join("/run", fmt.Sprintf("pyexec-it-refusing-%d", os.Getpid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	runner, err := os.ReadFile(filepath.Join(root, "runner", "runner.py"))
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string][]byte{"runner.py": runner, "zygote.py": patched} {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "runner.py")
}

// On a host that refuses nested namespaces the warm engine cannot start:
// the supervisor says so loudly, serves with the cold engine, and names it.
func TestWarmFallsBackToColdWhenNestedNamespacesAreRefused(t *testing.T) {
	inst := supervisortest.Start(t, supervisortest.Options{Args: []string{"-engine", "warm", "-runner", refusingZygote(t)}})
	st, err := inst.Client.Status(context.Background())
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if st.Engine != "cold" {
		t.Fatalf("engine %q after the warm engine failed, want cold:\n%s", st.Engine, inst.Logs)
	}
	if !strings.Contains(inst.Logs.String(), "WARM ENGINE UNAVAILABLE") {
		t.Errorf("no warning about the fallback in the log:\n%s", inst.Logs)
	}
	wantResult(t, run(t, inst, "def main():\n    return 41 + 1\n", wire.Limits{}), "42")
}

// Executions with the default limits start in a spare child, launched
// before they arrived, which runs their script with the jail's priority;
// other limits get a child of their own. Either way the limits hold.
func TestSpareChildren(t *testing.T) {
	inst := startSupervisor(t, "warm")
	// The jail's niceness (19) and SCHED_OTHER (0), as in the cold engine.
	script := "import os, resource\ndef main():\n    return [os.nice(0), os.sched_getscheduler(0), resource.getrlimit(resource.RLIMIT_CPU)[0]]\n"
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The first executions may come before the keepers have a spare.
		out := run(t, inst, script, wire.Limits{TimeoutMS: 3000})
		wantResult(t, out, "[19, 0, 60]")
		if strings.Contains(inst.Logs.String(), "execution took a spare child") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no execution took a spare child:\n%s", inst.Logs)
		}
	}
	// With spares, a zygote gets an order only when one is taken: a dead
	// child it failed to reap until its next order would hold its
	// execution (and the one behind it) for good.
	for i := 0; i < 150; i++ {
		start := time.Now()
		wantResult(t, run(t, inst, "def main():\n    return 1\n", wire.Limits{TimeoutMS: 10000}), "1")
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("execution %d took %s", i, took)
		}
	}
	// A lower memory limit: not the spares' limits.
	released := strings.Count(inst.Logs.String(), "execution child released")
	out := run(t, inst, script, wire.Limits{MemoryBytes: 64 << 20, CPUMS: 5000})
	wantResult(t, out, "[19, 0, 5]")
	if n := strings.Count(inst.Logs.String(), "execution child released"); n != released+1 {
		t.Errorf("an execution with other limits did not get a child of its own (%d launches, want %d)", n, released+1)
	}
	hog := "def main():\n    b = bytearray(200 << 20)\n    return len(b)\n"
	if out := run(t, inst, hog, wire.Limits{MemoryBytes: 64 << 20}); out.Err == nil || out.Err.Type != wire.ErrMemoryLimit {
		t.Errorf("200 MiB under a 64 MiB limit: %+v", out)
	}

	// A client that keeps asking for those limits: once 12 of the last 16
	// executions did, the spares are launched with them, and an execution
	// that takes one runs under them (RLIMIT_CPU 5 s, not the default 60).
	other := wire.Limits{MemoryBytes: 64 << 20, CPUMS: 5000}
	took := strings.Count(inst.Logs.String(), "execution took a spare child")
	for i := 0; strings.Count(inst.Logs.String(), "execution took a spare child") == took; i++ {
		if i == 40 {
			t.Fatalf("40 executions with the same other limits, none took a spare:\n%s", inst.Logs)
		}
		wantResult(t, run(t, inst, script, other), "[19, 0, 5]")
	}
	if !strings.Contains(inst.Logs.String(), "spares now launched with the limits most recent executions asked for") {
		t.Errorf("the switch of the spares' limits is not logged:\n%s", inst.Logs)
	}
	if out := run(t, inst, hog, other); out.Err == nil || out.Err.Type != wire.ErrMemoryLimit {
		t.Errorf("200 MiB under a 64 MiB limit, with the spares following it: %+v", out)
	}
	// The default limits never take a spare launched with other ones.
	wantResult(t, run(t, inst, script, wire.Limits{}), "[19, 0, 60]")
}

// Every zygote runs the warm-up workloads of the preloaded modules before it
// says it is ready; a slim zygote only those of none.
func TestZygotesWarmUp(t *testing.T) {
	inst := startSupervisor(t, "warm", "-zygotes", "2", "-slim-zygotes", "1")
	logs := inst.Logs.String()
	ready := logLines(t, logs, "zygote ready")
	warmed := map[string][]string{}
	var huge []float64
	for _, l := range ready {
		kind, _ := l["zygote_kind"].(string)
		w, _ := l["warmed"].(string)
		warmed[kind] = append(warmed[kind], w)
		if kb, ok := l["huge_kb"].(float64); ok && kind == "preloaded" {
			huge = append(huge, kb)
		}
	}
	full := "hello,exception,numpy,pandas,matplotlib"
	if want := map[string][]string{"preloaded": {full, full}, "slim": {"hello,exception"}}; fmt.Sprint(warmed) != fmt.Sprint(want) {
		t.Fatalf("zygotes report warm-ups %v, want %v:\n%s", warmed, want, logs)
	}
	if strings.Contains(logs, "could not preload or warm up") {
		t.Errorf("a warm-up failed:\n%s", logs)
	}
	// And backs its heap with huge pages where the kernel can (MADV_COLLAPSE:
	// Linux 6.1, any THP mode but "never").
	var uts unix.Utsname
	unix.Uname(&uts)
	var major, minor int
	fmt.Sscanf(unix.ByteSliceToString(uts.Release[:]), "%d.%d", &major, &minor)
	thp, _ := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if (major > 6 || major == 6 && minor >= 1) && len(thp) > 0 && !strings.Contains(string(thp), "[never]") {
		// The preloaded ones: a slim zygote's heap may be smaller than
		// one huge page.
		if len(huge) != 2 {
			t.Errorf("%d preloaded zygotes report their huge pages, want 2", len(huge))
		}
		for _, kb := range huge {
			if kb < 2048 {
				t.Errorf("a zygote reports %v KiB in huge pages, want at least one 2 MiB page", kb)
			}
		}
	}
}

// The answer goes out as soon as the runner has answered and closed its
// output, before the child's teardown (its exit, its namespaces, the
// zygote's report): with every zygote stopped, no report can come, and the
// answer must still arrive. The slot stays taken until the teardown is
// done.
func TestAnswerBeforeTeardown(t *testing.T) {
	inst := startSupervisor(t, "warm", "-zygotes", "1")
	// Every zygote's spare child, forked before the request (whichever
	// kind the request goes to): a stopped zygote could not fork one for
	// it.
	zs, cont := stopZygotesWithSpares(t, inst)
	defer cont()
	select {
	case a := <-executeAsync(inst, "def main():\n    print('hi')\n    return 7\n"):
		if a.err != nil {
			t.Fatalf("Execute: %v", a.err)
		}
		wantResult(t, a.out, "7")
		if string(a.out.Stdout) != "hi\n" || a.out.Done.PeakMemoryBytes <= 0 || a.out.Done.CPUMS < 0 {
			t.Errorf("answer given before the teardown: stdout %q, done %+v", a.out.Stdout, a.out.Done)
		}
	case <-time.After(8 * time.Second):
		// Before the supervisor gives up on the stopped zygote (its new
		// spare's hello is overdue after 10 s) and kills it, which would
		// end the teardown.
		t.Fatal("no answer while the zygote is stopped: the answer waits for the child's teardown")
	}
	// The same zygotes, still stopped: nothing reaped the child before the
	// answer.
	for _, z := range zs {
		if f, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", z)); err != nil || !bytes.Contains(f, []byte(") T ")) {
			t.Fatalf("zygote %d after the answer: %q, %v; want it stopped (state T)", z, f, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := inst.Client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Running != 1 {
		t.Errorf("running = %d while the answered execution's child is not reaped, want 1 (its slot held)", st.Running)
	}
	cont()
	deadline := time.Now().Add(20 * time.Second)
	for st.Running != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("running = %d 20 s after the zygote went on, want 0", st.Running)
		}
		time.Sleep(20 * time.Millisecond)
		if st, err = inst.Client.Status(ctx); err != nil {
			t.Fatal(err)
		}
	}
	wantResult(t, run(t, inst, "def main(): return 8", wire.Limits{}), "8")
}

// An execution's slot comes free once its child has exited, before its
// zygote has reaped it and reported: a zygote busy forking (or, here,
// stopped) does not hold the slots. At most as many executions as slots
// linger so: one more keeps its slot until the zygotes report.
func TestSlotFreedWhenChildExits(t *testing.T) {
	inst := startSupervisor(t, "warm", "-zygotes", "1", "-slots", "1")
	zs, cont := stopZygotesWithSpares(t, inst)
	defer cont()
	if len(zs) < 2 {
		t.Fatalf("%d zygotes, want one of each kind (is the slim kind off?)", len(zs))
	}
	execute := func(script string) <-chan asyncAnswer { return executeAsync(inst, script) }
	// Both spares (the slim one, then the preloaded one) run while no
	// zygote can reap: the second needs the only slot, which the first
	// gave back when its child exited. Well within the 10 s after which
	// the supervisor gives up on a stopped zygote.
	for i, script := range []string{"def main():\n    return 1\n", "def main():\n    return 2\n"} {
		select {
		case a := <-execute(script):
			if a.err != nil {
				t.Fatalf("Execute %d: %v", i+1, a.err)
			}
			wantResult(t, a.out, strconv.Itoa(i+1))
		case <-time.After(4 * time.Second):
			t.Fatalf("execution %d got no answer while the zygotes are stopped: the slot waits for the reaping of an exited child", i+1)
		}
	}
	// The first lingers, the second may not: it keeps the slot, and a third
	// waits in the queue until the zygotes go on.
	third := execute("def main():\n    return 3\n")
	// waitCounts waits up to within for the status to show running and
	// queued executions.
	waitCounts := func(running, queued int, within time.Duration, when string) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			st, err := inst.Client.Status(ctx)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			if st.Running == running && st.Queued == queued {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("running %d, queued %d %s, want %d and %d", st.Running, st.Queued, when, running, queued)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitCounts(2, 1, 2*time.Second, "with two unreaped executions and a third sent")
	cont()
	select {
	case a := <-third:
		if a.err != nil {
			t.Fatalf("Execute 3: %v", a.err)
		}
		wantResult(t, a.out, "3")
	case <-time.After(30 * time.Second):
		t.Fatal("the queued execution got no answer after the zygotes went on")
	}
	waitCounts(0, 0, 20*time.Second, "20 s after the zygotes went on")
}

// stopZygotesWithSpares waits until every zygote has a spare ready, then
// stops every zygote (SIGSTOP): they neither fork nor reap until cont. The
// supervisor gives up on a zygote whose new spare is 10 s overdue.
func stopZygotesWithSpares(t *testing.T, inst *supervisortest.Supervisor) (zygotes []int, cont func()) {
	t.Helper()
	zs := supervisortest.ZygoteProcesses(t)
	if len(zs) == 0 {
		t.Fatal("no zygote")
	}
	waitSpares(t, inst)
	cont = func() {
		for _, z := range zs {
			syscall.Kill(z, syscall.SIGCONT)
		}
	}
	for _, z := range zs {
		if err := syscall.Kill(z, syscall.SIGSTOP); err != nil {
			cont()
			t.Fatal(err)
		}
	}
	return zs, cont
}

// asyncAnswer is what executeAsync delivers.
type asyncAnswer struct {
	out *client.Outcome
	err error
}

// executeAsync runs script on inst in the background.
func executeAsync(inst *supervisortest.Supervisor, script string) <-chan asyncAnswer {
	got := make(chan asyncAnswer, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := inst.Client.Execute(ctx, wire.Execute{Script: script}, nil)
		got <- asyncAnswer{out, err}
	}()
	return got
}

// waitSpares waits until every zygote has a spare child ready and offered.
func waitSpares(t *testing.T, inst *supervisortest.Supervisor) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, z := range supervisortest.ZygoteProcesses(t) {
		for !hasSpareChild(z) {
			if time.Now().After(deadline) {
				t.Fatalf("zygote %d has no spare child:\n%s", z, inst.Logs)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// A spare runs under SCHED_BATCH from before its release; once
	// released it needs nothing more of its zygote, and its keeper
	// offers it a moment later.
	time.Sleep(300 * time.Millisecond)
}

// hasSpareChild reports whether process zygote has a child under
// SCHED_BATCH: a spare not yet taken (warmengine.SparePolicy).
func hasSpareChild(zygote int) bool {
	for _, pid := range proc.ChildrenOf(zygote) {
		if schedPolicy(pid) == warmengine.SparePolicy {
			return true
		}
	}
	return false
}

// logLines are the supervisor's JSON log lines with message msg.
func logLines(t *testing.T, logs, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(logs, "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if m["message"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// launchesByKind counts the executions' children by the kind of zygote
// that forked them: a spare taken or a child launched for the execution.
func launchesByKind(t *testing.T, inst *supervisortest.Supervisor) map[string]int {
	t.Helper()
	n := map[string]int{}
	logs := inst.Logs.String()
	for _, msg := range []string{"execution took a spare child", "execution child released"} {
		for _, l := range logLines(t, logs, msg) {
			k, _ := l["zygote_kind"].(string)
			n[k]++
		}
	}
	return n
}

// runOnKind runs script, wants result, and wants it to have run on a child
// of a zygote of kind.
func runOnKind(t *testing.T, inst *supervisortest.Supervisor, script, result, kind string) {
	t.Helper()
	// A slim script takes a preloaded spare when no slim one is ready,
	// and the answer goes out before the last child is gone, so the
	// keepers may not have replaced the spares yet: wait for them.
	waitSpares(t, inst)
	before := launchesByKind(t, inst)
	wantResult(t, run(t, inst, script, wire.Limits{}), result)
	// The line is written before the answer, but read from the
	// supervisor's output pipe on its own time.
	deadline := time.Now().Add(5 * time.Second)
	for {
		after := launchesByKind(t, inst)
		if after[kind] == before[kind]+1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("launches by zygote kind %v before, %v after, want one more %s:\n%s", before, after, kind, inst.Logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Each execution runs on the zygote kind its script's text asks for: a
// script that names none of the preloaded modules on a slim zygote, one
// that names one on a preloaded zygote. A script that hides its import of
// numpy runs on a slim one, and still gets the right answer. With
// -slim-zygotes 0 every execution runs on a preloaded zygote.
func TestZygoteKinds(t *testing.T) {
	const hello = "def main():\n    return {'message': 'Hello World'}\n"
	// Whether the child had the preload before the script imported
	// anything: the kinds differ in nothing else a script can see.
	const hasPandas = "import sys\n# numpy\ndef main():\n    return 'pandas' in sys.modules\n"
	t.Run("both", func(t *testing.T) {
		inst := startSupervisor(t, "warm", "-zygotes", "1", "-slim-zygotes", "1")
		// The start-up self-test proved the children of both kinds.
		if got := selfTestKinds(t, inst); !slices.Equal(got, []string{"preloaded", "slim"}) {
			t.Errorf("the self-test's isolation probe ran on zygote kinds %q, want preloaded and slim:\n%s", got, inst.Logs)
		}
		for i := 0; i < 3; i++ {
			// The first ones may find no spare, the later ones one.
			runOnKind(t, inst, hello, `{"message": "Hello World"}`, "slim")
		}
		runOnKind(t, inst, "import pandas as pd\ndef main():\n    return int(pd.Series([1, 2]).sum())\n", "3", "preloaded")
		runOnKind(t, inst, hasPandas, "true", "preloaded")
		runOnKind(t, inst, "import sys\ndef main():\n    name = 'num' + 'py'\n    before = name in sys.modules\n    np = __import__(name)\n    return [before, int(np.arange(4).sum())]\n", "[false, 6]", "slim")
		// The child's set-up needs no file after its rlimits are set,
		// though a slim zygote preloaded nothing: with no fd to spare
		// (0-5 are taken) the script still runs, as on a preloaded one.
		for _, n := range []int64{1, 6, 7} {
			for _, script := range []string{hello, "# pandas\n" + hello} {
				wantResult(t, run(t, inst, script, wire.Limits{OpenFiles: n}), `{"message": "Hello World"}`)
			}
		}
		// A lower memory limit: no spare, a child of its own, same kind.
		before := launchesByKind(t, inst)
		wantResult(t, run(t, inst, hello, wire.Limits{MemoryBytes: 128 << 20}), `{"message": "Hello World"}`)
		for deadline := time.Now().Add(5 * time.Second); launchesByKind(t, inst)["slim"] == before["slim"]; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the execution with its own limits did not run on a slim zygote:\n%s", inst.Logs)
			}
		}
	})
	t.Run("slim_off", func(t *testing.T) {
		inst := startSupervisor(t, "warm", "-zygotes", "1", "-slim-zygotes", "0")
		if zs := supervisortest.ZygoteProcesses(t); len(zs) != 1 {
			t.Fatalf("zygotes %v with -slim-zygotes 0, want 1", zs)
		}
		if got := selfTestKinds(t, inst); !slices.Equal(got, []string{"preloaded"}) {
			t.Errorf("the self-test's isolation probe ran on zygote kinds %q, want preloaded once", got)
		}
		runOnKind(t, inst, hello, `{"message": "Hello World"}`, "preloaded")
		runOnKind(t, inst, strings.Replace(hasPandas, "# numpy\n", "", 1), "true", "preloaded")
	})
}

// selfTestKinds are the zygote kinds the self-test's isolation probe ran
// on, sorted.
func selfTestKinds(t *testing.T, inst *supervisortest.Supervisor) []string {
	t.Helper()
	var kinds []string
	logs := inst.Logs.String()
	for _, msg := range []string{"execution took a spare child", "execution child released"} {
		for _, l := range logLines(t, logs, msg) {
			if l["execution_id"] == "selftest" {
				k, _ := l["zygote_kind"].(string)
				kinds = append(kinds, k)
			}
		}
	}
	slices.Sort(kinds)
	return kinds
}

// On cgroup v1 an execution's emptied cgroup is kept for the next one with
// the same limits (jail.ExecCgroup.Recycle): nothing of an execution may show
// in the figures of those after it (the peak memory, the limit hit), and the
// reuse is counted. On v2 every execution gets a new cgroup.
func TestKeptCgroupsCarryNothingOver(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		inst := startSupervisor(t, engine, "-zygotes", "1")
		_, err := os.Stat(filepath.Join("/sys/fs/cgroup/memory", inst.CgParent))
		v1 := err == nil
		big := run(t, inst, "def main():\n    b = bytearray(128 << 20)\n    return len(b)\n", wire.Limits{})
		wantResult(t, big, strconv.Itoa(128<<20))
		if big.Done.PeakMemoryBytes < 128<<20 {
			t.Errorf("peak after 128 MiB: %d bytes, want at least that", big.Done.PeakMemoryBytes)
		}
		hog := run(t, inst, "def main():\n    b = bytearray(1 << 30)\n    return len(b)\n", wire.Limits{MemoryBytes: 128 << 20})
		wantError(t, hog, wire.ErrMemoryLimit, "")
		for i := range 8 {
			lim := wire.Limits{}
			if i%2 == 1 {
				lim.MemoryBytes = 128 << 20 // the limits of the one killed
			}
			out := run(t, inst, "def main():\n    return 1\n", lim)
			wantResult(t, out, "1")
			if p := out.Done.PeakMemoryBytes; p <= 0 || p > 64<<20 {
				t.Errorf("execution %d after a 128 MiB one: peak %d bytes, want its own (0 to 64 MiB)", i, p)
			}
		}
		c := client.New(client.Config{SocketPath: inst.Socket, Features: []string{wire.FeatureMetrics}})
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		m, err := c.Metrics(ctx)
		if err != nil {
			t.Fatalf("Metrics: %v", err)
		}
		kept := -1.0
		for _, line := range strings.Split(string(m.Text), "\n") {
			if v, ok := strings.CutPrefix(line, "pyexec_supervisor_cgroups_kept_total "); ok {
				kept, _ = strconv.ParseFloat(v, 64)
			}
		}
		if kept < 0 {
			t.Fatalf("no pyexec_supervisor_cgroups_kept_total in the metrics:\n%s", m.Text)
		}
		if v1 && kept == 0 {
			t.Error("cgroup v1: no execution cgroup was kept for reuse (cgroups_kept_total 0)")
		}
		if !v1 && kept != 0 {
			t.Errorf("cgroup v2: %v execution cgroups kept, want none", kept)
		}
	})
}

// A spare's set-up yields the CPU to executions in flight: its cgroup has
// the lowest CPU weight until an execution takes it, and the execution then
// runs with its cgroup's own weight.
func TestSparesSetUpInTheBackground(t *testing.T) {
	inst := startSupervisor(t, "warm", "-zygotes", "1", "-slim-zygotes", "1")
	// v1: the cpu hierarchy and cpu.shares (2 is its minimum); v2: the one
	// hierarchy and cpu.weight (1 is its minimum).
	cpuDir, memDir, file, low, own, usage := "/sys/fs/cgroup/cpu/"+inst.CgParent, "/sys/fs/cgroup/memory/"+inst.CgParent, "cpu.shares", "2", "1024", "memory.usage_in_bytes"
	if _, err := os.Stat(cpuDir); err != nil {
		cpuDir, memDir, file, low, own, usage = "/sys/fs/cgroup/"+inst.CgParent, "/sys/fs/cgroup/"+inst.CgParent, "cpu.weight", "1", "100", "memory.current"
	}
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	done := make(chan *client.Outcome, 1)
	go func() {
		// 64 MiB tells its cgroup from the spares' (a few MiB each).
		done <- run(t, inst, "import time\ndef main():\n    b = bytearray(64 << 20)\n    time.sleep(4)\n    return len(b)\n", wire.Limits{})
	}()
	var sawExec, sawSpare bool
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && !(sawExec && sawSpare) {
		dirs, _ := filepath.Glob(filepath.Join(cpuDir, "spare-*"))
		for _, d := range dirs {
			name := filepath.Base(d)
			weight := read(filepath.Join(d, file))
			if weight == "" {
				if _, err := os.Stat(d); err == nil && !sawExec {
					if os.Getenv("CI") != "" {
						t.Fatalf("no %s in %s: the cpu controller is not enabled for execution cgroups", file, d)
					}
					t.Skipf("no %s in %s: the cpu controller is not enabled for execution cgroups", file, d)
				}
				continue // removed meanwhile
			}
			used, _ := strconv.ParseInt(read(filepath.Join(memDir, name, usage)), 10, 64)
			if used > 48<<20 {
				sawExec = true
				if weight != own {
					t.Fatalf("the execution's cgroup %s runs with CPU weight %s, want its own %s", name, weight, own)
				}
				continue
			}
			// A spare is fully set up once its child runs under
			// SCHED_BATCH (warmengine.SparePolicy).
			tasks := strings.Fields(read(filepath.Join(memDir, name, "cgroup.procs")))
			for _, p := range tasks {
				pid, _ := strconv.Atoi(p)
				if schedPolicy(pid) == warmengine.SparePolicy {
					sawSpare = true
					if weight != low {
						t.Fatalf("untaken spare's cgroup %s has CPU weight %s, want the minimum %s", name, weight, low)
					}
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !sawExec || !sawSpare {
		t.Errorf("saw the execution's cgroup: %v, an untaken spare's: %v; want both", sawExec, sawSpare)
	}
	wantResult(t, <-done, strconv.Itoa(64<<20))
}

// schedPolicy is process pid's scheduling policy (-1 when it is gone).
func schedPolicy(pid int) int {
	f, err := proc.Stat(pid)
	// policy is field 41 of proc(5); f starts at field 3.
	if err != nil || len(f) <= 38 {
		return -1
	}
	p, err := strconv.Atoi(f[38])
	if err != nil {
		return -1
	}
	return p
}
