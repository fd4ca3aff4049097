package jail

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/python-executor/python-executor/internal/proc"
)

// ExecCgroup is the cgroup of one execution, under the parent. It carries
// the real limits; nsjail's own NSJAIL.<pid> cgroup inside it has looser
// ones, so limit events are charged here and survive nsjail removing its
// cgroup. Its methods are safe for concurrent use.
type ExecCgroup struct {
	cg     *Cgroups
	id     string
	limits CgroupLimits
	dirs   []string // v1: memory, pids (one when co-mounted); v2: one

	// weighted: setLimits set a CPU weight (the cpu controller is
	// there); background: SetBackground lowered it.
	weighted   bool
	background atomic.Bool

	mu        sync.Mutex // guards oomEvent and oomEvents
	oomEvent  int        // v1: eventfd notified on OOM; -1 when none
	oomEvents uint64     // v1: notifications read from oomEvent so far
}

// nsjailPrefix starts the name of the cgroup nsjail creates for its child
// (NSJAIL.<pid>); exec ids must not look like one.
const nsjailPrefix = "NSJAIL"

// v1Dir is the execution's directory in the v1 hierarchy mounted at mount.
func (e *ExecCgroup) v1Dir(mount string) string {
	return filepath.Join(mount, e.cg.parent, e.id)
}

// NewExec creates the cgroup of one execution, named id (one path
// component, not starting with "NSJAIL" or "idle-"), under the parent, and
// sets the real limits on it, l: the Cgroup section of the execution's Spec
// (see DescribeWithCgroup and ChildSpec), never computed here, so that both
// engines' cgroups come from the one description. In v1:
// memory.limit_in_bytes, memory.memsw.limit_in_bytes when swap is
// accounted, pids.max, cpu.shares when the cpu hierarchy is there, and an
// OOM notification. In v2: memory.max, memory.swap.max, memory.oom.group,
// pids.max and cpu.weight when the cpu controller is enabled; it is left a
// leaf, which both Attach and nsjail's own nested cgroup (see Placement)
// can use. On v1 it may be a cgroup an earlier execution with the same
// limits left empty, renamed (see Recycle). On error nothing is left
// behind.
func (c *Cgroups) NewExec(id string, l CgroupLimits) (*ExecCgroup, error) {
	e, err := c.newExec(id, l, true)
	if err != nil {
		return nil, fmt.Errorf("create cgroup %s/%s: %w", c.parent, id, err)
	}
	return e, nil
}

// NewFreshExec is NewExec without the reuse: it always creates the
// cgroup, for a probe that must know that creating one still works.
func (c *Cgroups) NewFreshExec(id string, l CgroupLimits) (*ExecCgroup, error) {
	e, err := c.newExec(id, l, false)
	if err != nil {
		return nil, fmt.Errorf("create cgroup %s/%s: %w", c.parent, id, err)
	}
	return e, nil
}

