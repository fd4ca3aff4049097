package supervisor_test

// Integration tests: the real supervisor binary, real nsjail, real sockets.
// They need root; under CI=true a missing prerequisite fails instead of
// skipping.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/python-executor/python-executor/client"
	"github.com/python-executor/python-executor/internal/supervisortest"
	"github.com/python-executor/python-executor/wire"
)

func TestMain(m *testing.M) {
	if sock := os.Getenv("PYEXEC_HELPER_SOCKET"); sock != "" {
		if script := os.Getenv(helperScript); script != "" {
			n, _ := strconv.Atoi(os.Getenv(helperCount))
			executeAsHelper(sock, script, max(n, 1))
		} else {
			dialAsHelper(sock)
		}
		os.Exit(0)
	}
	code := m.Run()
	supervisortest.Cleanup()
	os.Exit(code)
}

func startSupervisor(t *testing.T, engine string, args ...string) *supervisortest.Supervisor {
	return supervisortest.Start(t, supervisortest.Options{Engine: engine, Args: args})
}

func supervisorBin(t *testing.T) string {
	return filepath.Join(supervisortest.Binaries(t), "supervisor")
}

func sandboxProcesses(t *testing.T) []int { return supervisortest.SandboxProcesses(t) }

func run(t *testing.T, inst *supervisortest.Supervisor, script string, lim wire.Limits) *client.Outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := inst.Client.Execute(ctx, wire.Execute{Script: script, Limits: lim}, nil)
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	return out
}

func wantResult(t *testing.T, out *client.Outcome, want string) {
	t.Helper()
	if out.Err != nil {
		t.Fatalf("error %s: %s\n%s", out.Err.Type, out.Err.Message, out.Err.Traceback)
	}
	var got, exp any
	if err := json.Unmarshal(out.Result, &got); err != nil {
		t.Fatalf("result %q is not JSON: %v", out.Result, err)
	}
	if err := json.Unmarshal([]byte(want), &exp); err != nil {
		t.Fatal(err)
	}
	g, _ := json.Marshal(got)
	e, _ := json.Marshal(exp)
	if !bytes.Equal(g, e) {
		t.Fatalf("result = %s, want %s", out.Result, want)
	}
}

func wantError(t *testing.T, out *client.Outcome, typ wire.ErrorType, msgPart string) {
	t.Helper()
	if out.Err == nil {
		t.Fatalf("result %s, want error %s", out.Result, typ)
	}
	if out.Err.Type != typ || !strings.Contains(out.Err.Message, msgPart) {
		t.Fatalf("error = %s: %q, want %s containing %q\n%s", out.Err.Type, out.Err.Message, typ, msgPart, out.Err.Traceback)
	}
}

// The seed README's three examples, through the real jail.
func TestSeedExamples(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		inst := startSupervisor(t, engine)
		cases := []struct{ name, script, want string }{
			{"hello", `def main(): return {"message": "Hello World", "result": 42}`, `{"message": "Hello World", "result": 42}`},
			{"pandas", `
import pandas as pd
import numpy as np

def main():
    df = pd.DataFrame({"A": [1, 2, 3], "B": [4, 5, 6]})
    return {
        "shape": df.shape,
        "sum": df.sum().to_dict(),
        "mean": df.mean().to_dict()
    }
`, `{"shape": [3, 2], "sum": {"A": 6, "B": 15}, "mean": {"A": 2.0, "B": 5.0}}`},
			{"numpy", `
import numpy as np

def main():
    arr = np.array([1, 2, 3, 4, 5])
    return {
        "array": arr.tolist(),
        "sum": float(np.sum(arr)),
        "mean": float(np.mean(arr)),
        "std": float(np.std(arr))
    }
`, `{"array": [1, 2, 3, 4, 5], "sum": 15.0, "mean": 3.0, "std": 1.4142135623730951}`},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				out := run(t, inst, tc.script, wire.Limits{})
				wantResult(t, out, tc.want)
				if out.Done.ExitReason != wire.ExitOK {
					t.Errorf("exit reason %q, want ok", out.Done.ExitReason)
				}
			})
		}
	})
}

