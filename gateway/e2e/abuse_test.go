package e2e

import (
	"testing"

	"github.com/python-executor/python-executor/supervisor/supervisortest"
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
