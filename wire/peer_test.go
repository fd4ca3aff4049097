package wire

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

// Both ends of a Unix socket see the other's uid and gid: here, this
// process's own.
func TestPeerCred(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := l.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, conn := range []*net.UnixConn{c, s} {
		uid, gid, err := PeerCred(conn)
		if err != nil || uid != os.Getuid() || gid != os.Getgid() {
			t.Errorf("PeerCred = %d, %d, %v; want %d, %d", uid, gid, err, os.Getuid(), os.Getgid())
		}
	}
}
