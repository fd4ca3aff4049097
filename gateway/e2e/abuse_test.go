package e2e

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/python-executor/python-executor/internal/supervisortest"
)

// socketFamiliesScript tries to create a socket of every family a script
// might reach for. AF_VSOCK reaches a VM host's hypervisor outside every
// network namespace; AF_ALG, RDS, TIPC and friends are kernel attack surface.
const socketFamiliesScript = `
import errno, socket
def make(family, type, proto=0):
    try:
        socket.socket(family, type, proto).close()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
def pair(family, type):
    try:
        a, b = socket.socketpair(family, type)
        a.close(); b.close()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
def connect():
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect(("10.0.0.1", 80))
        return "connected"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    finally:
        s.close()
def main():
    return {
        "unix": make(socket.AF_UNIX, socket.SOCK_STREAM),
        "inet": make(socket.AF_INET, socket.SOCK_STREAM),
        "inet_udp": make(socket.AF_INET, socket.SOCK_DGRAM),
        "inet6": make(socket.AF_INET6, socket.SOCK_STREAM),
        "route_netlink": make(16, socket.SOCK_RAW, 0),
        "pair_unix": pair(socket.AF_UNIX, socket.SOCK_STREAM),
        "getaddrinfo": str(socket.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)[0][4]),
        "connect": connect(),
        "vsock": make(40, socket.SOCK_STREAM),
        "alg": make(38, socket.SOCK_SEQPACKET),
        "rds": make(21, socket.SOCK_SEQPACKET),
        "tipc": make(30, socket.SOCK_RDM),
        "packet": make(17, socket.SOCK_RAW),
        "xdp": make(44, socket.SOCK_RAW),
        "can": make(29, socket.SOCK_RAW),
        "bluetooth": make(31, socket.SOCK_STREAM),
        "audit_netlink": make(16, socket.SOCK_RAW, 9),
        "pair_tipc": pair(30, socket.SOCK_SEQPACKET),
    }
`

// Only the socket families Python needs can be created in a jail; every
// other one is refused as if the kernel lacked it, on both engines.
func TestSocketFamilies(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		st := supervisortest.StartStack(t, engine)
		r := execute(t, st.Gateway.URL, socketFamiliesScript, nil)
		if serviceTier(t, st.Gateway.URL) == "container" {
			// No network namespace to contain a socket: seccomp refuses
			// socket(2) of every family (TestContainerTierIsolation
			// asserts each), so the script's first socket raises.
			r.wantError(t, 500, "exception")
			if !strings.HasPrefix(r.Body.Error.Message, "PermissionError: [Errno 1]") {
				t.Fatalf("message %q, want EPERM from seccomp", r.Body.Error.Message)
			}
			return
		}
		got := mustJSON(r.wantOK(t))
		const want = `{
			"unix": "ok", "inet": "ok", "inet_udp": "ok", "inet6": "ok", "route_netlink": "ok",
			"pair_unix": "ok", "getaddrinfo": "('127.0.0.1', 80)", "connect": "ENETUNREACH",
			"vsock": "EAFNOSUPPORT", "alg": "EAFNOSUPPORT", "rds": "EAFNOSUPPORT",
			"tipc": "EAFNOSUPPORT", "packet": "EAFNOSUPPORT", "xdp": "EAFNOSUPPORT",
			"can": "EAFNOSUPPORT", "bluetooth": "EAFNOSUPPORT", "audit_netlink": "EAFNOSUPPORT",
			"pair_tipc": "EAFNOSUPPORT"}`
		if !sameJSON([]byte(got), []byte(want)) {
			t.Fatalf("socket families in the jail: %s\nwant %s", got, want)
		}
	})
}

