package proc

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParentPid(t *testing.T) {
	got, err := ParentPid(os.Getpid())
	if err != nil || got != os.Getppid() {
		t.Errorf("ParentPid(self) = %d, %v, want %d", got, err, os.Getppid())
	}
	if _, err := ParentPid(0); err == nil {
		t.Errorf("ParentPid(0) succeeded")
	}
}

// ProcessCPU counts this process's own CPU time and that of the children
// it has reaped. The amounts are compared with the kernel's own accounts
// (getrusage, the child's rusage), not with wall time: on a loaded machine
// a busy loop gets what the scheduler gives it.
func TestProcessCPU(t *testing.T) {
	cpuOfSelf := func() time.Duration {
		var ru unix.Rusage
		if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	before, err := ProcessCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn 50 ms of this process's CPU.
	for start := cpuOfSelf(); cpuOfSelf()-start < 50*time.Millisecond; {
	}
	mid, err := ProcessCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if d := mid - before; d < 45*time.Millisecond {
		t.Errorf("ProcessCPU grew by %s over 50 ms of CPU", d)
	}
	// A child that does a fixed amount of work, reaped: its CPU time moves
	// to this process's children's times (in 10 ms ticks).
	cmd := exec.Command("sh", "-c", `i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done`)
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	child := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if child < 50*time.Millisecond {
		t.Fatalf("the child used only %s of CPU: nothing to measure", child)
	}
	after, err := ProcessCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// The child's share, less what the clock of this process gained
	// meanwhile, within two ticks.
	if d := after - mid; d < child-20*time.Millisecond {
		t.Errorf("ProcessCPU grew by %s over a reaped child that used %s", d, child)
	}
	if _, err := ProcessCPU(0); err == nil {
		t.Error("ProcessCPU(0) succeeded")
	}
}
