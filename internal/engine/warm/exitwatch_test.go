package warm

import (
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// startPidfd starts a process that exits when its stdin closes, and returns
// its pidfd and the write end of its stdin.
func startPidfd(t *testing.T) (pidfd int, stop func()) {
	t.Helper()
	cmd := exec.Command("cat")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.PidfdOpen(cmd.Process.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		cmd.Wait()
		unix.Close(fd)
	})
	return fd, func() { in.Close() }
}

// gone comes once the process has exited, not before; a watch stopped
// first never calls it.
func TestWatchExit(t *testing.T) {
	fd, end := startPidfd(t)
	called := make(chan struct{}, 2)
	stop := watchExit(fd, func() { called <- struct{}{} })
	select {
	case <-called:
		t.Fatal("gone before the process exited")
	case <-time.After(100 * time.Millisecond):
	}
	end()
	select {
	case <-called:
	case <-time.After(5 * time.Second):
		t.Fatal("no gone 5 s after the process exited")
	}
	stop()
	if len(called) != 0 {
		t.Fatal("gone called twice")
	}

	fd, end = startPidfd(t)
	stop = watchExit(fd, func() { called <- struct{}{} })
	stop()
	end()
	time.Sleep(100 * time.Millisecond)
	if len(called) != 0 {
		t.Fatal("gone called after stop")
	}
	// The watch closed its own duplicate, not the caller's pidfd.
	if err := unix.PidfdSendSignal(fd, 0, nil, 0); err != nil && err != unix.ESRCH {
		t.Fatalf("the caller's pidfd after stop: %v", err)
	}
}
