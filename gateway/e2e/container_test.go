package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/python-executor/python-executor/internal/jail"
	"github.com/python-executor/python-executor/internal/supervisortest"
)

// containerArgs force the container isolation tier (no namespaces, no
// cgroups) on a host that would allow the full one: what an unprivileged
// container gets.
var containerArgs = []string{"-isolation", "container", "-slots", "3"}

// The container tier serves the seed's examples and the error classes, and
// /health names it and what it lacks. The warm engine needs namespaces: it
// runs cold there, and says so.
func TestContainerTierContract(t *testing.T) {
	st := supervisortest.StartStack(t, "", containerArgs...)
	base := st.Gateway.URL
	resp, err := http.Get(base + "/health")
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Status, Engine, Isolation, Cgroups, Tier string
		Protections, Missing                     []string
	}
	json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	if h.Status != "healthy" || h.Engine != "cold" || h.Tier != "container" || h.Cgroups != "none" || !strings.HasPrefix(h.Isolation, "container") {
		t.Fatalf("health %+v", h)
	}
	for _, want := range []string{"uid_per_execution", "private_work_dir", "no_sockets", "seccomp", "no_new_privs", "no_capabilities", "memory_watch", "process_limit_per_execution"} {
		if !slices.Contains(h.Protections, want) {
			t.Errorf("protections %v lack %s", h.Protections, want)
		}
	}
	for _, want := range []string{"pid_namespace", "network_namespace", "mount_namespace", "memory_cgroup"} {
		if !slices.Contains(h.Missing, want) {
			t.Errorf("missing %v lacks %s", h.Missing, want)
		}
	}
	if !strings.Contains(st.Supervisor.Logs.String(), "warm engine needs namespaces") {
		t.Errorf("the supervisor did not say why it runs cold")
	}
	for _, ex := range seedExamples {
		r := post(t, base, "/execute", []byte(ex.body))
		if r.Status != 200 || !sameJSON(r.Body.Result, []byte(ex.want)) {
			t.Fatalf("%s: got %d %s, want %s", ex.name, r.Status, r.Raw, ex.want)
		}
	}
	for _, c := range []struct{ script, typ string }{
		{"def main(:\n", "syntax_error"},
		{"x = 1\n", "missing_main"},
		{"def main():\n    raise ValueError('nope')\n", "exception"},
		{"def main():\n    return {1, 2}\n", "invalid_result"},
		{"import os\ndef main():\n    os._exit(3)\n", "exited"},
		// Without a PID namespace a daemonised child survives its parent
		// unless the supervisor kills it: the answer must not wait for it.
		{"import os, time\ndef main():\n    if os.fork() == 0:\n        os.setsid()\n        time.sleep(60)\n    os._exit(3)\n", "exited"},
	} {
		r := execute(t, base, c.script, nil)
		if r.Body.Error == nil || r.Body.Error.Type != c.typ {
			t.Fatalf("%q: got %d %s, want %s", c.script, r.Status, r.Raw, c.typ)
		}
	}
	execute(t, base, "import time\ndef main():\n    time.sleep(5)\n", map[string]any{"timeout": 0.5}).wantError(t, 500, "timeout")
}

