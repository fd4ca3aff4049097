package supervisor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os/user"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Client names of the two built-in clients; any other admitted peer is
// named after its user (see clientName).
const (
	ClientGateway = "gateway"
	ClientRoot    = "root"
)

// lookupGroup resolves a group name (or a numeric gid) to its gid.
func lookupGroup(name string) (int, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		if _, nerr := strconv.Atoi(name); nerr == nil {
			g, err = user.LookupGroupId(name)
		}
	}
	if err != nil {
		return -1, err
	}
	return strconv.Atoi(g.Gid)
}

// peer is who is on the other end of a connection, as the kernel recorded it
// when the peer connected: a later setuid or setgroups in the peer changes
// none of it, and neither does the peer's pid being reused.
type peer struct {
	uid, gid int
	groups   []int // supplementary groups; nil when not read
}

// member reports whether the peer belongs to gid, as primary or
// supplementary group.
func (p peer) member(gid int) bool {
	if gid < 0 {
		return false
	}
	if p.gid == gid {
		return true
	}
	for _, g := range p.groups {
		if g == gid {
			return true
		}
	}
	return false
}

// peerGroups reads the supplementary groups the peer had when it connected
// (SO_PEERGROUPS, Linux 4.13). That is preferred to reading
// /proc/<pid>/status at accept time: the kernel snapshot cannot race with
// the peer exiting and its pid being reused, nor with the peer dropping or
// changing groups after connecting; it also needs no /proc.
func peerGroups(c *net.UnixConn) ([]int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var groups []int
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		// Start with room for 64 groups; the kernel says (ERANGE) when
		// it needs more, and how much.
		buf := make([]byte, 64*4)
		for range 2 {
			n := uint32(len(buf))
			_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_PEERGROUPS,
				uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
			if errno == syscall.ERANGE && int(n) > len(buf) {
				buf = make([]byte, n)
				continue
			}
			if errno != 0 {
				gerr = fmt.Errorf("SO_PEERGROUPS: %w", errno)
				return
			}
			groups = make([]int, 0, n/4)
			for i := 0; i+4 <= int(n); i += 4 {
				groups = append(groups, int(binary.NativeEndian.Uint32(buf[i:])))
			}
			return
		}
		gerr = errors.New("SO_PEERGROUPS: the group list kept growing")
	}); err != nil {
		return nil, err
	}
	return groups, gerr
}

// clientName is how an admitted peer is named in logs and metrics, and the
// unit admission shares slots by: "gateway" for the gateway's uid, "root"
// for uid 0, else the peer's user name, or "uid:<n>" when it has none.
func clientName(uid, gatewayUID int) string {
	switch {
	case gatewayUID >= 0 && uid == gatewayUID:
		return ClientGateway
	case uid == 0:
		return ClientRoot
	}
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil && u.Username != "" {
		return u.Username
	}
	return "uid:" + strconv.Itoa(uid)
}

// POSIX ACL extended attribute layout (the kernel's posix_acl_xattr.h).
const (
	aclXattr     = "system.posix_acl_access"
	aclVersion   = 2
	aclUserObj   = 0x01
	aclGroupObj  = 0x04
	aclGroup     = 0x08
	aclMask      = 0x10
	aclOther     = 0x20
	aclUndefined = 0xffffffff
)

// grantGroup gives gid the same access to path as the file's owning group
// has, through a POSIX ACL, on top of the mode bits mode. The socket can
// have only one owning group, and that stays the gateway's: an ACL entry
// lets a second group in without making the gateway a member of it or the
// socket's group anyone else's.
func grantGroup(path string, mode uint32, gid int) error {
	perm := func(shift uint) uint16 { return uint16(mode>>shift) & 7 }
	entries := []struct {
		tag  uint16
		perm uint16
		id   uint32
	}{
		{aclUserObj, perm(6), aclUndefined},
		{aclGroupObj, perm(3), aclUndefined},
		{aclGroup, perm(3), uint32(gid)},
		{aclMask, perm(3), aclUndefined},
		{aclOther, perm(0), aclUndefined},
	}
	buf := binary.LittleEndian.AppendUint32(nil, aclVersion)
	for _, e := range entries {
		buf = binary.LittleEndian.AppendUint16(buf, e.tag)
		buf = binary.LittleEndian.AppendUint16(buf, e.perm)
		buf = binary.LittleEndian.AppendUint32(buf, e.id)
	}
	if err := unix.Setxattr(path, aclXattr, buf, 0); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("%s: its file system does not support POSIX ACLs, which a client group needs (put the socket on one that does, e.g. tmpfs or ext4): %w", path, err)
		}
		return fmt.Errorf("%s: set ACL: %w", path, err)
	}
	return nil
}
