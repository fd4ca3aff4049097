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
