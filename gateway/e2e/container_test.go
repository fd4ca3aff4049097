package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/python-executor/python-executor/supervisor/supervisortest"
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
