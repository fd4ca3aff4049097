package e2e

import (
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/python-executor/python-executor/internal/supervisortest"
)

// degradedArgs start a supervisor as on a platform that delegates no
// cgroups: it finds none and is told to run anyway.
var degradedArgs = []string{"-cgroup-root", "/nonexistent-cgroup-root", "-degraded", "-slots", "3"}

// Without cgroups a fork bomb and a memory bomb running at the same time as a
// well-behaved execution get their own errors, and the neighbour, which forks
// and allocates too, answers correctly: rlimits alone, shared per uid, and
// the host's OOM killer would not give that.
func TestDegradedBombsBesideNeighbour(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		bombsBesideNeighbour(t, supervisortest.StartStack(t, engine, degradedArgs...))
	})
}

// bombsBesideNeighbour runs a fork bomb, a memory bomb of many processes and
// a neighbour that forks and allocates too, at once, twice: each bomb gets
// its error, the neighbour its answer, and nothing is left behind.
func bombsBesideNeighbour(t *testing.T, st *supervisortest.Stack) {
	{
		forkBomb := "import os\ndef main():\n    while True:\n        os.fork()\n"
		// Each process stays under RLIMIT_AS; together they are far over
		// the execution's 256 MiB.
		memBomb := `
import os, time
def main():
    for _ in range(8):
        if os.fork() == 0:
            hoard = bytearray(120 << 20)
            for i in range(0, len(hoard), 4096):
                hoard[i] = 1
            time.sleep(30)
            os._exit(0)
    time.sleep(30)
`
		neighbour := `
import multiprocessing as mp, numpy as np, time
def square(x):
    return x * x
def main():
    time.sleep(1.0)
    block = bytearray(64 << 20)
    with mp.get_context("fork").Pool(2) as p:
        squares = p.map(square, range(6))
    return {"squares": squares, "sum": float(np.arange(1000).sum()), "block": len(block)}
`
		for round := 0; round < 2; round++ {
			var wg sync.WaitGroup
			var fb, mb, nb *reply
			wg.Add(3)
			go func() { defer wg.Done(); fb = execute(t, st.Gateway.URL, forkBomb, map[string]any{"timeout": 20}) }()
			go func() {
				defer wg.Done()
				mb = execute(t, st.Gateway.URL, memBomb, map[string]any{"timeout": 20, "memory_mb": 256})
			}()
			go func() {
				defer wg.Done()
				time.Sleep(200 * time.Millisecond)
				nb = execute(t, st.Gateway.URL, neighbour, map[string]any{"timeout": 20})
			}()
			wg.Wait()
			if nb.Status != 200 || !sameJSON(nb.Body.Result, []byte(`{"squares": [0, 1, 4, 9, 16, 25], "sum": 499500.0, "block": 67108864}`)) {
				t.Fatalf("round %d: neighbour of the bombs: %d %s", round, nb.Status, nb.Raw)
			}
			fb.wantError(t, 500, "resource_limit")
			mb.wantError(t, 500, "memory_limit")
			waitNoSandboxProcesses(t)
		}
	}
}

// Without a pids cgroup a failed fork is told from any other EAGAIN by the
// processes the execution holds when it answers, those that exited unreaped
// included (RLIMIT_NPROC counts them too): the runner, PID 1 of the
// execution, waits to be counted instead of exiting, which would reap them.
// The children here exit at once, as a fork bomb's do after their own
// failed forks: the count must find them every time. With a pids cgroup the
// cgroup decides, and these children never reached its limit.
func TestDegradedFailedForkCountsExitedProcesses(t *testing.T) {
	const script = `
import os, time
def main():
    for _ in range(40):
        if os.fork() == 0:
            os._exit(0)
    time.sleep(0.2)
    raise BlockingIOError(11, "Resource temporarily unavailable")
`
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		for _, mode := range []struct {
			name string
			args []string
			want string
		}{{"degraded", degradedArgs, "resource_limit"}, {"cgroups", nil, "exception"}} {
			t.Run(mode.name, func(t *testing.T) {
				st := supervisortest.StartStack(t, engine, mode.args...)
				for range 3 {
					execute(t, st.Gateway.URL, script, nil).wantError(t, 500, mode.want)
				}
				waitNoSandboxProcesses(t)
			})
		}
	})
}

// /health names the protections in force and the ones missing; the existing
// keys keep their meaning.
func TestDegradedHealthNamesProtections(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		st := supervisortest.StartStack(t, engine, degradedArgs...)
		resp, err := http.Get(st.Gateway.URL + "/health")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var h struct {
			Status, Engine, Isolation, Cgroups, Tier string
			Protections, Missing                     []string
		}
		if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
			t.Fatal(err)
		}
		if h.Status != "healthy" || h.Engine != engine || h.Cgroups != "none" || h.Isolation != "degraded: no cgroups, rlimits only" || h.Tier != "full" {
			t.Fatalf("health %+v", h)
		}
		want := []string{"memory_watch", "process_limit_per_execution", "rlimits", "seccomp", "pid_namespace", "network_namespace"}
		if engine == "cold" {
			want = append(want, "uid_per_execution")
		}
		for _, want := range want {
			if !slices.Contains(h.Protections, want) {
				t.Errorf("protections %v lack %s", h.Protections, want)
			}
		}
		for _, want := range []string{"memory_cgroup", "pids_cgroup"} {
			if !slices.Contains(h.Missing, want) || slices.Contains(h.Protections, want) {
				t.Errorf("missing %v protections %v: want %s missing", h.Missing, h.Protections, want)
			}
		}
	})
}
