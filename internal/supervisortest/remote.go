package supervisortest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// An end-to-end suite can target a service that is already running (the
// container image under `make test-image`) instead of starting its own stack.
// The service is reached over HTTP; what the local tests learn by looking at
// the host (jailed processes, cgroups, mounts, logs) they learn by running the
// same checks where the service runs, through a command prefix:
//
//	PYEXEC_E2E_URL      the service's base URL (setting it selects this mode)
//	PYEXEC_E2E_EXEC     a command prefix that runs a command as root where the
//	                    service runs, e.g. "podman exec -i NAME"
//	PYEXEC_E2E_LOGS     a command that prints the service's whole log so far,
//	                    e.g. "podman logs NAME"
//	PYEXEC_E2E_REPO     the service's checkout there (default /opt/python-executor)
//	PYEXEC_E2E_PORT     the gateway's own port there (default 8080)
//	PYEXEC_E2E_SOCKET   the supervisor's socket there (default /run/python-executor/supervisor.sock)
//	PYEXEC_E2E_CGROUP_PARENT  the supervisor's cgroup parent there (default python-executor)
//	PYEXEC_E2E_STAGE_DIR      the supervisor's stage directory there (default /run/python-executor-stage)
//
// The checks run as this very test binary, copied into the target and
// started in probe mode (RunProbe), so they are the local checks, not a
// second implementation of them. A test that needs what a running service
// cannot give (its own supervisor flags, killing the supervisor) fails
// loudly in this mode: the caller lists such tests as local-only.

const probeEnv = "PYEXEC_E2E_PROBE"

// remoteTarget is the service named by the PYEXEC_E2E_* variables.
type remoteTarget struct {
	url, repo, port, socket, cgParent, stage string
	exec, logs                               []string

	installOnce sync.Once
	probePath   string
	installErr  error
}

var (
	remoteOnce sync.Once
	remote     *remoteTarget
	remoteErr  error
)

// Remote reports whether the suites target an external service
// (PYEXEC_E2E_URL is set).
func Remote() bool { return os.Getenv("PYEXEC_E2E_URL") != "" }

func target(t testing.TB) *remoteTarget {
	t.Helper()
	remoteOnce.Do(func() {
		env := func(k, def string) string {
			if v := os.Getenv(k); v != "" {
				return v
			}
			return def
		}
		r := &remoteTarget{
			url:      strings.TrimRight(os.Getenv("PYEXEC_E2E_URL"), "/"),
			repo:     env("PYEXEC_E2E_REPO", "/opt/python-executor"),
			port:     env("PYEXEC_E2E_PORT", "8080"),
			socket:   env("PYEXEC_E2E_SOCKET", "/run/python-executor/supervisor.sock"),
			cgParent: env("PYEXEC_E2E_CGROUP_PARENT", "python-executor"),
			stage:    env("PYEXEC_E2E_STAGE_DIR", "/run/python-executor-stage"),
			exec:     strings.Fields(os.Getenv("PYEXEC_E2E_EXEC")),
			logs:     strings.Fields(os.Getenv("PYEXEC_E2E_LOGS")),
		}
		if _, err := url.Parse(r.url); err != nil {
			remoteErr = fmt.Errorf("PYEXEC_E2E_URL: %v", err)
			return
		}
		// Without these the leftover and log checks could not run, and a
		// suite that silently checked less would pass for the wrong reason.
		if len(r.exec) == 0 || len(r.logs) == 0 {
			remoteErr = fmt.Errorf("PYEXEC_E2E_URL needs PYEXEC_E2E_EXEC and PYEXEC_E2E_LOGS (the checks of jailed processes, cgroups, mounts and logs run where the service runs)")
			return
		}
		remote = r
	})
	if remoteErr != nil {
		t.Fatal(remoteErr)
	}
	return remote
}

