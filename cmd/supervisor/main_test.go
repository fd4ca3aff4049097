package main

import (
	"bytes"
	"flag"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/python-executor/python-executor/gateway"
	"github.com/python-executor/python-executor/limits"
)

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// A variable that does not parse stops the supervisor at once, before it
// does anything as root, with exit status 2 and a message naming the
// variable and its value. (The supervisor used to ignore such a value and
// run with the default.)
func TestBadEnvironmentValueFailsLoudly(t *testing.T) {
	for _, tc := range []struct{ name, value string }{
		{"PYEXEC_SLOTS", "four"},
		{"PYEXEC_TIMEOUT", "30"},
		{"PYEXEC_MAX_QUEUE_WAIT", "5 seconds"},
		{"PYEXEC_MEMORY_MB", "512MiB"},
		{"PYEXEC_DEGRADED", "yes"},
		{"PYEXEC_SANDBOX_UID_BASE", "-"},
		{"PYEXEC_LOG_TEXT", "on"},
	} {
		var stderr bytes.Buffer
		code := run(nil, envOf(map[string]string{tc.name: tc.value}), &stderr)
		msg := stderr.String()
		if code != 2 || !strings.Contains(msg, tc.name+"="+strconv.Quote(tc.value)) {
			t.Errorf("%s=%q: exit %d, stderr %q; want exit 2 naming the variable and value", tc.name, tc.value, code, msg)
		}
	}
	var stderr bytes.Buffer
	if code := run([]string{"-log-level", "loud"}, envOf(nil), &stderr); code != 2 || !strings.Contains(stderr.String(), "loud") {
		t.Errorf("-log-level loud: exit %d, %q", code, stderr.String())
	}
}

