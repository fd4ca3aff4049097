package jail

import (
	"os/exec"
	"path/filepath"
	"strconv"
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