func TestOutcomes(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		inst := startSupervisor(t, engine)
		cases := []struct {
			name, script string
			typ          wire.ErrorType
			msg          string
		}{
			{"syntax_error", "def main(:\n  return 1", wire.ErrSyntax, "line 1"},
			{"missing_main", "x = 1", wire.ErrMissingMain, "main"},
			{"main_not_callable", "main = 3", wire.ErrMissingMain, "main"},
			{"invalid_result_set", "def main(): return {'items': [1, 2, 3, {4}]}", wire.ErrInvalidResult, "$.items[3]: set"},
			{"exception_in_main", "def main():\n    raise ValueError('boom')", wire.ErrException, "ValueError"},
			{"exception_at_import", "import nosuchmodule_xyz\ndef main(): return 1", wire.ErrException, "ModuleNotFoundError"},
			{"sys_exit", "import sys\ndef main():\n    sys.exit(3)", wire.ErrExited, "3"},
			{"os_exit", "import os\ndef main():\n    os._exit(7)", wire.ErrExited, "status 7"},
			{"segfault", "import ctypes\ndef main():\n    ctypes.string_at(0)", wire.ErrExited, "SIGSEGV"},
			{"input", "def main():\n    return input()", wire.ErrException, "EOFError"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				out := run(t, inst, tc.script, wire.Limits{})
				wantError(t, out, tc.typ, tc.msg)
			})
		}
		t.Run("traceback_user_frames_only", func(t *testing.T) {
			out := run(t, inst, "def helper():\n    raise KeyError('k')\n\ndef main():\n    helper()\n", wire.Limits{})
			wantError(t, out, wire.ErrException, "KeyError")
			tb := out.Err.Traceback
			if !strings.Contains(tb, "helper()") || !strings.Contains(tb, "raise KeyError('k')") || strings.Contains(tb, "runner.py") {
				t.Fatalf("traceback should show the user's frames only:\n%s", tb)
			}
		})
		t.Run("main_guard_runs_once", func(t *testing.T) {
			out := run(t, inst, "calls = []\ndef main():\n    calls.append(1)\n    print('ran', len(calls))\n    return len(calls)\nif __name__ == '__main__':\n    main()\n", wire.Limits{})
			wantResult(t, out, "1")
			if string(out.Stdout) != "ran 1\n" {
				t.Fatalf("stdout %q, want %q", out.Stdout, "ran 1\n")
			}
		})
		t.Run("stdout_and_stderr", func(t *testing.T) {
			out := run(t, inst, "import os, sys\ndef main():\n    print('out')\n    print('err', file=sys.stderr)\n    os.system('echo from-child 1>&2') if os.path.exists('/bin/sh') else None\n    os.write(1, b'raw\\xff\\n')\n    return 1\n", wire.Limits{})
			wantResult(t, out, "1")
			if string(out.Stdout) != "out\nraw\xff\n" || !strings.HasPrefix(string(out.Stderr), "err\n") {
				t.Fatalf("stdout %q stderr %q", out.Stdout, out.Stderr)
			}
		})
	})
}

func TestTimeout(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		inst := startSupervisor(t, engine)
		start := time.Now()
		out := run(t, inst, "import time\ndef main():\n    time.sleep(60)\n", wire.Limits{TimeoutMS: 1500})
		took := time.Since(start)
		wantError(t, out, wire.ErrTimeout, "1.5s")
		if took < 1500*time.Millisecond || took > 4*time.Second {
			t.Fatalf("timeout answered after %s, want about 1.5s", took)
		}
		if out.Done.ExitReason != wire.ExitTimeout {
			t.Fatalf("exit reason %q, want timeout", out.Done.ExitReason)
		}
	})
}

