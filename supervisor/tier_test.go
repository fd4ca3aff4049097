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

func TestUIDPool(t *testing.T) {
	p := newUIDPool(61000, 2)
	a, err1 := p.get()
	b, err2 := p.get()
	if err1 != nil || err2 != nil || a == b || !p.contains(a) || !p.contains(b) || p.contains(61002) || p.contains(60999) {
		t.Fatalf("got %d %d (%v %v)", a, b, err1, err2)
	}
	if _, err := p.get(); err == nil {
		t.Fatal("a third uid from a pool of two")
	}
	p.put(a)
	if c, err := p.get(); err != nil || c != a {
		t.Fatalf("after put: %d %v", c, err)
	}
	if err := checkUIDRangeUnused(61000, 2, 3); err == nil {
		t.Fatal("a range smaller than needed accepted")
	}
	if err := checkUIDRangeUnused(0, 1, 1); err == nil {
		t.Fatal("a range holding root accepted")
	}
}