func parse(t *testing.T, env map[string]string, args ...string) *options {
	t.Helper()
	fs := flag.NewFlagSet("supervisor", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o, err := parseOptions(fs, args, envOf(env))
	if err != nil {
		t.Fatalf("parseOptions: %v", err)
	}
	return o
}

// Every variable the supervisor documents still configures it (README,
// deploy/cloudrun.yaml and scripts use them), and the flag still wins.
func TestEnvironmentNames(t *testing.T) {
	o := parse(t, map[string]string{
		"PYEXEC_GATEWAY_USER": "", "PYEXEC_SANDBOX_USER": "sb", "PYEXEC_LOG_LEVEL": "debug", "PYEXEC_LOG_TEXT": "1",
		"PYEXEC_SUPERVISOR_SOCKET": "/s/sock", "PYEXEC_VENV": "/v", "PYEXEC_NSJAIL": "/n", "PYEXEC_RUNNER": "/r/runner.py",
		"PYEXEC_STAGE_DIR": "/st", "PYEXEC_CGROUP_ROOT": "/cg", "PYEXEC_CGROUP_PARENT": "p", "PYEXEC_ISOLATION": "auto",
		"PYEXEC_WORK_DIR": "/w", "PYEXEC_DEGRADED": "1", "PYEXEC_SANDBOX_UID_BASE": "70000", "PYEXEC_SANDBOX_UID_COUNT": "9",
		"PYEXEC_ENGINE": "cold", "PYEXEC_ZYGOTES": "3", "PYEXEC_SLIM_ZYGOTES": "4", "PYEXEC_PRELOAD": "", "PYEXEC_SLOTS": "5", "PYEXEC_QUEUE": "6",
		"PYEXEC_CLIENT_GROUP": "batch", "PYEXEC_CLIENT_SLOTS": "2", "PYEXEC_CLIENT_QUEUE": "3",
		"PYEXEC_MAX_QUEUE_WAIT": "7s", "PYEXEC_DRAIN_TIMEOUT": "8s", "PYEXEC_NOT_READY_AFTER": "9s",
		"PYEXEC_TIMEOUT": "10s", "PYEXEC_MAX_TIMEOUT": "20s", "PYEXEC_MEMORY_MB": "100", "PYEXEC_OUTPUT_KB": "10", "PYEXEC_RESULT_KB": "20",
	})
	c := o.cfg
	if o.gatewayUser != "" || o.sandboxUser != "sb" || o.level != "debug" || !o.logText ||
		c.SocketPath != "/s/sock" || c.Venv != "/v" || c.NsjailPath != "/n" || c.RunnerPath != "/r/runner.py" ||
		c.StageDir != "/st" || c.CgroupRoot != "/cg" || c.CgroupParent != "p" || c.Isolation != "auto" ||
		c.WorkDir != "/w" || !c.Degraded || c.SandboxUIDBase != 70000 || c.SandboxUIDCount != 9 ||
		c.Engine != "cold" || c.Zygotes != 3 || c.SlimZygotes != 4 || len(c.Preload) != 0 || c.Slots != 5 || c.QueueSize != 6 ||
		c.ClientGroup != "batch" || c.ClientSlots != 2 || c.ClientQueue != 3 ||
		c.MaxQueueWait != 7*time.Second || c.DrainTimeout != 8*time.Second || c.NotReadyAfter != 9*time.Second ||
		c.Defaults.Timeout != 10*time.Second || c.Max.Timeout != 20*time.Second || c.Defaults.MemoryBytes != 100<<20 ||
		c.Max.MemoryBytes != 100<<20 || c.Defaults.OutputBytes != 10<<10 || c.Defaults.ResultBytes != 20<<10 {
		t.Errorf("environment not applied: %+v %+v", o, c)
	}
	o = parse(t, map[string]string{"PYEXEC_SLOTS": "5", "PYEXEC_PRELOAD": "numpy"}, "-slots", "2", "-preload", "json, csv")
	if o.cfg.Slots != 2 || strings.Join(o.cfg.Preload, ",") != "json,csv" {
		t.Errorf("flags do not win over the environment: %+v", o.cfg)
	}
	if o = parse(t, map[string]string{"PYEXEC_SLIM_ZYGOTES": "3"}, "-slim-zygotes", "0"); o.cfg.SlimZygotes != 0 {
		t.Errorf("-slim-zygotes 0 does not turn the slim kind off: %d", o.cfg.SlimZygotes)
	}
	o = parse(t, nil)
	// -1: as many slim zygotes as -zygotes (supervisor.Config resolves it).
	if o.cfg.SlimZygotes != -1 {
		t.Errorf("default slim zygotes %d, want -1", o.cfg.SlimZygotes)
	}
	if o.gatewayUser != "pyexec-gw" || strings.Join(o.cfg.Preload, ",") != "numpy,pandas,matplotlib.pyplot" ||
		o.cfg.Defaults.Set != limits.Defaults() || o.cfg.Max.Set != limits.Maxima(limits.Defaults()) {
		t.Errorf("defaults: %+v", o)
	}
}

// The variables both binaries read mean the same to both: one environment
// configures the pair.
func TestSharedVariablesAgreeWithGateway(t *testing.T) {
	env := map[string]string{
		"PYEXEC_MAX_TIMEOUT": "40s", "PYEXEC_MAX_QUEUE_WAIT": "3s", "PYEXEC_DRAIN_TIMEOUT": "4s",
		"PYEXEC_LOG_LEVEL": "warn", "PYEXEC_SUPERVISOR_SOCKET": "/x/s.sock",
	}
	o := parse(t, env)
	g := gateway.DefaultConfig()
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	if err := g.BindFlags(fs, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if g.MaxTimeout != o.cfg.Max.Timeout || g.MaxQueueWait != o.cfg.MaxQueueWait || g.ShutdownTimeout != o.cfg.DrainTimeout ||
		g.LogLevel != o.level || g.SocketPath != o.cfg.SocketPath {
		t.Errorf("gateway %+v and supervisor %+v disagree", g, o.cfg)
	}
	if gateway.DefaultConfig().MaxTimeout != parse(t, nil).cfg.Max.Timeout {
		t.Error("the gateway's and the supervisor's default maximum wall time differ")
	}
}