// In the container tier an execution cannot signal a concurrent one, read
// its /proc files or its directory, nor open a socket; its directory is gone
// once it has answered.
func TestContainerTierIsolation(t *testing.T) {
	st := supervisortest.StartStack(t, "", containerArgs...)
	base := st.Gateway.URL
	victim := `
import os, time
def main():
    open("secret.txt", "w").write("victim-secret-1618")
    time.sleep(3)
    return {"cwd": os.getcwd(), "uid": os.getuid(), "files": os.listdir(".")}
`
	snoop := tryHelper + `
import os, signal, socket, time
def main():
    time.sleep(1)
    me = os.getpid()
    others = []
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == me:
            continue
        try:
            st = os.stat("/proc/" + p)
        except OSError:
            continue
        if 61000 <= st.st_uid < 62000 and st.st_uid != os.getuid():
            others.append(int(p))
    if not others:
        return "no other execution seen"
    p = others[0]
    return {
        "kill": try_(os.kill, p, signal.SIGKILL),
        "environ": try_(lambda: open("/proc/%d/environ" % p).read()),
        "cwd": try_(os.readlink, "/proc/%d/cwd" % p),
        "mem": try_(lambda: open("/proc/%d/mem" % p, "rb").read(1)),
        "list_work": try_(os.listdir, os.path.dirname(os.getcwd())),
        "inet": try_(socket.socket, socket.AF_INET, socket.SOCK_STREAM),
        "inet6": try_(socket.socket, socket.AF_INET6, socket.SOCK_DGRAM),
        "unix": try_(socket.socket, socket.AF_UNIX, socket.SOCK_STREAM),
        "netlink": try_(socket.socket, socket.AF_NETLINK, socket.SOCK_RAW),
        "socketpair": try_(lambda: len(socket.socketpair())),
        "write_root": try_(lambda: open("/pwned", "w")),
        "shadow": try_(lambda: open("/etc/shadow").read()),
        "same_uid": os.getuid() == os.stat("/proc/%d" % p).st_uid,
    }
`
	var wg sync.WaitGroup
	var v, s *reply
	wg.Add(2)
	go func() { defer wg.Done(); v = execute(t, base, victim, nil) }()
	go func() { defer wg.Done(); s = execute(t, base, snoop, nil) }()
	wg.Wait()
	noCanary(t, s)
	if strings.Contains(string(s.Raw), "victim-secret") {
		t.Fatalf("the snooper read the victim's file: %s", s.Raw)
	}
	got := s.wantOK(t)
	want := `{"kill": "PermissionError:EPERM", "environ": "PermissionError:EACCES", "cwd": "PermissionError:EACCES",
		"mem": "PermissionError:EACCES", "list_work": "PermissionError:EACCES",
		"inet": "PermissionError:EPERM", "inet6": "PermissionError:EPERM", "unix": "PermissionError:EPERM", "netlink": "PermissionError:EPERM",
		"socketpair": "ok:2", "write_root": "PermissionError:EACCES", "shadow": "PermissionError:EACCES", "same_uid": false}`
	if !sameJSON([]byte(mustJSON(got)), []byte(want)) {
		t.Fatalf("snooper: %s\nwant %s", mustJSON(got), want)
	}
	vr := v.wantOK(t).(map[string]any)
	if files := mustJSON(vr["files"]); files != `["secret.txt"]` {
		t.Fatalf("victim's directory holds %s", files)
	}
	cwd, _ := vr["cwd"].(string)
	if !strings.HasPrefix(cwd, "/tmp/python-executor-work/exec-") {
		t.Fatalf("victim ran in %q", cwd)
	}
	if _, err := os.Stat(cwd); !os.IsNotExist(err) {
		t.Fatalf("the victim's directory %s is still there after its answer (%v)", cwd, err)
	}
	waitNoSandboxProcesses(t)
}

// The fork bomb and the memory bomb beside a neighbour, in the container
// tier: the per-uid process limit and the supervisor's memory watch.
func TestContainerTierBombsBesideNeighbour(t *testing.T) {
	st := supervisortest.StartStack(t, "", containerArgs...)
	bombsBesideNeighbour(t, st)
}

