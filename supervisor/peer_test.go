package supervisor

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
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
	if got := aclGroups(t, dir); len(got) != 1 || got[4242] != 5 {
		t.Fatalf("ACL named groups %v, want 4242 r-x", got)
	}
}

// aclGroups returns the named-group entries of path's ACL (gid to permission
// bits); none when it has no ACL.
func aclGroups(t *testing.T, path string) map[uint32]uint16 {
	t.Helper()
	buf := make([]byte, 1024)
	n, err := unix.Getxattr(path, aclXattr, buf)
	if errors.Is(err, unix.ENODATA) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	groups := map[uint32]uint16{}
	for i := 4; i+8 <= n; i += 8 {
		if binary.LittleEndian.Uint16(buf[i:]) == aclGroup {
			groups[binary.LittleEndian.Uint32(buf[i+4:])] = binary.LittleEndian.Uint16(buf[i+2:])
		}
	}
	return groups
}

// Listen gives the client group the gateway group's access to the socket
// and its directory, and a later Listen without a client group takes it
// back.
func TestListenGrantsTheClientGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (Listen chowns the socket)")
	}
	g, err := user.LookupGroup("nogroup")
	if err != nil {
		t.Fatalf("group nogroup: %v", err)
	}
	gid, _ := strconv.Atoi(g.Gid)
	dir := filepath.Join(t.TempDir(), "sock")
	cfg := Config{SocketPath: filepath.Join(dir, "s.sock"), GatewayUID: -1, GatewayGID: -1, ClientGroup: "nogroup"}
	l, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := aclGroups(t, dir); len(got) != 1 || got[uint32(gid)] != 5 {
		t.Errorf("socket dir ACL groups %v, want %d r-x", got, gid)
	}
	if got := aclGroups(t, cfg.SocketPath); len(got) != 1 || got[uint32(gid)] != 6 {
		t.Errorf("socket ACL groups %v, want %d rw-", got, gid)
	}
	for path, want := range map[string]os.FileMode{dir: 0o750, cfg.SocketPath: 0o660} {
		if st, err := os.Stat(path); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %o", path, st.Mode().Perm(), err, want)
		}
	}
	l.Close()
	cfg.ClientGroup = ""
	if l, err = Listen(cfg); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := aclGroups(t, dir); len(got) != 0 {
		t.Errorf("socket dir keeps the client group's ACL without -client-group: %v", got)
	}
	if got := aclGroups(t, cfg.SocketPath); len(got) != 0 {
		t.Errorf("socket has an ACL without -client-group: %v", got)
	}
	cfg.ClientGroup = "pyexec-no-such-group"
	if _, err := Listen(cfg); err == nil {
		t.Error("Listen accepted a client group that does not exist")
	}
}

// The peer check admits root, exactly the gateway's uid and gid, and members
// of the client group by primary or supplementary group; nobody else.
func TestPeerAllowed(t *testing.T) {
	s := &Server{cfg: Config{GatewayUID: 999, GatewayGID: 995}, clientGID: 1200}
	for _, c := range []struct {
		p    peer
		want bool
	}{
		{peer{uid: 0, gid: 0}, true},
		{peer{uid: 999, gid: 995}, true},
		{peer{uid: 999, gid: 996}, false}, // the gateway's uid with another group
		{peer{uid: 1001, gid: 1200}, true},
		{peer{uid: 1001, gid: 1001, groups: []int{5, 1200}}, true},
		{peer{uid: 1001, gid: 1001, groups: []int{5, 1201}}, false},
		{peer{uid: 1001, gid: 995}, false}, // the gateway's group is not enough
	} {
		if got := s.peerAllowed(c.p); got != c.want {
			t.Errorf("peerAllowed(%+v) = %v, want %v", c.p, got, c.want)
		}
	}
	s.clientGID = -1
	if s.peerAllowed(peer{uid: 1001, gid: 1200, groups: []int{1200}}) {
		t.Error("a group member admitted without a client group")
	}
}
