package cold

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// killIfUID signals a process only while it runs as the uid the caller
// listed it for: a reused pid belongs to someone else.
func TestKillIfUIDChecksTheUID(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer cmd.Process.Kill()
	own := syscall.Getuid()

	killIfUID(cmd.Process.Pid, own+61000)
	select {
	case err := <-done:
		t.Fatalf("a process of uid %d was killed as one of uid %d: %v", own, own+61000, err)
	case <-time.After(200 * time.Millisecond):
	}
	killIfUID(cmd.Process.Pid, own)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the process of the right uid was not killed")
	}
}
