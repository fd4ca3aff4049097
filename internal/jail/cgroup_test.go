package jail

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeV2 builds a fake cgroup2 tree in a temporary directory and detects it.
func fakeV2(t *testing.T) (*Cgroups, string) {
	t.Helper()
	root := t.TempDir()
	write(t, filepath.Join(root, "cgroup.controllers"), "cpuset cpu io memory pids\n")
	write(t, filepath.Join(root, "cgroup.subtree_control"), "")
	c, err := detectCgroups(root, []byte(mountinfoLine(root, "cgroup2", "rw")+"\n"))
	if err != nil || c.Mode() != CgroupV2 {
		t.Fatalf("detectCgroups(fake v2) = %v, %v; want v2", c.Mode(), err)
	}
	c.create = true
	return c, root
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("read %s: %v", path, err)
	}
	return string(b)
}

// clearFiles removes the regular files of a fake cgroup tree, as the kernel
// would let rmdir ignore them.
func clearFiles(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			os.Remove(p)
		}
		return nil
	})
}

func TestCgroupsV2FakeTree(t *testing.T) {
	c, root := fakeV2(t)
	if _, err := c.NewExec("e1", cgroupLimits(goldenLimits)); err == nil || !strings.Contains(err.Error(), "Setup not called") {
		t.Errorf("NewExec before Setup: error %v, want Setup not called", err)
	}
	if _, err := c.Sweep(); err == nil {
		t.Error("Sweep before Setup: nil error, want one")
	}
	if err := c.Setup("system.slice/python-executor"); err != nil {
		t.Fatalf("Setup: %v", err)
	}
	parent := filepath.Join(root, "system.slice", "python-executor")
	for _, dir := range []string{root, filepath.Join(root, "system.slice"), parent} {
		if got, want := readFile(t, filepath.Join(dir, "cgroup.subtree_control")), "+memory +pids +cpu"; got != want {
			t.Errorf("after Setup, %s/cgroup.subtree_control = %q, want %q", dir, got, want)
		}
	}

	e, err := c.NewExec("e1", cgroupLimits(goldenLimits))
	if err != nil {
		t.Fatalf("NewExec: %v", err)
	}
	dir := filepath.Join(parent, "e1")
	for file, want := range map[string]string{
		"memory.max":       "536870912",
		"memory.swap.max":  "0",
		"memory.oom.group": "1",
		"pids.max":         "64",
	} {
		if got := readFile(t, filepath.Join(dir, file)); got != want {
			t.Errorf("after NewExec, e1/%s = %q, want %q", file, got, want)
		}
	}
	// A leaf: v2 refuses processes (Attach) in a cgroup that delegates
	// controllers.
	if _, err := os.Stat(filepath.Join(dir, "cgroup.subtree_control")); err == nil {
		t.Errorf("NewExec wrote e1/cgroup.subtree_control (%q); an execution cgroup must stay a leaf", readFile(t, filepath.Join(dir, "cgroup.subtree_control")))
	}
	if got, want := *e.Placement(), (Placement{Mode: CgroupV2, Dir: dir, MemoryMax: 513 << 20, PidsMax: 65}); got != want {
		t.Errorf("Placement() = %+v, want %+v", got, want)
	}
	p := goldenPolicy()
	p.Cgroup = e.Placement()
	if _, err := Render(p); err != nil {
		t.Errorf("Render(policy with v2 placement): %v", err)
	}

	// What nsjail and the kernel leave after an execution that hit both
	// limits.
	write(t, filepath.Join(dir, "memory.peak"), "67108864\n")
	write(t, filepath.Join(dir, "memory.events"), "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 1\n")
	write(t, filepath.Join(dir, "pids.events"), "max 3\n")
	write(t, filepath.Join(dir, "cpu.stat"), "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n")
	s, err := e.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if want := (Stats{PeakMemoryBytes: 64 << 20, OOMKilled: true, PidsLimitHit: true, CPUTime: 1500 * time.Millisecond}); s != want {
		t.Errorf("Stats() = %+v, want %+v", s, want)
	}
	// Before Linux 5.19 there is no memory.peak; no event, no hit.
	os.Remove(filepath.Join(dir, "memory.peak"))
	write(t, filepath.Join(dir, "memory.events"), "oom 0\noom_kill 0\n")
	write(t, filepath.Join(dir, "pids.events"), "max 0\n")
	write(t, filepath.Join(dir, "pids.peak"), "12\n")
	if s, err = e.Stats(); err != nil || s != (Stats{CPUTime: 1500 * time.Millisecond}) {
		t.Errorf("Stats() without memory.peak or events = %+v, %v; want only CPUTime", s, err)
	}

	// Kill with nothing left: returns at once, having used cgroup.kill.
	write(t, filepath.Join(dir, "cgroup.kill"), "")
	nsjailDir := filepath.Join(dir, "NSJAIL.4242")
	if err := os.Mkdir(nsjailDir, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(nsjailDir, "cgroup.procs"), "")
	if err := e.Kill(); err != nil {
		t.Errorf("Kill: %v", err)
	}
	if got := readFile(t, filepath.Join(dir, "cgroup.kill")); got != "1" {
		t.Errorf("after Kill, cgroup.kill = %q, want 1", got)
	}

	clearFiles(t, dir)
	if err := e.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("after Remove, %s: %v, want it gone", dir, err)
	}

	// Sweep removes what a crashed supervisor left.
	for _, d := range []string{"old-1/NSJAIL.7", "old-2", "NSJAIL.9"} {
		if err := os.MkdirAll(filepath.Join(parent, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	clearFiles(t, parent)
	n, err := c.Sweep()
	if err != nil || n != 3 {
		t.Errorf("Sweep() = %d, %v; want 3, nil", n, err)
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 0 {
		t.Errorf("after Sweep, %s holds %v, want nothing", parent, ents)
	}
	clearFiles(t, parent)
	if err := c.Teardown(); err != nil {
		t.Errorf("Teardown: %v", err)
	}
	if _, err := os.Stat(parent); !os.IsNotExist(err) {
		t.Errorf("after Teardown, %s: %v, want it gone", parent, err)
	}
}

func TestNewExecRejects(t *testing.T) {
	c, _ := fakeV2(t)
	if err := c.Setup("px"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"", ".", "..", "a/b", "NSJAIL.1", "idle-1", "a b", "é"} {
		if _, err := c.NewExec(id, cgroupLimits(goldenLimits)); err == nil {
			t.Errorf("NewExec(%q) = nil error, want one", id)
		}
	}
	if _, err := c.NewExec("ok", cgroupLimits(Limits{MemoryBytes: 0, Pids: 1})); err == nil {
		t.Error("NewExec(memory 0) = nil error, want one")
	}
	// An id in use is refused, and its cgroup left alone.
	if _, err := c.NewExec("taken", cgroupLimits(goldenLimits)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.NewExec("taken", cgroupLimits(goldenLimits)); err == nil {
		t.Error("NewExec(taken) twice = nil error, want one")
	}
	if _, err := os.Stat(filepath.Join(c.root, "px", "taken", "memory.max")); err != nil {
		t.Errorf("after a second NewExec(taken), the first one's cgroup: %v, want it intact", err)
	}
	for _, parent := range []string{"", "/abs", "../up", "a/../b", "."} {
		if err := c.Setup(parent); err == nil {
			t.Errorf("Setup(%q) = nil error, want one", parent)
		}
	}
	none := &Cgroups{mode: CgroupNone, reason: "test"}
	if err := none.Setup("px"); err == nil || !strings.Contains(err.Error(), "test") {
		t.Errorf("Setup with mode none = %v, want an error with the reason", err)
	}
}

// testCgroupPrefix names the parent cgroups of the real tests, so that the
// host can be checked for leftovers.
const testCgroupPrefix = "python-executor-jailtest-"

// TestCgroupsReal creates real cgroups (v1 on the development VM, v2
// where the host has it), runs real jails in them up to their limits and
// checks that nothing is left.
func TestCgroupsReal(t *testing.T) {
	requireRoot(t)
	host, err := DetectCgroups("/sys/fs/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if host.Mode() == CgroupNone {
		missing(t, "no usable cgroups on this host: %s", host.Reason())
	}
	if !inPrivateMountNS(t) {
		checkNoTestCgroups(t, host)
		return
	}
	e := newJailEnv(t)
	c, err := DetectCgroups("/sys/fs/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	parent := fmt.Sprintf("%s%d", testCgroupPrefix, os.Getpid())
	if err := c.Setup(parent); err != nil {
		t.Fatalf("Setup(%s): %v", parent, err)
	}
	t.Cleanup(func() {
		if err := c.Teardown(); err != nil {
			t.Errorf("Teardown: %v", err)
		}
		for _, d := range c.dirs("") {
			if _, err := os.Stat(d); !os.IsNotExist(err) {
				t.Errorf("after Teardown, %s: %v, want it gone", d, err)
			}
		}
	})
	if n, err := c.Sweep(); err != nil || n != 0 {
		t.Errorf("Sweep() of a new parent = %d, %v; want 0, nil", n, err)
	}

	t.Run("memory limit", func(t *testing.T) {
		x, err := c.NewExec("oom", cgroupLimits(Limits{MemoryBytes: 64 << 20, Pids: 32}))
		if err != nil {
			t.Fatalf("NewExec: %v", err)
		}
		defer removeExec(t, x)
		p := e.policy("x = bytearray(256 << 20); print('survived')")
		p.Cgroup = x.Placement()
		r := e.run(t, p)
		if r.exit == 0 || strings.Contains(r.stdout, "survived") {
			t.Errorf("allocating 256 MiB under 64 MiB: exit %d, stdout %q; want killed", r.exit, r.stdout)
		}
		s, err := x.Stats()
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		if !s.OOMKilled || s.PidsLimitHit || s.PeakMemoryBytes < 60<<20 || s.PeakMemoryBytes > 70<<20 {
			t.Errorf("Stats() = %+v, want OOMKilled, no pids limit hit, peak about 64 MiB", s)
		}
	})

	t.Run("within limits", func(t *testing.T) {
		x, err := c.NewExec("fine", cgroupLimits(Limits{MemoryBytes: 256 << 20, Pids: 32}))
		if err != nil {
			t.Fatalf("NewExec: %v", err)
		}
		defer removeExec(t, x)
		p := e.policy("import numpy; x = bytearray(32 << 20); print('ok')")
		p.Cgroup = x.Placement()
		e.mustRun(t, p)
		s, err := x.Stats()
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		if s.OOMKilled || s.PidsLimitHit || (c.Mode() == CgroupV1 && s.PeakMemoryBytes < 32<<20) {
			t.Errorf("Stats() = %+v, want no limit hit and a peak over 32 MiB", s)
		}
		if c.Mode() == CgroupV2 && s.CPUTime <= 0 {
			t.Errorf("Stats().CPUTime = %v, want positive in v2", s.CPUTime)
		}
	})

	t.Run("pids limit", func(t *testing.T) {
		x, err := c.NewExec("pids", cgroupLimits(Limits{MemoryBytes: 256 << 20, Pids: 8}))
		if err != nil {
			t.Fatalf("NewExec: %v", err)
		}
		defer removeExec(t, x)
		p := e.policy(`
import os, time
n = 0
try:
    for _ in range(50):
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        n += 1
except OSError as e:
    print("forked", n, "then", e.strerror)
`)
		p.Cgroup = x.Placement()
		r := e.mustRun(t, p)
		if !strings.Contains(r.stdout, "forked 7 then") {
			t.Errorf("fork loop under pids 8 printed %q, want 7 forks then an error", r.stdout)
		}
		s, err := x.Stats()
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		if !s.PidsLimitHit || s.OOMKilled {
			t.Errorf("Stats() = %+v, want PidsLimitHit only", s)
		}
	})

	// The warm engine's way in: a process started elsewhere is moved into
	// the execution's cgroup (on v2 that needs the cgroup to be a leaf that
	// delegates no controller), and its children are born there.
	t.Run("attach", func(t *testing.T) {
		x, err := c.NewExec("attach", cgroupLimits(Limits{MemoryBytes: 64 << 20, Pids: 8}))
		if err != nil {
			t.Fatalf("NewExec: %v", err)
		}
		defer removeExec(t, x)
		// The shell forks only after it has read a line: attach first.
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		defer w.Close()
		cmd := exec.Command("/bin/sh", "-c", "read x; sleep 60 & wait")
		cmd.Stdin = r
		startAttached(t, x, cmd)
		w.Write([]byte("go\n"))
		deadline := time.Now().Add(10 * time.Second)
		for {
			pids, _ := treeProcs(x.dirs[0])
			if len(pids) == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after Attach, %s holds %v; want the shell and its child", x.dirs[0], pids)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := x.Kill(); err != nil {
			t.Fatalf("Kill: %v", err)
		}
		if err := cmd.Wait(); err == nil {
			t.Error("the attached shell exited 0 after Kill, want killed")
		}
	})

	// RemoveIfEmpty removes only a cgroup with neither tasks nor child
	// cgroups, and leaves a busy one (and its tasks) as it is.
	t.Run("remove if empty", func(t *testing.T) {
		x, err := c.NewExec("ifempty", cgroupLimits(Limits{MemoryBytes: 64 << 20, Pids: 8}))
		if err != nil {
			t.Fatalf("NewExec: %v", err)
		}
		defer removeExec(t, x)
		cmd := exec.Command("sleep", "60")
		startAttached(t, x, cmd)
		if x.RemoveIfEmpty() {
			t.Fatal("RemoveIfEmpty removed a cgroup with a task in it")
		}
		for _, d := range x.dirs {
			if _, err := os.Stat(d); err != nil {
				t.Fatalf("RemoveIfEmpty with a task in the cgroup: %s: %v", d, err)
			}
		}
		if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
			t.Fatalf("RemoveIfEmpty touched the cgroup's task: %v", err)
		}
		cmd.Process.Kill()
		cmd.Wait()
		nested := filepath.Join(x.dirs[0], nsjailPrefix+".1")
		if err := os.Mkdir(nested, 0o755); err != nil {
			t.Fatal(err)
		}
		if x.RemoveIfEmpty() {
			t.Fatal("RemoveIfEmpty removed a cgroup with a child cgroup")
		}
		if err := os.Remove(nested); err != nil {
			t.Fatal(err)
		}
		if !x.RemoveIfEmpty() {
			t.Fatal("RemoveIfEmpty left an empty cgroup")
		}
		for _, d := range x.dirs {
			if _, err := os.Stat(d); !os.IsNotExist(err) {
				t.Errorf("after RemoveIfEmpty, %s: %v, want it gone", d, err)
			}
		}
	})

	t.Run("kill", func(t *testing.T) {
		x, err := c.NewExec("kill", cgroupLimits(Limits{MemoryBytes: 256 << 20, Pids: 32}))
		if err != nil {
			t.Fatalf("NewExec: %v", err)
		}
		defer removeExec(t, x)
		p := e.policy("import os, time\nfor _ in range(4):\n    os.fork()\ntime.sleep(60)")
		p.Cgroup = x.Placement()
		cfg, err := Render(p)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "cfg")
		write(t, path, string(cfg))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		argv := Argv(e.nsjail, path)
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Wait()
		deadline := time.Now().Add(10 * time.Second)
		for {
			pids, _ := treeProcs(x.dirs[0])
			if len(pids) == 16 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("jail has %d processes after 10 s, want 16", len(pids))
			}
			time.Sleep(10 * time.Millisecond)
		}
		start := time.Now()
		if err := x.Kill(); err != nil {
			t.Fatalf("Kill: %v", err)
		}
		t.Logf("Kill took %v", time.Since(start))
		for _, d := range x.dirs {
			if pids, _ := treeProcs(d); len(pids) != 0 {
				t.Errorf("after Kill, %s holds pids %v", d, pids)
			}
		}
		if err := cmd.Wait(); err == nil {
			t.Error("nsjail exited 0 after Kill, want an error")
		}
	})

	// On v1 an emptied cgroup is kept (Recycle), and the next NewExec with
	// the same limits takes it under its own name, its limits as they were
	// and its peak reset; a cgroup with anything of its execution left in
	// it is not kept. On v2 none is.
	t.Run("background weight", func(t *testing.T) {
		defer c.removeIdle()
		lim := cgroupLimits(Limits{MemoryBytes: 64 << 20, Pids: 16})
		x, err := c.NewExec("weight", lim)
		if err != nil {
			t.Fatalf("NewExec: %v", err)
		}
		var file, own, low string
		switch c.Mode() {
		case CgroupV1:
			if c.cpu == "" {
				missing(t, "no v1 cpu hierarchy mounted: no CPU weight to lower")
			}
			file, own, low = filepath.Join(x.v1Dir(c.cpu), "cpu.shares"), strconv.Itoa(lim.CPUShares), "2"
		case CgroupV2:
			file, own, low = filepath.Join(x.dirs[0], "cpu.weight"), strconv.Itoa(lim.CPUWeight), "1"
			if !exists(file) {
				missing(t, "the cpu controller is not enabled under %s: no CPU weight to lower", c.parent)
			}
		}
		weight := func() string { return strings.TrimSpace(readFile(t, file)) }
		if got := weight(); got != own {
			t.Fatalf("new cgroup's weight = %s, want its limits' %s", got, own)
		}
		if err := x.SetBackground(true); err != nil {
			t.Fatalf("SetBackground(true): %v", err)
		}
		if got := weight(); got != low {
			t.Errorf("weight in the background = %s, want the minimum %s", got, low)
		}
		if err := x.SetBackground(false); err != nil {
			t.Fatalf("SetBackground(false): %v", err)
		}
		if got := weight(); got != own {
			t.Errorf("weight restored = %s, want %s", got, own)
		}
		// A cgroup kept while lowered (an execution's teardown) is handed
		// to the next execution with its own weight.
		if err := x.SetBackground(true); err != nil {
			t.Fatalf("SetBackground(true): %v", err)
		}
		if !x.Recycle() {
			if c.Mode() == CgroupV1 {
				t.Fatalf("Recycle() of an empty cgroup = false on v1")
			}
			removeExec(t, x)
			return
		}
		y, err := c.NewExec("weight-again", lim)
		if err != nil {
			t.Fatalf("NewExec after Recycle: %v", err)
		}
		defer removeExec(t, y)
		file = filepath.Join(y.v1Dir(c.cpu), "cpu.shares")
		if got := weight(); got != own || y.background.Load() {
			t.Errorf("kept cgroup's weight when taken again = %s (background %v), want %s", got, y.background.Load(), own)
		}
	})

	t.Run("reuse", func(t *testing.T) {
		defer c.removeIdle()
		python := venvPython(t)
		// Its files are read once outside first: their page cache is then
		// charged elsewhere, not to the cgroups below.
		if out, err := exec.Command(python, "-c", "pass").CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", python, err, out)
		}
		// runIn runs code in a python attached to x before it runs any,
		// and waits for it to end.
		runIn := func(x *ExecCgroup, code string) {
			t.Helper()
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			defer w.Close()
			cmd := exec.Command(python, "-c", "import sys; sys.stdin.readline()\n"+code)
			cmd.Stdin = r
			startAttached(t, x, cmd)
			w.Write([]byte("go\n"))
			cmd.Wait()
		}
		lim := cgroupLimits(Limits{MemoryBytes: 96 << 20, Pids: 16})
		x, err := c.NewExec("reuse-a", lim)
		if err != nil {
			t.Fatalf("NewExec: %v", err)
		}
		runIn(x, "x = bytearray(48 << 20)")
		if s, err := x.Stats(); err != nil || s.PeakMemoryBytes < 48<<20 || s.OOMKilled {
			t.Fatalf("Stats() after 48 MiB = %+v, %v; want a peak over 48 MiB", s, err)
		}
		if c.Mode() != CgroupV1 {
			if x.Recycle() {
				t.Errorf("Recycle() on %v = true, want false: only v1 reuses", c.Mode())
			}
			removeExec(t, x)
			return
		}
		old := slices.Clone(x.dirs)
		if !x.Recycle() {
			t.Fatal("Recycle() of an emptied cgroup = false, want it kept")
		}
		// Kept under a name of its own: none named after an execution
		// outlives it.
		for i, d := range x.dirs {
			if !strings.HasPrefix(filepath.Base(d), idlePrefix) {
				t.Errorf("kept cgroup %s, want it named %s<n>", d, idlePrefix)
			}
			if _, err := os.Stat(old[i]); !os.IsNotExist(err) {
				t.Errorf("after Recycle, %s: %v, want it renamed", old[i], err)
			}
		}
		old = slices.Clone(x.dirs)
		y, err := c.NewExec("reuse-b", lim)
		if err != nil {
			t.Fatalf("NewExec: %v", err)
		}
		defer removeExec(t, y)
		if y != x {
			t.Fatalf("NewExec with the limits of a kept cgroup made a new one (%v)", y.dirs)
		}
		for i, d := range y.dirs {
			if filepath.Base(d) != "reuse-b" || y.ID() != "reuse-b" {
				t.Errorf("reused cgroup %s (id %s), want it named reuse-b", d, y.ID())
			}
			if _, err := os.Stat(old[i]); !os.IsNotExist(err) {
				t.Errorf("after the rename, %s: %v, want it gone", old[i], err)
			}
		}
		md := y.v1Dir(c.memory)
		if got := strings.TrimSpace(readFile(t, filepath.Join(md, "memory.limit_in_bytes"))); got != strconv.Itoa(96<<20) {
			t.Errorf("reused memory.limit_in_bytes = %s, want %d", got, 96<<20)
		}
		if got := strings.TrimSpace(readFile(t, filepath.Join(y.v1Dir(c.pids), "pids.max"))); got != "16" {
			t.Errorf("reused pids.max = %s, want 16", got)
		}
		if s, err := y.Stats(); err != nil || s.PeakMemoryBytes > maxReusedUsage || s.OOMKilled || s.PidsLimitHit {
			t.Errorf("Stats() of the reused cgroup = %+v, %v; want the peak reset, no limit hit", s, err)
		}
		runIn(y, "x = bytearray(8 << 20)")
		if s, err := y.Stats(); err != nil || s.PeakMemoryBytes < 8<<20 || s.PeakMemoryBytes > 24<<20 {
			t.Errorf("Stats() after 8 MiB in the reused cgroup = %+v, %v; want a peak of 8 to 24 MiB", s, err)
		}

		// A process left in it.
		sleeper := exec.Command("sleep", "60")
		startAttached(t, y, sleeper)
		if y.Recycle() {
			t.Fatal("Recycle() kept a cgroup with a process in it")
		}
		sleeper.Process.Kill()
		sleeper.Wait()
		// A child cgroup in any hierarchy.
		for _, d := range y.dirs {
			nested := filepath.Join(d, nsjailPrefix+".1")
			if err := os.Mkdir(nested, 0o755); err != nil {
				t.Fatal(err)
			}
			kept := y.Recycle()
			if err := os.Remove(nested); err != nil {
				t.Fatal(err)
			}
			if kept {
				t.Fatalf("Recycle() kept a cgroup with %s in it", nested)
			}
		}
		// Page cache its execution wrote, still charged to it.
		cache := filepath.Join(reachableTempDir(t), "cache")
		runIn(y, fmt.Sprintf("open(%q, 'wb').write(b'x' * (8 << 20))", cache))
		if y.Recycle() {
			t.Error("Recycle() kept a cgroup with 8 MiB of page cache charged to it")
		}
		os.Remove(cache)

		// An OOM kill.
		z, err := c.NewExec("reuse-oom", cgroupLimits(Limits{MemoryBytes: 32 << 20, Pids: 16}))
		if err != nil {
			t.Fatalf("NewExec: %v", err)
		}
		defer removeExec(t, z)
		runIn(z, "x = bytearray(64 << 20)")
		if s, err := z.Stats(); err != nil || !s.OOMKilled {
			t.Fatalf("Stats() after 64 MiB under 32 = %+v, %v; want OOMKilled", s, err)
		}
		if z.Recycle() {
			t.Error("Recycle() kept a cgroup whose execution was OOM-killed")
		}

		// Other limits: a cgroup of its own; and the number kept is
		// bounded, the oldest removed.
		capLim := cgroupLimits(Limits{MemoryBytes: 80 << 20, Pids: 12})
		var all []*ExecCgroup
		for i := range maxIdleCgroups + 1 {
			w, err := c.NewExec(fmt.Sprintf("reuse-cap-%d", i), capLim)
			if err != nil {
				t.Fatalf("NewExec: %v", err)
			}
			if w == y {
				t.Fatal("NewExec with other limits took a kept cgroup")
			}
			all = append(all, w)
		}
		for _, w := range all {
			if !w.Recycle() {
				t.Fatalf("Recycle() of the unused %s = false", w.ID())
			}
		}
		for _, d := range all[0].dirs {
			if _, err := os.Stat(d); !os.IsNotExist(err) {
				t.Errorf("with %d kept, the oldest %s: %v, want it removed", maxIdleCgroups+1, d, err)
			}
		}
		for _, d := range all[1].dirs {
			if _, err := os.Stat(d); err != nil {
				t.Errorf("kept cgroup %s: %v", d, err)
			}
		}
		// The readiness probe's: always a new one.
		f, err := c.NewFreshExec("reuse-fresh", capLim)
		if err != nil {
			t.Fatalf("NewFreshExec: %v", err)
		}
		if slices.Contains(all, f) {
			t.Error("NewFreshExec took a kept cgroup")
		}
		removeExec(t, f)
		c.removeIdle()
		for _, w := range all {
			for _, d := range w.dirs {
				if _, err := os.Stat(d); !os.IsNotExist(err) {
					t.Errorf("after removeIdle, %s: %v, want it gone", d, err)
				}
			}
		}
	})

	t.Run("sweep", func(t *testing.T) {
		x, err := c.NewExec("leftover", cgroupLimits(Limits{MemoryBytes: 64 << 20, Pids: 8}))
		if err != nil {
			t.Fatalf("NewExec: %v", err)
		}
		for _, d := range x.dirs {
			if err := os.Mkdir(filepath.Join(d, "NSJAIL.1"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := c.Sweep(); err != nil || n != 1 {
			t.Errorf("Sweep() = %d, %v; want 1, nil", n, err)
		}
		for _, d := range x.dirs {
			if _, err := os.Stat(d); !os.IsNotExist(err) {
				t.Errorf("after Sweep, %s: %v, want it gone", d, err)
			}
		}
		if err := x.Remove(); err != nil {
			t.Errorf("Remove after Sweep: %v, want nil (already gone)", err)
		}
	})
}

// startAttached starts cmd (killed should the test end first) and moves it
// into x, as the warm engine does with a zygote's child.
func startAttached(t *testing.T, x *ExecCgroup, cmd *exec.Cmd) {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if err := x.Attach(cmd.Process.Pid); err != nil {
		t.Fatalf("Attach: %v", err)
	}
}

func removeExec(t *testing.T, x *ExecCgroup) {
	t.Helper()
	if err := x.Kill(); err != nil {
		t.Errorf("Kill: %v", err)
	}
	if err := x.Remove(); err != nil {
		t.Errorf("Remove: %v", err)
	}
	for _, d := range x.dirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("after Remove, %s: %v, want it gone", d, err)
		}
	}
}

// checkNoTestCgroups fails when a test left a parent cgroup behind.
func checkNoTestCgroups(t *testing.T, c *Cgroups) {
	t.Helper()
	bases := []string{c.root}
	if c.Mode() == CgroupV1 {
		bases = c.v1Hierarchies()
	}
	for _, b := range bases {
		left, _ := filepath.Glob(filepath.Join(b, testCgroupPrefix+"*"))
		for _, l := range left {
			t.Errorf("cgroup %s left behind", l)
		}
	}
}