func (c *Cgroups) newExec(id string, l CgroupLimits, reuse bool) (*ExecCgroup, error) {
	if c.parent == "" {
		return nil, errors.New("Setup not called")
	}
	if id == "" || id == "." || id == ".." || strings.HasPrefix(id, nsjailPrefix) || strings.HasPrefix(id, idlePrefix) ||
		strings.IndexFunc(id, func(r rune) bool {
			return !(r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
		}) >= 0 {
		return nil, fmt.Errorf("id %q: want letters, digits, '-', '_' or '.', not starting with %s or %s", id, nsjailPrefix, idlePrefix)
	}
	if err := l.validate(); err != nil {
		return nil, err
	}
	if reuse {
		if e := c.reuse(id, l); e != nil {
			return e, nil
		}
	}
	e := &ExecCgroup{cg: c, id: id, limits: l, dirs: c.dirs(id), oomEvent: -1}
	for i, d := range e.dirs {
		if err := os.Mkdir(d, 0o755); err != nil {
			// Only what this call created: an existing cgroup of that
			// name belongs to someone else.
			for _, made := range e.dirs[:i] {
				_ = removeTree(made)
			}
			return nil, err
		}
	}
	if err := e.setLimits(); err != nil {
		_ = e.Remove()
		return nil, err
	}
	return e, nil
}

func (e *ExecCgroup) setLimits() error {
	c, l := e.cg, e.limits
	mem := strconv.FormatInt(l.MemoryBytes, 10)
	pids := strconv.Itoa(l.Pids)
	switch c.mode {
	case CgroupV1:
		md, pd := e.v1Dir(c.memory), e.v1Dir(c.pids)
		if c.cpu != "" {
			if err := c.write(filepath.Join(e.v1Dir(c.cpu), "cpu.shares"), strconv.Itoa(l.CPUShares)); err != nil {
				return err
			}
			e.weighted = true
		}
		if err := c.write(filepath.Join(md, "memory.limit_in_bytes"), mem); err != nil {
			return err
		}
		// memory+swap: the file exists only when the kernel accounts swap.
		if memsw := filepath.Join(md, "memory.memsw.limit_in_bytes"); exists(memsw) {
			if err := c.write(memsw, strconv.FormatInt(l.MemoryBytes+l.SwapBytes, 10)); err != nil {
				return err
			}
		}
		if err := c.write(filepath.Join(pd, "pids.max"), pids); err != nil {
			return err
		}
		// v1 counts the OOM kill in the victim's cgroup, which is nsjail's
		// and gone by the time Stats runs, and memory.failcnt stays 0 when
		// memsw fails first; the OOM notification of this cgroup is the
		// reliable signal.
		fd, err := registerOOMEvent(md)
		if err != nil {
			return err
		}
		e.oomEvent = fd
	case CgroupV2:
		d := e.dirs[0]
		if err := c.write(filepath.Join(d, "memory.max"), mem); err != nil {
			return err
		}
		if sw := filepath.Join(d, "memory.swap.max"); c.create || exists(sw) {
			if err := c.write(sw, strconv.FormatInt(l.SwapBytes, 10)); err != nil {
				return err
			}
		}
		if og := filepath.Join(d, "memory.oom.group"); l.OOMGroup && (c.create || exists(og)) {
			if err := c.write(og, "1"); err != nil {
				return err
			}
		}
		if err := c.write(filepath.Join(d, "pids.max"), pids); err != nil {
			return err
		}
		// Only when the cpu controller is enabled here (see DetectCgroups).
		if w := filepath.Join(d, "cpu.weight"); exists(w) {
			if err := c.write(w, strconv.Itoa(l.CPUWeight)); err != nil {
				return err
			}
			e.weighted = true
		}
		// No controllers are enabled in its subtree_control: under v2's
		// no-internal-processes rule a cgroup that delegates controllers
		// cannot take processes, and the warm engine attaches its child
		// right here (Attach). nsjail, which nests its own NSJAIL.<pid>
		// cgroup inside, enables the controllers it uses itself; the
		// cgroup is still empty then, so that cannot fail.
	}
	return nil
}

// registerOOMEvent asks cgroup v1 to signal an eventfd when the memory
// cgroup dir runs out of memory (Documentation/admin-guide/cgroup-v1/
// memory.rst, "OOM Control").
func registerOOMEvent(dir string) (int, error) {
	ctlPath := filepath.Join(dir, "memory.oom_control")
	ctl, err := unix.Open(ctlPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: ctlPath, Err: err}
	}
	defer unix.Close(ctl)
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return -1, fmt.Errorf("eventfd: %w", err)
	}
	// The kernel keeps its own reference to the control file.
	reg := fmt.Sprintf("%d %d", efd, ctl)
	if err := writeExisting(filepath.Join(dir, "cgroup.event_control"), reg); err != nil {
		unix.Close(efd)
		return -1, fmt.Errorf("register OOM notification: %w", err)
	}
	return efd, nil
}

// ID returns the execution's cgroup name.
func (e *ExecCgroup) ID() string { return e.id }

// Placement returns what Render needs to make nsjail create its
// NSJAIL.<pid> cgroup inside this one. nsjail's limits are one MiB and one
// task looser than the real ones, so that the real limits are hit first and
// their events are recorded here, where Stats reads them after nsjail has
// removed its own cgroup.
func (e *ExecCgroup) Placement() *Placement {
	p := &Placement{
		Mode:      e.cg.mode,
		MemoryMax: e.limits.MemoryBytes + mib,
		PidsMax:   e.limits.Pids + 1,
	}
	switch e.cg.mode {
	case CgroupV1:
		p.MemoryMount = e.cg.memory
		p.PidsMount = e.cg.pids
		p.CPUMount = e.cg.cpu
		p.Parent = e.cg.parent + "/" + e.id
	case CgroupV2:
		p.Dir = e.dirs[0]
	}
	return p
}

// Stats is what an execution's cgroup recorded. Fields the host cannot
// provide are zero; each field says when.
type Stats struct {
	// PeakMemoryBytes is the highest memory use (v1
	// memory.max_usage_in_bytes; v2 memory.peak, Linux 5.19+, else 0).
	PeakMemoryBytes int64
	// OOMKilled reports whether the memory limit made the kernel kill a
	// process (v1: the cgroup's OOM notification or oom_kill count; v2:
	// oom_kill in memory.events).
	OOMKilled bool
	// PidsLimitHit reports whether a fork or clone failed on the pids
	// limit (pids.events "max"; in v1, where that count stays in nsjail's
	// cgroup, also when pids.peak reached the limit, Linux 6.12+).
	PidsLimitHit bool
	// CPUTime is the CPU time used (v2 cpu.stat usage_usec). It is 0 in v1,
	// where nsjail 3.6 puts the jail in no cpuacct cgroup: use the rusage
	// of nsjail, which includes the jail's processes, instead.
	CPUTime time.Duration
}

// Stats reads the execution's statistics. Call it after nsjail has exited
// and before Remove.
func (e *ExecCgroup) Stats() (Stats, error) {
	s, err := e.stats()
	if err != nil {
		return Stats{}, fmt.Errorf("read cgroup %s stats: %w", e.id, err)
	}
	return s, nil
}

