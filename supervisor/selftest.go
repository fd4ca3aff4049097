package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/python-executor/python-executor/wire"
)

// selfTestScript reports, from inside a real jail, the facts the isolation
// rests on. It runs at start-up so a host that silently drops a namespace, a
// mount or a limit is caught before any user script runs.
const selfTestScript = `
import os, socket

def status():
    return dict(l.split(":\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\t" in l)

def writable(path):
    try:
        with open(os.path.join(path, ".probe"), "w"):
            pass
        os.unlink(os.path.join(path, ".probe"))
        return True
    except OSError:
        return False

def sock(family, type):
    try:
        socket.socket(family, type).close()
        return "ok"
    except OSError as e:
        return "errno %d" % e.errno

def main():
    try:
        ifaces = sorted(name for _, name in socket.if_nameindex())
    except OSError:
        ifaces = []
    st = status()
    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "pid": os.getpid(),
        "uid_map": open("/proc/self/uid_map").read().split(),
        "hostname": socket.gethostname(),
        "ifaces": ifaces,
        "cwd": os.getcwd(),
        "root": sorted(os.listdir("/")),
        "host_paths": [p for p in ("/etc/shadow", "/home", "/var", "/run", "/sys", "/boot") if os.path.exists(p)],
        "root_writable": writable("/"),
        "tmp_writable": writable("/tmp"),
        "cap_eff": st.get("CapEff", "").strip(),
        "cap_bnd": st.get("CapBnd", "").strip(),
        "no_new_privs": st.get("NoNewPrivs", "").strip(),
        "seccomp": st.get("Seccomp", "").strip(),
        "cgroup": open("/proc/self/cgroup").read(),
        "environ": sorted(os.environ),
        "sockets": {
            "unix": sock(1, socket.SOCK_STREAM), "inet": sock(2, socket.SOCK_STREAM),
            "inet6": sock(10, socket.SOCK_STREAM), "vsock": sock(40, socket.SOCK_STREAM),
            "alg": sock(38, socket.SOCK_SEQPACKET), "tipc": sock(30, socket.SOCK_RDM),
        },
        "shadow_readable": os.access("/etc/shadow", os.R_OK),
        "cwd_writable": writable("."),
    }
`

// selfTestMemoryScript must be stopped by the memory limit.
const selfTestMemoryScript = `
def main():
    hoard = []
    for _ in range(64):
        hoard.append(bytearray(8 << 20))
    return len(hoard)
`

// selfTestPidsScript reports whether forking stopped well short of 64.
const selfTestPidsScript = `
import os, time
def main():
    n = 0
    try:
        for _ in range(64):
            if os.fork() == 0:
                time.sleep(10)
                os._exit(0)
            n += 1
    except OSError:
        pass
    return n < 16
`

// selfTestPidsLimit is the limit the pids probe runs under.
const selfTestPidsLimit = 8

// selfTestMemoryLimit is the limit the memory probe runs under.
const selfTestMemoryLimit = 96 << 20

