package supervisor

import (
	"encoding/binary"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// A client is named by who it is, not by what it says.
func TestClientName(t *testing.T) {
	nobody, err := user.LookupId("65534")
	if err != nil {
		t.Fatalf("uid 65534 has no user on this host: %v", err)
	}
	for _, c := range []struct {
		uid, gw int
		want    string
	}{
		{0, 999, ClientRoot},
		{999, 999, ClientGateway},
		{0, 0, ClientGateway}, // a gateway run as root is the gateway
		{65534, 999, nobody.Username},
		{65534, -1, nobody.Username},
		{3999999, 999, "uid:3999999"},
	} {
		if got := clientName(c.uid, c.gw); got != c.want {
			t.Errorf("clientName(%d, gateway %d) = %q, want %q", c.uid, c.gw, got, c.want)
		}
	}
}

// SO_PEERGROUPS reports the connecting process's supplementary groups: here
// the test's own, as the kernel has them.
func TestPeerGroupsAreTheConnectingProcesss(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := l.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	got, err := peerGroups(sc)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("peer groups %v, want the process's %v", got, want)
	}
	p := peer{uid: 5, gid: 7, groups: []int{8, 9}}
	if !p.member(7) || !p.member(9) || p.member(10) || p.member(-1) {
		t.Fatalf("membership of %+v wrong", p)
	}
}

// grantGroup writes an ACL the kernel accepts, with the named group's entry
// and the mode bits asked for.
func TestGrantGroupACL(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := grantGroup(dir, 0o750, 4242); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m := st.Mode().Perm(); m != 0o750 {
		t.Fatalf("mode %o, want 750", m)
	}
	buf := make([]byte, 256)
	n, err := unix.Getxattr(dir, aclXattr, buf)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for i := 4; i+8 <= n; i += 8 {
		tag, perm, id := binary.LittleEndian.Uint16(buf[i:]), binary.LittleEndian.Uint16(buf[i+2:]), binary.LittleEndian.Uint32(buf[i+4:])
		if tag == aclGroup {
			found = id == 4242 && perm == 5
		}
	}
	if !found {
		t.Fatalf("no group 4242 r-x entry in the ACL %x", buf[:n])
	}
}