// containerDiffers are the attacks whose answer in the container tier differs
// from the full tier's, with the container tier's exact answer: each is a
// difference the README's security section lists. Every other attack must
// have the full tier's answer.
var containerDiffers = map[string]attack{
	// No private size-limited tmpfs: the supervisor counts what the
	// execution writes and kills it past the tmp limits.
	"tmp_fill":    {status: 500, typ: "resource_limit"},
	"inode_flood": {status: 500, typ: "resource_limit"},
	// The container's files are there, guarded by permissions alone (the
	// canary is 0600 here, as any secret must be).
	"etc_shadow":       {status: 200, check: wantValue(`"PermissionError:EACCES"`)},
	"host_canary_file": {status: 200, check: wantValue(`"PermissionError:EACCES"`)},
	"proc_1_environ":   {status: 500, typ: "exception"},
	"host_dirs_absent": {status: 200, check: func(t *testing.T, result any) {
		if _, ok := result.([]any); !ok {
			t.Fatalf("result %v, want the list of visible host paths", result)
		}
	}},
	"only_three_devices": {status: 200, check: func(t *testing.T, result any) {
		if l, ok := result.([]any); !ok || !slices.Contains(l, any("null")) {
			t.Fatalf("result %v, want the container's /dev", result)
		}
	}},
	"fresh_tmp_and_fixed_venv_path": {status: 200, check: func(t *testing.T, result any) {
		l, _ := result.([]any)
		if cwd, _ := l[3].(string); len(l) != 4 || !strings.HasPrefix(cwd, "/tmp/python-executor-work/exec-") {
			t.Fatalf("result %v, want the private work dir as cwd", result)
		}
	}},
	// No network namespace: seccomp refuses the socket itself.
	"connect_gateway_port":   {status: 200, check: wantValue(`"PermissionError:EPERM"`)},
	"connect_outside":        {status: 200, check: wantValue(`"PermissionError:EPERM"`)},
	"find_supervisor_socket": {status: 500, typ: "exception"},
	"network_interfaces":     {status: 500, typ: "exception"},
	// A uid of its own, no PID namespace: the parent is nsjail (root).
	"setuid_0": {status: 200, check: func(t *testing.T, result any) {
		l, _ := result.([]any)
		if uid, _ := l[0].(float64); len(l) != 2 || uid < 61000 || uid >= 62000 || l[1] != "PermissionError:EPERM" {
			t.Fatalf("result %v, want [a uid of the sandbox range, EPERM]", result)
		}
	}},
	"signal_pid_1": {status: 200, check: func(t *testing.T, result any) {
		l, _ := result.([]any)
		if pid, _ := l[0].(float64); len(l) != 2 || pid == 1 || l[1] != "PermissionError:EPERM" {
			t.Fatalf("result %v, want [its host pid, EPERM]", result)
		}
	}},
}

// forTier is attack a with the answer expected in tier: the full tier's as
// written, or the container tier's where containerDiffers lists a
// difference. pyForAll says whether the venv's python is executable by any
// user.
func forTier(a attack, tier string, pyForAll bool) attack {
	if tier != "container" {
		return a
	}
	if d, ok := containerDiffers[a.name]; ok {
		a.status, a.typ, a.check = d.status, d.typ, d.check
	}
	// Nothing is mounted: a Python whose real path only root can traverse
	// (a pyenv under /root, as on the CI host) can run the runner (nsjail
	// opens it as root) but not be run again.
	if a.name == "subprocess_python" && !pyForAll {
		a.status, a.typ, a.check = 500, "exception", nil
	}
	return a
}

// The adversarial suite against the container tier: every attack contained,
// no answer internal but the forged garbage's, the service still serving,
// nothing left behind.
func TestContainerTierAdversarial(t *testing.T) {
	st := supervisortest.StartStack(t, "", containerArgs...)
	canary := "/var/tmp/pyexec-canary-container.txt"
	if err := os.WriteFile(canary, []byte(hostCanaryText), 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(canary)
	u, _ := url.Parse(st.Gateway.URL)
	pyForAll := executableByAll(filepath.Join(supervisortest.RepoRoot(t), ".venv", "bin", "python3"))
	for _, a := range attacks(u.Port(), st.Supervisor.Socket, canary, supervisortest.RepoRoot(t)) {
		a = forTier(a, "container", pyForAll)
		// The container tier runs the cold engine.
		t.Run(a.name, func(t *testing.T) { runAttack(t, st.Gateway.URL, a, mayTimeOut(a, "cold")) })
	}
	waitNoSandboxProcesses(t)
	r := execute(t, st.Gateway.URL, "def main(): return 'alive'", nil)
	if !sameJSON(r.Body.Result, []byte(`"alive"`)) {
		t.Fatalf("service no longer answers: %d %s", r.Status, r.Raw)
	}
}

// executableByAll reports whether every directory on the real path of exe is
// searchable and exe executable by any user.
func executableByAll(exe string) bool {
	real, err := filepath.EvalSymlinks(exe)
	if err != nil {
		return false
	}
	for p := real; ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm()&0o001 == 0 {
			return false
		}
		if p == "/" {
			return true
		}
	}
}

// dockerDefaultCaps is the capability set Docker (and podman) give a
// container's root by default: no CAP_SYS_ADMIN (no namespaces) and no
// CAP_SYS_PTRACE (no smaps_rollup of another uid's process).
var dockerDefaultCaps = []string{"setpriv", "--bounding-set", "-all,+chown,+dac_override,+fowner,+fsetid,+kill,+setgid,+setuid,+setpcap,+net_bind_service,+net_raw,+sys_chroot,+mknod,+audit_write,+setfcap", "--inh-caps", "-all", "--"}