// cpuHogScript keeps 60 processes busy for a while and says when it started
// and stopped spinning, and how many processes it had.
const cpuHogScript = `
import os, time
def spin(until):
    while time.time() < until:
        pass
def main():
    # The children wait for the last fork, so forking is not slowed down by
    # the spinning it starts.
    r, w = os.pipe()
    kids = 0
    for _ in range(59):
        if os.fork() == 0:
            os.close(w)
            os.read(r, 1)
            spin(float(open("/tmp/until").read()))
            os._exit(0)
        kids += 1
    until = time.time() + 10
    with open("/tmp/until", "w") as f:
        f.write(repr(until))
    start = time.time()
    os.close(w)
    spin(until)
    for _ in range(kids):
        os.wait()
    return {"processes": kids + 1, "start": start, "end": time.time()}
`

// cpuLoopScript runs a fixed CPU-bound loop and reports its own wall time.
const cpuLoopScript = `
import time
def main():
    start = time.time()
    t = time.perf_counter()
    n = 0
    for i in range(8000000):
        n += i
    return {"wall": time.perf_counter() - t, "start": start, "end": time.time()}
`

type span struct {
	Wall       float64 `json:"wall"`
	Start, End float64
	Processes  int `json:"processes"`
}

func runSpan(t *testing.T, url, script string, extra map[string]any) span {
	t.Helper()
	r := execute(t, url, script, extra)
	r.wantOK(t)
	var s span
	if err := json.Unmarshal(r.Body.Result, &s); err != nil {
		t.Fatalf("result %s: %v", r.Body.Result, err)
	}
	return s
}

// Every execution gets a fair share of the CPU, not one per process: a
// neighbour running 60 busy processes slows a single-process loop down by
// a small factor at most. Without a cpu cgroup per execution the warm
// engine's loop ran about ten times slower here; the cold engine's jails
// were saved only by the kernel's autogroups (each nsjail is its own
// session), which do not apply inside a container's cpu cgroup.
func TestCPUFairness(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		st := supervisortest.StartStack(t, engine, "-slots", "4")
		url := st.Gateway.URL
		runSpan(t, url, cpuLoopScript, nil) // warm-up
		// The host is shared (other work comes and goes): the loop's time
		// alone is the median of runs before and after the contended ones.
		var alones []float64
		measureAlone := func() {
			for range 3 {
				alones = append(alones, runSpan(t, url, cpuLoopScript, nil).Wall)
			}
		}
		measureAlone()
		// The loop runs back to back while the hog spins; only the runs
		// wholly inside the hog's spin (all 60 processes busy) count.
		var hog span
		hogDone := make(chan struct{})
		go func() {
			defer close(hogDone)
			hog = runSpan(t, url, cpuHogScript, map[string]any{"timeout": 25})
		}()
		time.Sleep(time.Second)
		var runs []span
	loop:
		for {
			select {
			case <-hogDone:
				break loop
			default:
			}
			runs = append(runs, runSpan(t, url, cpuLoopScript, nil))
		}
		if hog.Processes != 60 {
			t.Fatalf("the hog ran %d processes, want 60", hog.Processes)
		}
		var walls []float64
		for _, r := range runs {
			if r.Start >= hog.Start && r.End <= hog.End {
				walls = append(walls, r.Wall)
			}
		}
		if len(walls) == 0 {
			t.Fatalf("only %d of %d loops ran while the hog's 60 processes spun (from %.2f to %.2f): the test measured nothing",
				len(walls), len(runs), hog.Start, hog.End)
		}
		measureAlone()
		slices.Sort(alones)
		alone := alones[len(alones)/2]
		slices.Sort(walls)
		contended := walls[len(walls)/2]
		t.Logf("loop alone %.3fs, beside 60 busy processes %.3fs (median of %d: %.1fx)", alone, contended, len(walls), contended/alone)
		if contended > 3*alone {
			t.Errorf("beside an execution with 60 busy processes the loop took %.3fs (median), %.1fx its %.3fs alone; want at most 3x",
				contended, contended/alone, alone)
		}
	})
}
