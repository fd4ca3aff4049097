package supervisor_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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

func runCheck(t *testing.T, inst *supervisortest.Supervisor) checked {
	t.Helper()
	out := run(t, inst, checkScript, wire.Limits{})
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

// One zygote forks every execution: nothing one of them changes may reach
// the next one, or one running beside it.
func TestNoStateCrossesExecutions(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		inst := startSupervisor(t, engine, "-zygotes", "1")
		t.Run("sequential", func(t *testing.T) {
			wantResult(t, run(t, inst, taintScript, wire.Limits{}), `"tainted"`)
			a := runCheck(t, inst)
			wantClean(t, a)
			b := runCheck(t, inst)
			wantClean(t, b)
			if a.Random == b.Random || a.NpRandom == b.NpRandom {
				t.Errorf("two executions drew the same random numbers: %+v, %+v", a, b)
			}
		})
		t.Run("concurrent", func(t *testing.T) {
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				// The tainting execution is still running while the
				// checks run.
				held := strings.Replace(taintScript, "HOLD = 0", "HOLD = 2", 1)
				out := run(t, inst, held, wire.Limits{})
				if out.Err != nil {
					t.Errorf("taint: %s: %s", out.Err.Type, out.Err.Message)
				}
			}()
			time.Sleep(700 * time.Millisecond)
			for i := 0; i < 3; i++ {
				wantClean(t, runCheck(t, inst))
			}
			wg.Wait()
		})
	})
}

// A zygote killed from the host is replaced; executions keep working.
func TestZygoteKilledIsReplaced(t *testing.T) {
	inst := startSupervisor(t, "warm", "-zygotes", "2")
	zs := supervisortest.ZygoteProcesses(t)
	if len(zs) != 2 {
		t.Fatalf("%d zygotes, want 2: %v", len(zs), zs)
	}
	syscall.Kill(zs[0], syscall.SIGKILL)
	for i := 0; i < 6; i++ {
		wantResult(t, run(t, inst, "def main(): return 5", wire.Limits{}), "5")
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		now := supervisortest.ZygoteProcesses(t)
		if len(now) == 2 && now[0] != zs[0] && now[1] != zs[0] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("zygotes %v 60s after killing %d, want two others", now, zs[0])
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
}

// Every zygote runs the warm-up workloads of the preloaded modules before it
// says it is ready.
func TestZygotesWarmUp(t *testing.T) {
	inst := startSupervisor(t, "warm", "-zygotes", "2")
	logs := inst.Logs.String()
	if n := strings.Count(logs, `"warmed":"hello,exception,numpy,pandas,matplotlib"`); n != 2 {
		t.Fatalf("%d zygotes report the whole warm-up, want 2:\n%s", n, logs)
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
		reports := regexp.MustCompile(`"huge_kb":(\d+)`).FindAllStringSubmatch(logs, -1)
		if len(reports) != 2 {
			t.Errorf("%d zygotes report their huge pages, want 2", len(reports))
		}
		for _, m := range reports {
			if kb, _ := strconv.Atoi(m[1]); kb < 2048 {
				t.Errorf("a zygote reports %s KiB in huge pages, want at least one 2 MiB page", m[1])
			}
		}
	}
}
