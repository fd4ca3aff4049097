package jail

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// killMembers signals only processes that cgroup.procs still lists once
// their pidfds are open: a pid read earlier whose process has left (or was
// reaped and its pid reused by an unrelated process) is left alone.
func TestKillMembersOnlyMembers(t *testing.T) {
	start := func() *exec.Cmd {
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	member, outsider := start(), start()
	// A pid that was listed but whose process is gone by now.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write(t, filepath.Join(dir, "cgroup.procs"), strconv.Itoa(member.Process.Pid)+"\n")

	// outsider was read from cgroup.procs earlier but is no member now: the
	// situation of a pid recycled between the listing and the kill.
	pids := []int{member.Process.Pid, outsider.Process.Pid, gone.Process.Pid}
	if err := killMembers(dir, pids); err != nil {
		t.Fatalf("killMembers: %v", err)
	}
	err := member.Wait()
	if ws, ok := member.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("member: %v, want killed by SIGKILL", err)
	}
	time.Sleep(50 * time.Millisecond)
	if err := outsider.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("a process no longer listed in cgroup.procs was killed: %v", err)
	}

	// A cgroup removed meanwhile is empty, not an error.
	if err := killMembers(filepath.Join(dir, "gone"), []int{outsider.Process.Pid}); err != nil {
		t.Errorf("killMembers on a removed cgroup: %v", err)
	}
	if err := outsider.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("killMembers on a removed cgroup killed a process: %v", err)
	}
}

// In v1 nsjail must put the jail in the execution's cpu cgroup, which only
// happens along with a CFS quota: one of every CPU, which never throttles.
func TestPlacementV1CPU(t *testing.T) {
	c := &Cgroups{mode: CgroupV1, memory: "/cg/memory", pids: "/cg/pids", cpu: "/cg/cpu", parent: "pe"}
	e := &ExecCgroup{cg: c, id: "x1", limits: cgroupLimits(Limits{MemoryBytes: 64 << 20, Pids: 8})}
	p := e.Placement()
	if err := p.validate(); err != nil {
		t.Fatal(err)
	}
	w := &textWriter{}
	p.render(w)
	got := w.b.String()
	for _, want := range []string{
		"cgroup_cpu_ms_per_sec: " + strconv.Itoa(1000*runtime.NumCPU()) + "\n",
		`cgroup_cpu_mount: "/cg/cpu"` + "\n",
		`cgroup_cpu_parent: "pe/x1"` + "\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("rendered placement lacks %q:\n%s", want, got)
		}
	}
	c.cpu = ""
	w = &textWriter{}
	e.Placement().render(w)
	if strings.Contains(w.b.String(), "cgroup_cpu") {
		t.Errorf("without a cpu hierarchy the placement names one:\n%s", w.b.String())
	}
	if hs := c.v1Hierarchies(); len(hs) != 2 {
		t.Errorf("v1Hierarchies() without cpu = %q, want memory and pids", hs)
	}
}