// startRemote attaches a Stack to the external service: it must be healthy
// and run engine ("" = any).
func startRemote(t testing.TB, engine string, supervisorArgs []string) *Stack {
	t.Helper()
	r := target(t)
	if len(supervisorArgs) > 0 {
		t.Fatalf("this test starts a supervisor with flags %v, which a service already running (PYEXEC_E2E_URL) cannot honour: run it locally, or list it among the local-only tests", supervisorArgs)
	}
	var health map[string]any
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(r.url + "/health")
		if err == nil {
			health = nil
			json.NewDecoder(resp.Body).Decode(&health)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the service at %s is not healthy: %v %v", r.url, err, health)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if engine != "" && health["engine"] != engine {
		t.Fatalf("the service at %s runs engine %v, want %q (set PYEXEC_TEST_ENGINES to the engine it runs)", r.url, health["engine"], engine)
	}
	// Each stack sees the log from its own start on, as a local one would.
	from := len(r.readLogs(t))
	sup := &Supervisor{
		Socket:   r.socket,
		CgParent: r.cgParent,
		StageDir: r.stage,
		Logs:     &Buffer{source: func() string { return r.logsSince(from, false) }},
		remote:   true,
	}
	gw := &Gateway{
		URL:  r.url,
		Logs: &Buffer{source: func() string { return r.logsSince(from, true) }},
		port: r.port,
	}
	// The local stack's Stop checks that no jailed process outlives the
	// test; the service keeps running here, so check that alone.
	t.Cleanup(func() {
		deadline := time.Now().Add(15 * time.Second)
		for {
			pids := SandboxProcesses(t)
			if len(pids) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("jailed processes left behind in the target: %v", pids)
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	return &Stack{Supervisor: sup, Gateway: gw}
}

// readLogs runs PYEXEC_E2E_LOGS.
func (r *remoteTarget) readLogs(t testing.TB) string {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, r.logs[0], r.logs[1:]...).CombinedOutput()
	if err != nil {
		t.Errorf("reading the service's logs with %q: %v: %s", r.logs, err, out)
	}
	return string(out)
}

// logsSince returns the log lines written after byte offset from, those of
// the gateway (component gateway or client) or of the supervisor (the rest).
func (r *remoteTarget) logsSince(from int, gateway bool) string {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, r.logs[0], r.logs[1:]...).CombinedOutput()
	if from > len(out) {
		from = len(out)
	}
	var b strings.Builder
	for _, line := range strings.SplitAfter(string(out[from:]), "\n") {
		isGW := strings.Contains(line, `"component":"gateway"`) || strings.Contains(line, `"component":"client"`)
		if isGW == gateway {
			b.WriteString(line)
		}
	}
	return b.String()
}

// command runs argv where the service runs, with stdin, and returns stdout.
func (r *remoteTarget) command(stdin io.Reader, argv ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	full := append(append([]string{}, r.exec...), argv...)
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	cmd.Stdin = stdin
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%q: %v: %s", full, err, stderr.String())
	}
	return out, nil
}

// install copies this test binary into the target once, for the probes.
func (r *remoteTarget) install() error {
	r.installOnce.Do(func() {
		self, err := os.Executable()
		if err != nil {
			r.installErr = err
			return
		}
		f, err := os.Open(self)
		if err != nil {
			r.installErr = err
			return
		}
		defer f.Close()
		r.probePath = fmt.Sprintf("/tmp/pyexec-e2e-probe-%d", os.Getpid())
		_, r.installErr = r.command(f, "sh", "-c", `cat >"$1" && chmod 0700 "$1"`, "sh", r.probePath)
	})
	return r.installErr
}

// Probes are the checks a test runs where the service runs, by name. Each
// returns a JSON-encodable value.
var probes = map[string]func(args []string) (any, error){
	"sandbox-processes": func([]string) (any, error) {
		uid, err := sandboxUID()
		if err != nil {
			return nil, err
		}
		return sandboxProcessesOf(uid, false), nil
	},
	"read-file": func(args []string) (any, error) {
		b, err := os.ReadFile(args[0])
		return string(b), err
	},
	"write-file": func(args []string) (any, error) {
		// 0600, as any secret must be: in the container tier an execution
		// shares the filesystem and only permissions keep it out.
		return nil, os.WriteFile(args[0], []byte(args[1]), 0o600)
	},
	"remove": func(args []string) (any, error) {
		return nil, os.Remove(args[0])
	},
}

// RegisterProbe adds a named check that InTarget can run where the service
// runs. Call it from an init function of the test package.
func RegisterProbe(name string, f func(args []string) (any, error)) { probes[name] = f }

// RunProbe runs the probe named by the environment and exits, when this
// binary was started as a probe inside the target; otherwise it returns.
// Call it first thing in TestMain.
func RunProbe() {
	name := os.Getenv(probeEnv)
	if name == "" {
		return
	}
	f, ok := probes[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown probe %q\n", name)
		os.Exit(2)
	}
	v, err := f(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "probe %s: %v\n", name, err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(v)
	os.Exit(0)
}

// InTarget runs probe name with args where the service runs (in this
// process when the suites run locally) and decodes its answer into out.
func InTarget(t testing.TB, out any, name string, args ...string) {
	t.Helper()
	f, ok := probes[name]
	if !ok {
		t.Fatalf("no probe %q", name)
	}
	if !Remote() {
		v, err := f(args)
		if err != nil {
			t.Fatalf("probe %s: %v", name, err)
		}
		b, _ := json.Marshal(v)
		if out != nil {
			json.Unmarshal(b, out)
		}
		return
	}
	r := target(t)
	if err := r.install(); err != nil {
		t.Fatalf("installing the probe in the target: %v", err)
	}
	argv := append([]string{"env", probeEnv + "=" + name, r.probePath}, args...)
	b, err := r.command(nil, argv...)
	if err != nil {
		t.Fatalf("probe %s in the target: %v", name, err)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("probe %s in the target answered %q: %v", name, b, err)
		}
	}
}

// TargetRepo is the service's checkout: where scripts could look for it.
func TargetRepo(t testing.TB) string {
	t.Helper()
	if Remote() {
		return target(t).repo
	}
	return RepoRoot(t)
}

// WriteTargetFile writes a file where the service runs and removes it when
// the test ends.
func WriteTargetFile(t testing.TB, path, text string) {
	t.Helper()
	InTarget(t, nil, "write-file", path, text)
	t.Cleanup(func() { InTarget(t, nil, "remove", path) })
}
