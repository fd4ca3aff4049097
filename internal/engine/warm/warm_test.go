package warm

import (
	"testing"
	"time"

	"github.com/python-executor/python-executor/jail"
)

func TestNewOrderMirrorsColdRounding(t *testing.T) {
	l := jail.Limits{
		Wall: time.Second, MemoryBytes: 100<<20 + 1, Pids: 64, CPUTime: 1500 * time.Millisecond,
		FileSizeBytes: 1, OpenFiles: 256, TmpBytes: 64 << 20, TmpInodes: 4096,
	}
	o := newOrder(l, true)
	if o.CPUSeconds != 2 || o.FsizeBytes != 1<<20 || o.NoFile != 256 || o.TmpBytes != 64<<20 ||
		o.TmpInodes != 4096 || o.ShmInodes != jail.ShmInodes || o.StackBytes != 8<<20 {
		t.Errorf("newOrder(%+v, true) = %+v", l, o)
	}
	if o.NProc != 0 || o.ASBytes != 0 {
		t.Errorf("with a cgroup: nproc %d, as %d, want none", o.NProc, o.ASBytes)
	}
	o = newOrder(l, false)
	if o.NProc != 64 || o.ASBytes != 101<<20 {
		t.Errorf("without a cgroup: nproc %d, as %d, want 64 and %d", o.NProc, o.ASBytes, 101<<20)
	}
}
