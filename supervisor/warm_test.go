package supervisor

import (
	"os"
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

func TestValidModuleName(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"numpy", true}, {"pandas", true}, {"scipy.stats", true}, {"_x1", true},
		{"", false}, {"1x", false}, {"a..b", false}, {"a.", false}, {"os; import x", false}, {"a-b", false}, {"é", false},
	} {
		if got := validModuleName(tc.name); got != tc.want {
			t.Errorf("validModuleName(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestParentPid(t *testing.T) {
	got, err := parentPid(os.Getpid())
	if err != nil || got != os.Getppid() {
		t.Errorf("parentPid(self) = %d, %v, want %d", got, err, os.Getppid())
	}
	if _, err := parentPid(0); err == nil {
		t.Errorf("parentPid(0) succeeded")
	}
}

func TestConfigEngine(t *testing.T) {
	base := Config{SocketPath: "/run/s.sock", Venv: "/v", RunnerPath: "/r/runner.py", SandboxUID: 5, SandboxGID: 5, GatewayUID: 6}
	c := base
	if err := c.Validate(); err != nil || c.Engine != EngineWarm || c.Zygotes <= 0 || len(c.Preload) != 2 || c.ZygotePath != "/r/zygote.py" {
		t.Errorf("defaults: %v %+v", err, c)
	}
	c = base
	c.Engine = "lukewarm"
	if err := c.Validate(); err == nil {
		t.Errorf("engine lukewarm accepted")
	}
	c = base
	c.Preload = []string{"os; import x"}
	if err := c.Validate(); err == nil {
		t.Errorf("bad preload accepted")
	}
	c = base
	c.Preload = []string{}
	if err := c.Validate(); err != nil || len(c.Preload) != 0 {
		t.Errorf("empty preload: %v %v", err, c.Preload)
	}
}
