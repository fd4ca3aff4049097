package proc

import (
	"os"
	"testing"
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
