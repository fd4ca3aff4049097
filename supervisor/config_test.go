package supervisor

import (
	"strings"
	"testing"
)

// -result-kb and the clients' largest frame are checked against each other
// at start-up, with a message that says what to do.
func TestResultLimitMustFitTheClientsFrame(t *testing.T) {
	base := Config{SocketPath: "/run/s.sock", Venv: "/v", RunnerPath: "/r/runner.py", SandboxUID: 5, SandboxGID: 5, GatewayUID: 6}
	c := base
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	c = base
	c.Defaults = DefaultLimits()
	c.Defaults.ResultBytes = 20 << 20 // over the 16 MiB frames of the Go client
	c.Max = c.Defaults
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "-result-kb") || !strings.Contains(err.Error(), "lower -result-kb to 16383 or less") {
		t.Fatalf("20 MiB results with 16 MiB frames: %v", err)
	}
	c.ClientMaxFrame = 32 << 20
	if err := c.Validate(); err != nil {
		t.Fatalf("20 MiB results with 32 MiB frames: %v", err)
	}
	c = base
	c.ClientMaxFrame = 64 << 10
	if err := c.Validate(); err == nil {
		t.Fatal("8 MiB results with 64 KiB frames accepted")
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