// SelfTest runs the real jail and fails when isolation did not take. Missing
// namespaces, mounts, privilege drops or seccomp are always fatal; a memory
// limit that does not hold is fatal unless degraded mode was asked for, in
// which case the returned note says what is missing.
func SelfTest(ctx context.Context, engine Engine, host *Host, degraded bool, log *logrus.Entry) (note string, err error) {
	lim := DefaultLimits()
	lim.Timeout = 20 * time.Second
	start := time.Now()
	out := engine.Run(ctx, &Execution{ID: "selftest", Script: selfTestScript, Limits: lim, Log: log.WithField("execution_id", "selftest")})
	if out.Err != nil {
		return "", fmt.Errorf("probe failed: %s: %s", out.Err.Type, out.Err.Message)
	}
	var got probeResult
	if err := json.Unmarshal(out.Result, &got); err != nil {
		return "", fmt.Errorf("probe result: %w", err)
	}
	var problems []string
	check := func(ok bool, what string, args ...any) {
		if !ok {
			problems = append(problems, fmt.Sprintf(what, args...))
		}
	}
	if host.Tier == TierContainer {
		// No namespaces: the checks are those of the container tier
		// (jail.Policy.NoNamespaces).
		check(host.UIDs.Contains(got.UID) && got.GID == got.UID, "jail runs as %d:%d, want a uid and gid of its own from the sandbox range", got.UID, got.GID)
		check(strings.HasPrefix(got.Cwd, host.WorkDir+"/") && got.CwdWritable, "cwd %q writable=%v, want a private directory under %s", got.Cwd, got.CwdWritable, host.WorkDir)
		check(!got.RootWritable && !got.ShadowRead, "the jail can write / (%v) or read /etc/shadow (%v)", got.RootWritable, got.ShadowRead)
		// No network namespace to contain a socket: none of any family.
		for _, f := range []string{"unix", "inet", "inet6", "vsock", "alg", "tipc"} {
			check(got.Sockets[f] == "errno 1", "creating an %s socket in the jail: %q, want refused with EPERM by the container tier's seccomp policy", f, got.Sockets[f])
		}
	} else {
		fullChecks(check, got, host)
	}
	check(got.CapEff == "0000000000000000" && got.CapBnd == "0000000000000000", "capabilities left: effective %s, bounding %s", got.CapEff, got.CapBnd)
	check(got.NoNewPrivs == "1", "no_new_privs is %q, want 1", got.NoNewPrivs)
	check(!host.Policy.Seccomp || got.Seccomp == "2", "seccomp mode %q, want 2 (filter)", got.Seccomp)
	if host.Policy.Seccomp && host.Tier != TierContainer {
		// The policy's socket-family allowlist: what Python needs works,
		// AF_VSOCK (a VM host's hypervisor) and the rest do not.
		for _, f := range []string{"unix", "inet", "inet6"} {
			check(got.Sockets[f] == "ok", "creating an %s socket in the jail: %s, want ok", f, got.Sockets[f])
		}
		for _, f := range []string{"vsock", "alg", "tipc"} {
			check(got.Sockets[f] == "errno 97", "creating an %s socket in the jail: %q, want refused with EAFNOSUPPORT by the seccomp policy", f, got.Sockets[f])
		}
	}
	for _, e := range got.Environ {
		check(!strings.HasPrefix(e, "PYEXEC_") || e == "PYEXEC_REQUEST_FD" || e == "PYEXEC_RESULT_FD", "supervisor variable %s leaked into the jail", e)
		check(e != "USER" && e != "SUDO_USER" && e != "PWD", "supervisor variable %s leaked into the jail", e)
	}
	// Exactly the policy's variables, whichever engine applied them.
	var names []string
	for _, e := range host.Policy.Env {
		name, _, _ := strings.Cut(e, "=")
		names = append(names, name)
	}
	slices.Sort(names)
	check(slices.Equal(got.Environ, names), "the jail's environment has %v, want the policy's %v", got.Environ, names)
	if len(problems) > 0 {
		return "", fmt.Errorf("isolation missing: %s", strings.Join(problems, "; "))
	}
	return limitProbes(ctx, engine, lim, degraded, start, got.Root, log)
}

