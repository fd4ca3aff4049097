package supervisor

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// lockDir holds the supervisors' instance locks (see lockInstance):
// root's own directory, so that no other user can create or hold a lock
// and keep the service from starting.
const lockDir = "/run/python-executor-locks"

// instanceLock is what one running supervisor holds: an exclusive flock on
// one file per host resource it owns.
type instanceLock struct {
	files []*os.File
}

// lockInstance makes sure no other supervisor on this host uses the same
// socket, cgroup parent or staging directory, before anything of the host
// is touched: a second supervisor would otherwise sweep the first one's
// cgroups as leftovers (killing its zygotes and executions), unmount its
// staging directory and, on its way out, remove the cgroup parent the
// first one still creates its cgroups under, leaving that service unable
// to run anything until it restarts. The check on the socket in Listen
// comes too late for that, and two supervisors starting at once both pass
// it. The locks are flocks: the kernel drops them when the process dies,
// however it dies, so a crash leaves no stale lock behind.
func lockInstance(cfg Config) (*instanceLock, error) {
	dir := lockDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("instance lock: %w", err)
	}
	// MkdirAll leaves an existing directory as it is: it must be root's
	// and closed to everyone else, or another user could hold a lock.
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return nil, fmt.Errorf("instance lock: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != 0 || st.Mode&0o077 != 0 {
		return nil, fmt.Errorf("instance lock: %s must be a directory owned by root with mode 0700 (it is uid %d, mode %o)", dir, st.Uid, st.Mode&0o7777)
	}
	socket, err := filepath.Abs(cfg.SocketPath)
	if err != nil {
		return nil, fmt.Errorf("instance lock: %w", err)
	}
	stage, err := filepath.Abs(cfg.StageDir)
	if err != nil {
		return nil, fmt.Errorf("instance lock: %w", err)
	}
	l := &instanceLock{}
	for _, r := range []struct{ what, value string }{
		{"socket", socket},
		{"cgroup parent", filepath.Clean("/" + cfg.CgroupParent)},
		{"staging directory", stage},
	} {
		f, err := lockFile(dir, r.what+"\x00"+r.value)
		if err != nil {
			l.release()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("another supervisor is running with the same %s (%s)%s", r.what, r.value, holder(f))
			}
			return nil, fmt.Errorf("instance lock for the %s %s: %w", r.what, r.value, err)
		}
		l.files = append(l.files, f)
	}
	return l, nil
}

// lockFile takes the exclusive lock of key's file in dir, and writes this
// process's id into it for whoever finds it taken. On EWOULDBLOCK the file
// is returned open (for holder), with the error.
func lockFile(dir, key string) (*os.File, error) {
	sum := sha256.Sum256([]byte(key))
	path := filepath.Join(dir, hex.EncodeToString(sum[:12])+".lock")
	// O_NOFOLLOW: nobody else can write in dir, but a lock is never
	// worth following a link for.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return f, err
		}
		f.Close()
		return nil, err
	}
	// The files stay when the supervisor stops (a few bytes each, one per
	// socket, parent and staging directory ever used): removing one
	// would let a supervisor that opened it just before lock an inode
	// that no later one sees.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// holder names the process that holds the lock of f, from what it wrote,
// and closes f.
func holder(f *os.File) string {
	if f == nil {
		return ""
	}
	defer f.Close()
	var b [16]byte
	n, _ := f.ReadAt(b[:], 0)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n])))
	if err != nil || pid <= 0 {
		return ""
	}
	return fmt.Sprintf(": pid %d", pid)
}

// release drops the locks.
func (l *instanceLock) release() {
	for _, f := range l.files {
		f.Close()
	}
	l.files = nil
}