// A daemonised grandchild must neither hold the answer back nor survive it.
func TestDaemonisedChild(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		inst := startSupervisor(t, engine)
		script := `
import os, time
def main():
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            while True:
                print("daemon alive", flush=True)
                time.sleep(0.05)
        os._exit(0)
    time.sleep(0.3)
    return "parent done"
`
		start := time.Now()
		out := run(t, inst, script, wire.Limits{TimeoutMS: 20000})
		wantResult(t, out, `"parent done"`)
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("answer took %s: the daemon held it back", took)
		}
		time.Sleep(200 * time.Millisecond)
		if pids := sandboxProcesses(t); len(pids) > 0 {
			t.Fatalf("jailed processes survived the execution: %v", pids)
		}
	})
}

func TestOutputCap(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		inst := startSupervisor(t, engine, "-output-kb", "64")
		out := run(t, inst, "import sys\ndef main():\n    for i in range(20000):\n        print('x' * 99)\n    sys.stderr.write('e' * 200000)\n    return 'ok'\n", wire.Limits{})
		wantResult(t, out, `"ok"`)
		if len(out.Stdout) != 64<<10 || !out.Done.StdoutTruncated {
			t.Fatalf("stdout %d bytes truncated=%v, want %d and true", len(out.Stdout), out.Done.StdoutTruncated, 64<<10)
		}
		if len(out.Stderr) != 64<<10 || !out.Done.StderrTruncated {
			t.Fatalf("stderr %d bytes truncated=%v, want %d and true", len(out.Stderr), out.Done.StderrTruncated, 64<<10)
		}
	})
}

func TestResultCap(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		inst := startSupervisor(t, engine, "-result-kb", "100")
		out := run(t, inst, "def main():\n    return 'y' * 200000\n", wire.Limits{})
		wantError(t, out, wire.ErrResultTooLarge, "limit")
		out = run(t, inst, "def main():\n    return 'y' * 1000\n", wire.Limits{})
		if out.Err != nil || len(out.Result) != 1002 {
			t.Fatalf("small result after a large one: %v %d", out.Err, len(out.Result))
		}
	})
}

func TestMemoryLimit(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		inst := startSupervisor(t, engine)
		out := run(t, inst, "def main():\n    x = bytearray(1 << 30)\n    x[::4096] = b'x' * len(x[::4096])\n    return len(x)\n", wire.Limits{MemoryBytes: 128 << 20})
		wantError(t, out, wire.ErrMemoryLimit, "memory")
	})
}

func TestConcurrentExecutions(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		inst := startSupervisor(t, engine)
		const n = 20
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
				defer cancel()
				out, err := inst.Client.Execute(ctx, wire.Execute{Script: fmt.Sprintf("def main():\n    print(%d)\n    return {'i': %d}\n", i, i)}, nil)
				switch {
				case err != nil:
					errs <- fmt.Errorf("%d: %v", i, err)
				case out.Err != nil:
					errs <- fmt.Errorf("%d: %s: %s", i, out.Err.Type, out.Err.Message)
				case string(out.Result) != fmt.Sprintf(`{"i":%d}`, i) || string(out.Stdout) != fmt.Sprintf("%d\n", i):
					errs <- fmt.Errorf("%d: result %s stdout %q", i, out.Result, out.Stdout)
				}
			}(i)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

func TestBusy(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		inst := startSupervisor(t, engine, "-slots", "1", "-queue", "1")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var wg sync.WaitGroup
		for i := 0; i < 2; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				inst.Client.Execute(ctx, wire.Execute{Script: "import time\ndef main():\n    time.sleep(30)\n"}, nil)
			}()
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			st, err := inst.Client.Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if st.Running == 1 && st.Queued == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("status %+v never showed 1 running and 1 queued", st)
			}
			time.Sleep(20 * time.Millisecond)
		}
		start := time.Now()
		out := run(t, inst, "def main(): return 1", wire.Limits{})
		wantError(t, out, wire.ErrBusy, "capacity")
		if time.Since(start) > time.Second {
			t.Fatalf("busy took %s, want at once", time.Since(start))
		}
		cancel()
		wg.Wait()
	})
}