// fullChecks are the self-test's checks of the full tier's namespaces and
// mounts.
func fullChecks(check func(bool, string, ...any), got probeResult, host *Host) {
	sandbox := fmt.Sprint(host.Policy.OutsideUID)
	check(got.UID == 65534 && got.GID == 65534, "jail runs as %d:%d, want 65534:65534", got.UID, got.GID)
	// The cold jail's user namespace is a child of the host's (65534 maps to
	// the sandbox user); a warm child's is a child of its zygote's, whose
	// own 65534 is that same sandbox user.
	// Without cgroups a cold jail maps to a uid of its own (see proc.UIDPool).
	outside := func(s string) bool {
		id, err := strconv.Atoi(s)
		return s == sandbox || s == "65534" || (err == nil && host.UIDs != nil && host.UIDs.Contains(id))
	}
	check(len(got.UIDMap) == 3 && got.UIDMap[0] == "65534" && outside(got.UIDMap[1]) && got.UIDMap[2] == "1", "uid map %v, want 65534 -> %s only (no user namespace?)", got.UIDMap, sandbox)
	check(got.PID == 1, "runner is pid %d, want 1 (no PID namespace?)", got.PID)
	check(got.Hostname == "sandbox", "hostname %q (no UTS namespace?)", got.Hostname)
	check(len(got.Ifaces) <= 1 && (len(got.Ifaces) == 0 || got.Ifaces[0] == "lo"), "network interfaces %v (no network namespace?)", got.Ifaces)
	check(got.Cwd == "/tmp" && got.TmpWritable, "cwd %q writable=%v, want a writable /tmp", got.Cwd, got.TmpWritable)
	check(!got.RootWritable, "the jail's root is writable")
	check(len(got.HostPaths) == 0, "host paths visible in the jail: %v", got.HostPaths)
}

// limitProbes proves the memory and process limits hold. Without them the
// supervisor refuses to start unless degraded (then it says what is missing).
// The container tier enforces them without cgroups and must pass as well.
func limitProbes(ctx context.Context, engine Engine, lim LimitSet, degraded bool, start time.Time, root []string, log *logrus.Entry) (note string, err error) {
	// The limits must hold, not just be configured: one probe per limit.
	memLim := lim
	memLim.MemoryBytes = selfTestMemoryLimit
	mem := engine.Run(ctx, &Execution{ID: "selftest-memory", Script: selfTestMemoryScript, Limits: memLim, Log: log.WithField("execution_id", "selftest-memory")})
	var missing []string
	if mem.Err == nil || mem.Err.Type != wire.ErrMemoryLimit {
		missing = append(missing, fmt.Sprintf("a script allocating 512 MiB under a %d MiB limit was not stopped by it (%s)", selfTestMemoryLimit>>20, describe(mem)))
	}
	pidsLim := lim
	pidsLim.Pids = selfTestPidsLimit
	pids := engine.Run(ctx, &Execution{ID: "selftest-pids", Script: selfTestPidsScript, Limits: pidsLim, Log: log.WithField("execution_id", "selftest-pids")})
	if pids.Err != nil || string(pids.Result) != "true" {
		missing = append(missing, fmt.Sprintf("a script forking 64 processes under a limit of %d was not stopped by it (%s)", selfTestPidsLimit, describe(pids)))
	}
	if len(missing) > 0 {
		what := strings.Join(missing, "; ")
		if !degraded {
			return "", fmt.Errorf("limits missing: %s; refusing to start (pass -degraded to run anyway)", what)
		}
		note = "limits not enforced"
		log.Warn("DEGRADED ISOLATION: " + what)
	}
	log.WithFields(logrus.Fields{"duration_ms": time.Since(start).Milliseconds(), "root": root}).Info("self-test passed")
	return note, nil
}

func describe(o Outcome) string {
	if o.Err != nil {
		return string(o.Err.Type) + ": " + o.Err.Message
	}
	return "returned " + string(o.Result)
}

// probeResult is what selfTestScript reports.
type probeResult struct {
	UID, GID, PID int
	UIDMap        []string `json:"uid_map"`
	Hostname      string
	Ifaces        []string
	Cwd           string
	Root          []string
	HostPaths     []string `json:"host_paths"`
	RootWritable  bool     `json:"root_writable"`
	TmpWritable   bool     `json:"tmp_writable"`
	CapEff        string   `json:"cap_eff"`
	CapBnd        string   `json:"cap_bnd"`
	NoNewPrivs    string   `json:"no_new_privs"`
	Seccomp       string
	Environ       []string
	Sockets       map[string]string
	ShadowRead    bool `json:"shadow_readable"`
	CwdWritable   bool `json:"cwd_writable"`
}
