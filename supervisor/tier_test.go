package supervisor

import "testing"

func TestConfigIsolation(t *testing.T) {
	base := Config{SocketPath: "/run/s.sock", Venv: "/v", RunnerPath: "/r/runner.py", SandboxUID: 5, SandboxGID: 5, GatewayUID: 6}
	c := base
	if err := c.Validate(); err != nil || c.Isolation != IsolationFull || c.SandboxUIDBase != DefaultSandboxUIDBase || c.WorkDir != "/tmp/python-executor-work" {
		t.Errorf("defaults: %v %+v", err, c)
	}
	for name, mutate := range map[string]func(*Config){
		"unknown tier":            func(c *Config) { c.Isolation = "partial" },
		"range holds the sandbox": func(c *Config) { c.SandboxUIDBase = 3 },
		"range holds nobody":      func(c *Config) { c.SandboxUIDBase = 65500 },
		"range past 32 bits":      func(c *Config) { c.SandboxUIDBase = 1<<32 - 100 },
		"relative work dir":       func(c *Config) { c.WorkDir = "work" },
		"/tmp as work dir":        func(c *Config) { c.WorkDir = "/tmp" },
	} {
		c := base
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for _, tier := range []string{IsolationAuto, IsolationContainer, IsolationFull} {
		c := base
		c.Isolation = tier
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", tier, err)
		}
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
	if err := c.Validate(); err != nil || c.Engine != EngineWarm || c.Zygotes <= 0 || len(c.Preload) != 3 || c.ZygotePath != "/r/zygote.py" {
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
	// Slim zygotes: 0 = none, negative = as many as Zygotes, none at all
	// when the preload is empty (the zygotes are slim already).
	for _, tc := range []struct {
		zygotes, slim int
		preload       []string
		want          int
	}{
		{3, 0, nil, 0}, {3, -1, nil, 3}, {3, 2, nil, 2}, {3, -1, []string{}, 0}, {3, 2, []string{}, 0},
	} {
		c = base
		c.Zygotes, c.SlimZygotes, c.Preload = tc.zygotes, tc.slim, tc.preload
		if err := c.Validate(); err != nil || c.SlimZygotes != tc.want {
			t.Errorf("zygotes %d, slim zygotes %d, preload %q: %v, %d slim zygotes, want %d", tc.zygotes, tc.slim, tc.preload, err, c.SlimZygotes, tc.want)
		}
	}
}
