package proc

import (
	"os/exec"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// waitPidfd times out on a live process and returns once it has exited,
// reaped or not.
func TestWaitPidfd(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	pidfd := -1
	cmd.SysProcAttr = &syscall.SysProcAttr{PidFD: &pidfd}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	begin := time.Now()
	if WaitPidfd(pidfd, 50*time.Millisecond) {
		t.Fatal("waitPidfd on a live process = true, want false")
	}
	if d := time.Since(begin); d < 50*time.Millisecond {
		t.Errorf("waitPidfd returned after %v, before its timeout", d)
	}
	if WaitPidfd(pidfd, 0) {
		t.Error("WaitPidfd(0) on a live process = true, want false")
	}
	unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
	// Not reaped yet: the pidfd turns readable on exit all the same.
	if !WaitPidfd(pidfd, 5*time.Second) {
		t.Fatal("waitPidfd on a killed process = false, want true")
	}
	cmd.Wait()
	if !WaitPidfd(pidfd, 0) {
		t.Error("WaitPidfd(0) on a reaped process = false, want true")
	}
}