func (e *ExecCgroup) stats() (Stats, error) {
	var s Stats
	switch e.cg.mode {
	case CgroupV1:
		md, pd := e.v1Dir(e.cg.memory), e.v1Dir(e.cg.pids)
		peak, err := readInt(filepath.Join(md, "memory.max_usage_in_bytes"))
		if err != nil {
			return s, err
		}
		s.PeakMemoryBytes = peak
		oc, err := readKeyed(filepath.Join(md, "memory.oom_control"))
		if err != nil {
			return s, err
		}
		s.OOMKilled = oc["oom_kill"] > 0 || e.readOOMEvents() > 0
		hit, err := pidsHit(pd, e.limits.Pids)
		if err != nil {
			return s, err
		}
		s.PidsLimitHit = hit
	case CgroupV2:
		d := e.dirs[0]
		if peak, err := readInt(filepath.Join(d, "memory.peak")); err == nil {
			s.PeakMemoryBytes = peak
		} else if !errors.Is(err, fs.ErrNotExist) {
			return s, err
		}
		ev, err := readKeyed(filepath.Join(d, "memory.events"))
		if err != nil {
			return s, err
		}
		s.OOMKilled = ev["oom_kill"] > 0
		hit, err := pidsHit(d, e.limits.Pids)
		if err != nil {
			return s, err
		}
		s.PidsLimitHit = hit
		cpu, err := readKeyed(filepath.Join(d, "cpu.stat"))
		if err != nil {
			return s, err
		}
		s.CPUTime = time.Duration(cpu["usage_usec"]) * time.Microsecond
	}
	return s, nil
}

// readOOMEvents adds what the OOM eventfd counted since the last call and
// returns the total.
func (e *ExecCgroup) readOOMEvents() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.oomEvent < 0 {
		return e.oomEvents
	}
	var buf [8]byte
	if n, err := unix.Read(e.oomEvent, buf[:]); err == nil && n == 8 {
		e.oomEvents += binary.NativeEndian.Uint64(buf[:])
	}
	return e.oomEvents
}

func pidsHit(dir string, limit int) (bool, error) {
	ev, err := readKeyed(filepath.Join(dir, "pids.events"))
	if err != nil {
		return false, err
	}
	if ev["max"] > 0 {
		return true, nil
	}
	peak, err := readInt(filepath.Join(dir, "pids.peak"))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return peak >= int64(limit), nil
}

// Attach moves the process pid (a host pid) into the execution's cgroup in
// every hierarchy, for engines that start the execution's first process
// themselves rather than through nsjail (the warm engine's zygote children).
// Its descendants are born inside. Call it before the process creates its
// cgroup namespace, so that the namespace is rooted here.
func (e *ExecCgroup) Attach(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("attach pid %d to cgroup %s: want a positive pid", pid, e.id)
	}
	for _, d := range e.dirs {
		if err := writeExisting(filepath.Join(d, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("attach pid %d to cgroup %s: %w", pid, e.id, err)
		}
	}
	return nil
}

// Kill sends SIGKILL to every process in the execution's cgroup and its
// children, until none is left or two seconds have passed.
func (e *ExecCgroup) Kill() error {
	var errs []error
	for _, d := range e.dirs {
		errs = append(errs, killTree(d, e.cg.mode))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("kill cgroup %s: %w", e.id, err)
	}
	return nil
}

// RemoveIfEmpty removes the execution's cgroup when nothing is left in it,
// with one rmdir per hierarchy: the kernel refuses it (EBUSY) while a task
// or a child cgroup is there, so no listing is needed to know. That is the
// common end of an execution whose processes are all reaped. It reports
// whether the cgroup is gone; when it is not, Kill and Remove do the rest.
func (e *ExecCgroup) RemoveIfEmpty() bool {
	gone := true
	for _, d := range e.dirs {
		if err := unix.Rmdir(d); err != nil && !errors.Is(err, unix.ENOENT) {
			gone = false
		}
	}
	if gone {
		e.closeOOMEvent()
	}
	return gone
}

func (e *ExecCgroup) closeOOMEvent() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.oomEvent >= 0 {
		unix.Close(e.oomEvent)
		e.oomEvent = -1
	}
}

// Remove removes nsjail's NSJAIL.* cgroups left inside the execution's
// cgroup, then the cgroup itself, retrying briefly while the last tasks
// exit. Kill first if processes may be left. A cgroup already gone is not
// an error.
func (e *ExecCgroup) Remove() error {
	e.closeOOMEvent()
	var errs []error
	for _, d := range e.dirs {
		errs = append(errs, removeTree(d))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove cgroup %s: %w", e.id, err)
	}
	return nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func readInt(p string) (int64, error) {
	b, err := proc.ReadKernelFile(p)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return -1, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", p, err)
	}
	return n, nil
}

// readKeyed parses a flat keyed file ("key value" per line).
func readKeyed(p string) (map[string]int64, error) {
	b, err := proc.ReadKernelFile(p)
	if err != nil {
		return nil, err
	}
	m := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", p, err)
		}
		m[f[0]] = n
	}
	return m, nil
}
