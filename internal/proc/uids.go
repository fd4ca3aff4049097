package proc

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// Per-execution host uids. Where no pids cgroup bounds an execution's
// processes, RLIMIT_NPROC does, and the kernel counts it per uid (per user
// namespace since Linux 5.14, per host uid before, and per uid of the
// container in the container tier, which has no user namespaces): executions
// sharing one uid would share one count, and a fork bomb in one would stop its
// neighbours from forking. Each execution therefore runs as a uid of its own,
// taken from a dedicated range for as long as any of its processes lives.
// With a uid of its own an execution also cannot signal, ptrace or read the
// /proc files of another.
const (
	// DefaultSandboxUIDBase is the first uid (and gid) of the range. Debian
	// reserves 60000-64999 for ids allocated on demand and nothing of a
	// stock system uses 61000-61999; it is inside 0-65535, so it exists in
	// containers with a user namespace mapping 65536 ids (rootless podman).
	DefaultSandboxUIDBase = 61000
	// DefaultSandboxUIDCount is the size of the range.
	DefaultSandboxUIDCount = 512
)

// UIDPool hands out the uids of the range; an id is given back once the
// execution's last process is gone.
type UIDPool struct {
	base, count int
	free        chan int
}

// NewUIDPool returns a pool of the count uids from base, all free.
func NewUIDPool(base, count int) *UIDPool {
	p := &UIDPool{base: base, count: count, free: make(chan int, count)}
	for i := 0; i < count; i++ {
		p.free <- base + i
	}
	return p
}

// Get takes a free uid. The pool is sized for every execution and spare
// that can exist at once, so it never waits in practice; when it would,
// that is a bug, reported rather than waited on.
func (p *UIDPool) Get() (int, error) {
	select {
	case id := <-p.free:
		return id, nil
	default:
		return 0, fmt.Errorf("all %d sandbox uids from %d are in use", p.count, p.base)
	}
}

// Put gives back a uid that Get returned.
func (p *UIDPool) Put(id int) { p.free <- id }

// Contains reports whether uid belongs to the range.
func (p *UIDPool) Contains(uid int) bool { return uid >= p.base && uid < p.base+p.count }

// CheckUIDRangeUnused refuses a range that anything else on the host uses:
// a user or group of that id, or a live process running as one. Another
// user sharing a uid with an execution could signal it and read its files.
func CheckUIDRangeUnused(base, count, need int) error {
	if count < need {
		return fmt.Errorf("the sandbox uid range has %d ids: want at least two per slot (an execution whose processes are gone keeps its uid until it ends), one per zygote and one more: %d", count, need)
	}
	for id := base; id < base+count; id++ {
		if u, err := user.LookupId(strconv.Itoa(id)); err == nil {
			return fmt.Errorf("uid %d of the sandbox range %d-%d belongs to user %s", id, base, base+count-1, u.Username)
		}
		if g, err := user.LookupGroupId(strconv.Itoa(id)); err == nil {
			return fmt.Errorf("gid %d of the sandbox range %d-%d belongs to group %s", id, base, base+count-1, g.Name)
		}
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat("/proc/"+e.Name(), &st) != nil {
			continue
		}
		if int(st.Uid) >= base && int(st.Uid) < base+count {
			return fmt.Errorf("process %s runs as uid %d of the sandbox range %d-%d (another supervisor with the same range?)", e.Name(), st.Uid, base, base+count-1)
		}
	}
	return nil
}