// As root with Docker's default capabilities, the supervisor refuses the
// full tier, saying what the host lacks and which flags give it, and with
// -isolation auto it runs the container tier, limits included.
func TestContainerTierWithDockerDefaultCapabilities(t *testing.T) {
	supervisortest.RequireRoot(t)
	root := supervisortest.RepoRoot(t)
	dir := fmt.Sprintf("/run/pyexec-it-caps-%d", os.Getpid())
	os.MkdirAll(dir, 0o755)
	defer os.RemoveAll(dir)
	args := append(append([]string(nil), dockerDefaultCaps[1:]...), filepath.Join(supervisortest.Binaries(t), "supervisor"),
		"-socket", filepath.Join(dir, "s.sock"), "-gateway-user", "", "-venv", filepath.Join(root, ".venv"),
		"-runner", filepath.Join(root, "runner", "runner.py"), "-stage-dir", filepath.Join(dir, "stage"))
	out, err := exec.Command(dockerDefaultCaps[0], args...).CombinedOutput()
	for _, want := range []string{"cannot create namespaces", "--privileged", "PYEXEC_ISOLATION=container"} {
		if err == nil || !strings.Contains(string(out), want) {
			t.Fatalf("full tier without CAP_SYS_ADMIN: err=%v, want a refusal saying %q:\n%s", err, want, out)
		}
	}
	if strings.Contains(string(out), "must run as root") {
		t.Fatalf("the refusal blames root, which the supervisor is:\n%s", out)
	}

	// Such a container has no mount namespace to stage a checkout in: its
	// venv and runner must be reachable by every uid, as the image's are.
	venv, runner := reachableInstall(t, filepath.Join(root, ".venv"), filepath.Join(root, "runner", "runner.py"))
	s := supervisortest.Start(t, supervisortest.Options{Wrapper: dockerDefaultCaps, Args: []string{"-isolation", "auto", "-slots", "3", "-venv", venv, "-runner", runner}, GatewayUser: supervisortest.GatewayUser})
	st := &supervisortest.Stack{Supervisor: s, Gateway: supervisortest.StartGateway(t, s)}
	status, err := s.Client.Status(context.Background())
	if err != nil || status.Tier != "container" || status.Engine != "cold" {
		t.Fatalf("status %+v %v, want the container tier", status, err)
	}
	r := post(t, st.Gateway.URL, "/execute", []byte(seedExamples[0].body))
	if r.Status != 200 || !sameJSON(r.Body.Result, []byte(seedExamples[0].want)) {
		t.Fatalf("seed example: %d %s", r.Status, r.Raw)
	}
	bombsBesideNeighbour(t, st)
}

// reachableInstall returns venv and runner, or, where a directory above them
// is closed to other users (a checkout cloned into a `mktemp -d`), a copy
// every uid can reach: the venv hard-linked (copied across filesystems),
// the runner and the zygote copied. The copy goes when the test ends.
func reachableInstall(t *testing.T, venv, runner string) (string, string) {
	t.Helper()
	if !jail.NeedsStaging(venv) && !jail.NeedsStaging(runner) {
		return venv, runner
	}
	dir, err := os.MkdirTemp(filepath.Dir(filepath.Dir(venv)), "pyexec-it-install-")
	if jail.NeedsStaging(dir) {
		os.RemoveAll(dir)
		dir, err = os.MkdirTemp("/var/tmp", "pyexec-it-install-")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.Command("cp", "-al", venv, filepath.Join(dir, "venv")).CombinedOutput(); err != nil {
		// Another filesystem: a real copy.
		os.RemoveAll(filepath.Join(dir, "venv"))
		if out, err := exec.Command("cp", "-a", venv, filepath.Join(dir, "venv")).CombinedOutput(); err != nil {
			t.Fatalf("copy the venv where every uid reaches it: %v\n%s", err, out)
		}
	}
	// The zygote sits beside the runner (the supervisor looks for it there).
	for _, name := range []string{"runner.py", "zygote.py"} {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(runner), name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if jail.NeedsStaging(filepath.Join(dir, "venv")) {
		t.Fatalf("%s is still not reachable by other users", dir)
	}
	return filepath.Join(dir, "venv"), filepath.Join(dir, "runner.py")
}