func TestCancel(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		inst := startSupervisor(t, engine)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := inst.Client.Execute(ctx, wire.Execute{Script: "import time\ndef main():\n    print('started', flush=True)\n    time.sleep(60)\n"}, nil)
			done <- err
		}()
		deadline := time.Now().Add(20 * time.Second)
		for len(sandboxProcesses(t)) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the execution never started")
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		if err := <-done; err == nil {
			t.Fatal("Execute returned no error after cancel")
		}
		deadline = time.Now().Add(5 * time.Second)
		for len(sandboxProcesses(t)) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("jailed processes still alive 5s after cancel: %v", sandboxProcesses(t))
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// A second supervisor that would share the running one's socket, cgroup
// parent or staging directory refuses to start, before it touches any of
// them: one sharing only the cgroup parent used to sweep the running one's
// cgroups as leftovers (killing its zygotes) and, on its way out, remove the
// parent the running one still needs.
func TestRefusesSecondSupervisor(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		inst := startSupervisor(t, engine)
		base := filepath.Dir(filepath.Dir(inst.Socket))
		root := supervisortest.RepoRoot(t)
		for _, tc := range []struct {
			name, socket, parent, stage, want string
		}{
			{"socket", inst.Socket, inst.CgParent + "-second", filepath.Join(base, "stage2"), "same socket (" + inst.Socket + ")"},
			{"cgroup_parent", filepath.Join(base, "second", "s.sock"), inst.CgParent, filepath.Join(base, "stage2"), "same cgroup parent (/" + inst.CgParent + ")"},
			{"stage_dir", filepath.Join(base, "second", "s.sock"), inst.CgParent + "-second", inst.StageDir, "same staging directory (" + inst.StageDir + ")"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, supervisorBin(t), "-socket", tc.socket, "-gateway-user", "", "-venv", filepath.Join(root, ".venv"), "-runner", filepath.Join(root, "runner", "runner.py"), "-cgroup-parent", tc.parent, "-stage-dir", tc.stage)
				var out bytes.Buffer
				cmd.Stderr = &out
				err := cmd.Run()
				if err == nil || ctx.Err() != nil || !strings.Contains(out.String(), "another supervisor is running with the "+tc.want) || !strings.Contains(out.String(), fmt.Sprintf("pid %d", inst.Pid())) {
					t.Fatalf("second supervisor: err=%v log=%s, want a refusal naming the %s and the running one's pid %d", err, out.String(), tc.want, inst.Pid())
				}
				if strings.Contains(out.String(), "leftover") {
					t.Errorf("the refused supervisor swept cgroups first: %s", out.String())
				}
				// The first one still serves, with its own cgroups.
				wantResult(t, run(t, inst, "def main(): return 2", wire.Limits{}), "2")
			})
		}
	})
}

