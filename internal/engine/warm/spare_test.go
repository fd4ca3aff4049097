package warm

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// exiting tells a live process from one that is gone or a zombie, which is
// how a spare whose zygote is dying is recognised before it is handed out.
func TestExiting(t *testing.T) {
	if exiting(os.Getpid()) {
		t.Error("this live process reads as exiting")
	}
	cmd := exec.Command("/bin/true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	// Not reaped yet: a zombie once it has run.
	deadline := time.Now().Add(5 * time.Second)
	for !exiting(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the exited, unreaped child %d does not read as exiting", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Wait()
	if !exiting(pid) {
		t.Errorf("the reaped child %d does not read as exiting", pid)
	}
}