func TestStaleSocketReplaced(t *testing.T) {
	supervisortest.RequireRoot(t)
	name := fmt.Sprintf("/run/pyexec-it-stale-%d", os.Getpid())
	sock := filepath.Join(name, "sock", "supervisor.sock")
	os.MkdirAll(name, 0o755)
	os.MkdirAll(filepath.Dir(sock), 0o750)
	defer os.RemoveAll(name)
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close() // the file stays; nobody answers on it
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("stale socket not there: %v", err)
	}
	cmd := exec.Command(supervisorBin(t), "-socket", sock, "-gateway-user", "", "-venv", filepath.Join(supervisortest.RepoRoot(t), ".venv"), "-runner", filepath.Join(supervisortest.RepoRoot(t), "runner", "runner.py"), "-cgroup-parent", filepath.Base(name), "-stage-dir", filepath.Join(name, "stage"))
	var logs supervisortest.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	c := client.New(client.Config{SocketPath: sock})
	defer c.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := c.Status(context.Background()); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("supervisor did not take over the stale socket:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A peer that is neither root nor the gateway is closed before any frame.
func TestPeerCredentialsRejected(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		inst := startSupervisor(t, engine)
		// The socket dir is root-only here (no gateway group), so open it up
		// just for this test to reach the credential check itself.
		os.Chmod(filepath.Dir(inst.Socket), 0o755)
		os.Chmod(inst.Socket, 0o666)
		// The test binary's own directory is private to root: run a copy from
		// a directory uid 65534 can reach.
		dir, err := os.MkdirTemp("", "pyexec-peer-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		os.Chmod(dir, 0o755)
		self, err := os.ReadFile(os.Args[0])
		if err != nil {
			t.Fatal(err)
		}
		helper := filepath.Join(dir, "helper.test")
		if err := os.WriteFile(helper, self, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(helper)
		cmd.Env = []string{"PYEXEC_HELPER_SOCKET=" + inst.Socket}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, _ := cmd.CombinedOutput()
		if !strings.Contains(string(out), "REJECTED") {
			t.Fatalf("peer uid 65534 was not rejected: %s", out)
		}
		if !strings.Contains(inst.Logs.String(), "rejected peer") {
			t.Fatalf("supervisor did not log the rejection")
		}
		wantResult(t, run(t, inst, "def main(): return 3", wire.Limits{}), "3")
	})
}

// dialAsHelper is the body of the helper process of
// TestPeerCredentialsRejected (started with PYEXEC_HELPER_SOCKET, as uid
// 65534): it reports whether the supervisor served it.
func dialAsHelper(sock string) {
	c := client.New(client.Config{SocketPath: sock, DialTimeout: 2 * time.Second})
	defer c.Close()
	if _, err := c.Status(context.Background()); err != nil {
		fmt.Println("REJECTED:", err)
		return
	}
	fmt.Println("ACCEPTED")
}

// A client that sends garbage loses its connection; everyone else is served.
func TestOversizeFrameClosesOnlyThatConnection(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		inst := startSupervisor(t, engine)
		c, err := net.Dial("unix", inst.Socket)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		f, _ := wire.NewFrame(0, wire.TypeHello, wire.Hello{Version: 1, Software: "test"})
		wire.WriteFrame(c, f)
		if _, err := wire.ReadFrame(c, wire.DefaultMaxFrame); err != nil {
			t.Fatalf("hello: %v", err)
		}
		c.Write([]byte{0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 1, 2, 1})
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		rd := bufio.NewReader(c)
		for {
			if _, err := wire.ReadFrame(rd, wire.DefaultMaxFrame); err != nil {
				if err != io.EOF {
					t.Fatalf("connection not closed cleanly after an oversize frame: %v", err)
				}
				break
			}
		}
		wantResult(t, run(t, inst, "def main(): return 4", wire.Limits{}), "4")
	})
}

// Every log line about an execution names it.
func TestLogLinesCarryExecutionID(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		inst := startSupervisor(t, engine)
		run(t, inst, "def main():\n    raise RuntimeError('x')\n", wire.Limits{})
		run(t, inst, "def main(): return 1", wire.Limits{})
		inst.Client.Close()
		inst.Stop(t)
		n := 0
		for _, line := range strings.Split(inst.Logs.String(), "\n") {
			if !strings.HasPrefix(line, "{") {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("log line is not JSON: %q", line)
			}
			msg, _ := m["message"].(string)
			if strings.HasPrefix(msg, "execution") || m["nsjail_pid"] != nil {
				n++
				if id, _ := m["execution_id"].(string); id == "" {
					t.Errorf("log line without execution_id: %s", line)
				}
			}
		}
		if n < 4 {
			t.Fatalf("found %d execution log lines, want at least 4:\n%s", n, inst.Logs.String())
		}
	})
}

// Without usable cgroups the supervisor refuses to start...
func TestFailsClosedWithoutCgroups(t *testing.T) {
	supervisortest.RequireRoot(t)
	root := supervisortest.RepoRoot(t)
	dir := fmt.Sprintf("/run/pyexec-it-closed-%d", os.Getpid())
	os.MkdirAll(dir, 0o755)
	defer os.RemoveAll(dir)
	cmd := exec.Command(supervisorBin(t), "-socket", filepath.Join(dir, "sock", "s.sock"), "-gateway-user", "", "-venv", filepath.Join(root, ".venv"), "-runner", filepath.Join(root, "runner", "runner.py"), "-stage-dir", filepath.Join(dir, "stage"), "-cgroup-root", filepath.Join(dir, "no-cgroups"))
	var logs bytes.Buffer
	cmd.Stderr = &logs
	err := cmd.Run()
	if err == nil || !strings.Contains(logs.String(), "refusing to start") || !strings.Contains(logs.String(), "-degraded") {
		t.Fatalf("supervisor without cgroups: err=%v, log:\n%s\nwant a refusal naming -degraded", err, logs.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "sock", "s.sock")); err == nil {
		t.Fatal("a refusing supervisor left its socket")
	}
}

// ...unless the operator asks for degraded mode, which is then reported and
// still limits memory and processes with rlimits.
func TestDegradedModeWithoutCgroups(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		inst := startSupervisor(t, engine, "-cgroup-root", "/nonexistent-cgroup-root", "-degraded")
		st, err := inst.Client.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Cgroups != "none" || !strings.HasPrefix(st.Isolation, "degraded") {
			t.Fatalf("status %+v, want cgroups none and a degraded isolation", st)
		}
		out := run(t, inst, "def main():\n    x = bytearray(1 << 30)\n    return len(x)\n", wire.Limits{MemoryBytes: 128 << 20})
		wantError(t, out, wire.ErrMemoryLimit, "")
		out = run(t, inst, "import os, time\ndef main():\n    n = 0\n    try:\n        while True:\n            if os.fork() == 0:\n                time.sleep(5)\n                os._exit(0)\n            n += 1\n    except OSError:\n        return n < 64\n", wire.Limits{TimeoutMS: 10000})
		wantResult(t, out, "true")
	})
}

// A supervisor without its venv or nsjail names the command that fixes it.
func TestMissingInstallationNamesSetup(t *testing.T) {
	supervisortest.RequireRoot(t)
	dir := fmt.Sprintf("/run/pyexec-it-nosetup-%d", os.Getpid())
	os.MkdirAll(dir, 0o755)
	defer os.RemoveAll(dir)
	for _, tc := range []struct{ name, flag, value string }{
		{"no_venv", "-venv", filepath.Join(dir, "no-venv")},
		{"no_nsjail", "-nsjail", filepath.Join(dir, "no-nsjail")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(supervisorBin(t), "-socket", filepath.Join(dir, "s.sock"), "-gateway-user", "", "-stage-dir", filepath.Join(dir, "stage"), "-runner", filepath.Join(supervisortest.RepoRoot(t), "runner", "runner.py"), tc.flag, tc.value)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), "make setup") {
				t.Fatalf("err=%v output=%s; want a failure naming make setup", err, out)
			}
		})
	}
}

// The socket is reachable by root and the gateway's group only.
func TestSocketPermissions(t *testing.T) {
	inst := supervisortest.Start(t, supervisortest.Options{Engine: "cold", GatewayUser: supervisortest.GatewayUser})
	_, gid := supervisortest.LookupUser(t, supervisortest.GatewayUser)
	for _, tc := range []struct {
		path string
		mode os.FileMode
	}{{filepath.Dir(inst.Socket), 0o750 | os.ModeDir}, {inst.Socket, 0o660 | os.ModeSocket}} {
		fi, err := os.Stat(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode() != tc.mode || st.Uid != 0 || int(st.Gid) != gid {
			t.Errorf("%s: mode %v owner %d:%d, want %v 0:%d", tc.path, fi.Mode(), st.Uid, st.Gid, tc.mode, gid)
		}
	}
}
