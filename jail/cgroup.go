package jail

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// CgroupMode is the cgroup interface the host offers. The zero value means
// not yet detected.
type CgroupMode int

// Cgroup modes. Values are explicit and append-only.
const (
	// CgroupNone: neither interface can be used; limits fall back to
	// rlimits. Cgroups.Reason says why.
	CgroupNone CgroupMode = 1
	// CgroupV1: the memory and pids controllers of the legacy hierarchies.
	CgroupV1 CgroupMode = 2
	// CgroupV2: the unified hierarchy with the memory and pids controllers.
	CgroupV2 CgroupMode = 3
)

// String returns "none", "v1" or "v2".
func (m CgroupMode) String() string {
	switch m {
	case CgroupNone:
		return "none"
	case CgroupV1:
		return "v1"
	case CgroupV2:
		return "v2"
	}
	return "CgroupMode(" + strconv.Itoa(int(m)) + ")"
}

// nsjailPrefix starts the name of the cgroup nsjail creates for its child
// (NSJAIL.<pid>); exec ids must not look like one.
const nsjailPrefix = "NSJAIL"

// Timeouts of Kill and Remove: a SIGKILLed task leaves its cgroup within
// milliseconds; longer means something is wrong and the caller should know.
const (
	killTimeout   = 2 * time.Second
	removeTimeout = time.Second
	pollInterval  = 5 * time.Millisecond
)

// Cgroups is the host's cgroup setup, as detected at start-up, and the
// parent cgroup under which every execution gets its own. Create it with
// DetectCgroups, call Setup once, then Sweep once; after that NewExec may
// be called from many goroutines.
type Cgroups struct {
	mode   CgroupMode
	reason string
	root   string

	// v1: mount points of the memory and pids hierarchies ("" when absent).
	memory, pids string
	// v1: mount point of the cpu hierarchy ("" when absent), for a fair
	// CPU share per execution.
	cpu string
	// v2: the controllers Setup enables for the execution cgroups.
	v2controllers []string

	// parent is the path of the executions' parent cgroup relative to each
	// hierarchy; set by Setup.
	parent string

	// create lets the tests use a plain directory as a fake cgroupfs: it
	// makes writes create the files the kernel would provide.
	create bool
	// writeFault, in tests, fails writes the way the kernel would.
	writeFault func(path, value string) error
	// selfCgroup, in tests, replaces /proc/self/cgroup.
	selfCgroup string
}

// DetectCgroups finds which cgroup interface is usable under root (usually
// "/sys/fs/cgroup") by reading /proc/self/mountinfo and the controllers
// files. v2 means a cgroup2 filesystem mounted at root whose
// cgroup.controllers lists memory and pids; v1 means memory and pids
// hierarchies mounted under root (the hybrid layout, with an empty cgroup2
// at root/unified, is v1). Anything else gives CgroupNone with a Reason.
// It fails only when mountinfo cannot be read.
func DetectCgroups(root string) (*Cgroups, error) {
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("detect cgroups: %w", err)
	}
	return detectCgroups(root, info)
}

func detectCgroups(root string, mountinfo []byte) (*Cgroups, error) {
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("detect cgroups: root %q: want an absolute path", root)
	}
	root = filepath.Clean(root)
	c := &Cgroups{root: root}
	mounts, err := parseMountinfo(mountinfo)
	if err != nil {
		return nil, fmt.Errorf("detect cgroups: %w", err)
	}
	var v2at bool
	for _, m := range mounts {
		if m.point != root && !strings.HasPrefix(m.point, root+"/") {
			continue
		}
		switch m.fstype {
		case "cgroup2":
			if m.point == root {
				v2at = true
			}
		case "cgroup":
			for _, opt := range strings.Split(m.superOpts, ",") {
				switch opt {
				case "memory":
					c.memory = m.point
				case "pids":
					c.pids = m.point
				case "cpu":
					c.cpu = m.point
				}
			}
		}
	}
	if v2at {
		avail, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
		if err != nil {
			c.mode, c.reason = CgroupNone, fmt.Sprintf("cgroup2 at %s: %v", root, err)
			return c, nil
		}
		have := strings.Fields(string(avail))
		if !slices.Contains(have, "memory") || !slices.Contains(have, "pids") {
			c.mode = CgroupNone
			c.reason = fmt.Sprintf("cgroup2 at %s offers controllers %q, want memory and pids", root, have)
			return c, nil
		}
		c.mode = CgroupV2
		c.v2controllers = []string{"memory", "pids"}
		// cpu only adds fair sharing between executions; cpu.stat's usage
		// is there without it.
		if slices.Contains(have, "cpu") {
			c.v2controllers = append(c.v2controllers, "cpu")
		}
		return c, nil
	}
	switch {
	case c.memory == "" && c.pids == "":
		c.mode = CgroupNone
		c.reason = fmt.Sprintf("no cgroup2 with controllers at %s and no cgroup v1 memory or pids hierarchy under it", root)
	case c.memory == "":
		c.mode, c.reason = CgroupNone, fmt.Sprintf("no cgroup v1 memory hierarchy under %s", root)
	case c.pids == "":
		c.mode, c.reason = CgroupNone, fmt.Sprintf("no cgroup v1 pids hierarchy under %s", root)
	default:
		c.mode = CgroupV1
	}
	return c, nil
}

type mountInfo struct{ point, fstype, superOpts string }

// parseMountinfo reads the fields it needs from /proc/self/mountinfo lines:
// "id parent maj:min root point opts [optional...] - fstype source superopts".
func parseMountinfo(b []byte) ([]mountInfo, error) {
	var out []mountInfo
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := slices.Index(f, "-")
		if len(f) < 5 || sep < 6 || len(f) < sep+4 {
			return nil, fmt.Errorf("parse mountinfo line %q", sc.Text())
		}
		out = append(out, mountInfo{point: unescapeMountinfo(f[4]), fstype: f[sep+1], superOpts: f[sep+3]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse mountinfo: %w", err)
	}
	return out, nil
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Mode reports the detected interface.
func (c *Cgroups) Mode() CgroupMode { return c.mode }

// Reason says why the mode is CgroupNone; it is empty otherwise.
func (c *Cgroups) Reason() string { return c.reason }

// Setup creates the parent cgroup (a relative path such as
// "python-executor") in each hierarchy used. In v2 it enables the memory and
// pids controllers (and cpu when offered) in the subtree_control of the root,
// of every ancestor and of parent itself, so that each execution cgroup has
// them. It fails when the controllers cannot be delegated, for example
// because an ancestor other than the root holds processes (cgroup v2's "no
// internal processes" rule). It is idempotent.
func (c *Cgroups) Setup(parent string) error {
	if err := c.setup(parent); err != nil {
		return fmt.Errorf("set up cgroup %s: %w", parent, err)
	}
	return nil
}

func (c *Cgroups) setup(parent string) error {
	if err := checkRelCgroup(parent); err != nil {
		return err
	}
	switch c.mode {
	case CgroupV1:
		for _, h := range c.v1Hierarchies() {
			if err := os.MkdirAll(filepath.Join(h, parent), 0o755); err != nil {
				return err
			}
		}
		// Limits on an execution cgroup bind nsjail's child cgroup only
		// with hierarchical accounting (always on since Linux 6.x).
		uh := filepath.Join(c.memory, parent, "memory.use_hierarchy")
		if b, err := os.ReadFile(uh); err == nil && strings.TrimSpace(string(b)) == "0" {
			if err := c.write(uh, "1"); err != nil {
				return fmt.Errorf("enable hierarchical memory accounting: %w", err)
			}
		}
	case CgroupV2:
		dir := c.root
		own := c.ownCgroup()
		for _, part := range strings.Split(parent, "/") {
			err := c.enableControllers(dir)
			if errors.Is(err, unix.EBUSY) && (dir == c.root || dir == own) {
				// v2 delegates nothing from a cgroup with processes.
				// Two such cgroups are ours to reorganise: the root of
				// a cgroup namespace (a container's, holding the
				// container's processes; the host's real root is
				// exempt from the rule), and the supervisor's own
				// cgroup (a systemd unit with Delegate=yes, under
				// which the parent was placed). Any other busy
				// ancestor is someone else's and is only named.
				// A process forked there while the others were being
				// moved (a shell's sleep) keeps it busy: move again.
				for try := 0; try < evacuateTries && errors.Is(err, unix.EBUSY); try++ {
					if eerr := c.evacuate(dir); eerr != nil {
						return fmt.Errorf("%w; moving its processes to a leaf cgroup failed: %v", err, eerr)
					}
					err = c.enableControllers(dir)
				}
			}
			if err != nil {
				return err
			}
			dir = filepath.Join(dir, part)
			if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
		}
		if err := c.enableControllers(dir); err != nil {
			return err
		}
	default:
		return fmt.Errorf("cgroups unusable (%s): %s", c.mode, c.reason)
	}
	c.parent = parent
	return nil
}

// checkRelCgroup accepts a clean relative path without "..".
func checkRelCgroup(p string) error {
	if p == "" || filepath.IsAbs(p) || filepath.Clean(p) != p || p == "." ||
		slices.Contains(strings.Split(p, "/"), "..") || strings.ContainsAny(p, "\x00\n") {
		return fmt.Errorf("cgroup path %q: want a clean relative path", p)
	}
	return nil
}

// v1Hierarchies lists the v1 hierarchies in which executions get a cgroup:
// memory, pids and, when mounted, cpu (each once when co-mounted). Not
// cpuacct on its own: nsjail 3.6 joins no cpuacct hierarchy.
func (c *Cgroups) v1Hierarchies() []string {
	out := []string{c.memory}
	for _, h := range []string{c.pids, c.cpu} {
		if h != "" && !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}

// v1Dir is the execution's directory in the v1 hierarchy mounted at mount.
func (e *ExecCgroup) v1Dir(mount string) string {
	return filepath.Join(mount, e.cg.parent, e.id)
}

// cpuShares is every v1 execution cgroup's cpu.shares, and cpuWeight the
// v2 cpu.weight: the same for all, so that the CPU is shared per execution
// rather than per process, and 60 busy processes of one execution get no
// more of it than the one process of its neighbour. They are the kernel's
// defaults, written anyway so that a changed default cannot skew it.
const (
	cpuShares = 1024
	cpuWeight = 100
)

// EvacuationLeaf is the cgroup, under a container's cgroup root (or the
// supervisor's own delegated cgroup), that the processes found there are
// moved to so it can delegate controllers to the execution cgroups (cgroup
// v2's no-internal-processes rule). It is left in place on exit: the
// processes live in it.
const EvacuationLeaf = "python-executor-host"

// evacuateTries bounds the rounds of moving processes out of a busy cgroup.
const evacuateTries = 20

// ownCgroup is the directory of the calling process's own v2 cgroup under
// the root ("" when unknown). In tests, selfCgroup stands in for
// /proc/self/cgroup.
func (c *Cgroups) ownCgroup() string {
	b := []byte(c.selfCgroup)
	if c.selfCgroup == "" {
		var err error
		if b, err = os.ReadFile("/proc/self/cgroup"); err != nil {
			return ""
		}
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok && filepath.IsAbs(p) {
			return filepath.Join(c.root, p)
		}
	}
	return ""
}

// evacuate moves every process of dir into dir/EvacuationLeaf.
func (c *Cgroups) evacuate(dir string) error {
	leaf := filepath.Join(dir, EvacuationLeaf)
	if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return err
	}
	for _, pid := range strings.Fields(string(b)) {
		// ESRCH: the process exited meanwhile.
		if err := c.write(filepath.Join(leaf, "cgroup.procs"), pid); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("move process %s to %s: %w", pid, leaf, err)
		}
	}
	return nil
}

// enableControllers makes the v2 controllers available to dir's children.
func (c *Cgroups) enableControllers(dir string) error {
	sc := filepath.Join(dir, "cgroup.subtree_control")
	cur, err := os.ReadFile(sc)
	if err != nil && !(c.create && errors.Is(err, fs.ErrNotExist)) {
		return err
	}
	have := strings.Fields(string(cur))
	var add []string
	for _, ctl := range c.v2controllers {
		if !slices.Contains(have, ctl) {
			add = append(add, "+"+ctl)
		}
	}
	if len(add) == 0 {
		return nil
	}
	err = c.write(sc, strings.Join(add, " "))
	switch {
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("enable %s in %s: it holds processes, and cgroup v2 only delegates controllers from cgroups without any (move them to a leaf cgroup): %w",
			strings.Join(add, " "), dir, err)
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("enable %s in %s: not offered by its parent: %w", strings.Join(add, " "), dir, err)
	case err != nil:
		return fmt.Errorf("enable %s in %s: %w", strings.Join(add, " "), dir, err)
	}
	return nil
}

// write writes one value to a cgroup file, in one write(2) as cgroupfs
// wants.
func (c *Cgroups) write(path, value string) error {
	if c.writeFault != nil {
		if err := c.writeFault(path, value); err != nil {
			return err
		}
	}
	flags := os.O_WRONLY
	if c.create {
		flags |= os.O_CREATE | os.O_TRUNC
	}
	return writeFile(path, value, flags)
}

// writeExisting writes to a cgroup file that must already exist.
func writeExisting(path, value string) error {
	return writeFile(path, value, os.O_WRONLY)
}

func writeFile(path, value string, flags int) error {
	f, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte(value))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %q to %s: %w", value, path, err)
	}
	return nil
}

// dirs returns the directories of the cgroup rel (relative to the parent)
// in every hierarchy used.
func (c *Cgroups) dirs(rel string) []string {
	var out []string
	if c.mode == CgroupV2 {
		return []string{filepath.Join(c.root, c.parent, rel)}
	}
	for _, h := range c.v1Hierarchies() {
		out = append(out, filepath.Join(h, c.parent, rel))
	}
	return out
}

// Sweep kills the processes in, and removes, every cgroup left under the
// parent by a previous run (execution cgroups and nsjail's NSJAIL.<pid>).
// Call it at start-up, after Setup and before the first execution. It
// reports how many cgroups directly under the parent it removed.
func (c *Cgroups) Sweep() (removed int, err error) {
	if c.parent == "" {
		return 0, errors.New("sweep cgroups: Setup not called")
	}
	names := map[string]bool{}
	var errs []error
	for _, base := range c.dirs("") {
		ents, err := os.ReadDir(base)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, e := range ents {
			if !e.IsDir() {
				continue
			}
			dir := filepath.Join(base, e.Name())
			if err := killTree(dir, c.mode); err != nil {
				errs = append(errs, err)
				continue
			}
			if err := removeTree(dir); err != nil {
				errs = append(errs, err)
				continue
			}
			names[e.Name()] = true
		}
	}
	if err := errors.Join(errs...); err != nil {
		return len(names), fmt.Errorf("sweep cgroups under %s: %w", c.parent, err)
	}
	return len(names), nil
}

// Teardown kills and removes every execution cgroup, then the parent
// itself, so a stopped supervisor leaves no cgroup behind. Ancestors the
// parent was created under are left alone: they may be shared.
func (c *Cgroups) Teardown() error {
	if _, err := c.Sweep(); err != nil {
		return err
	}
	var errs []error
	for _, dir := range c.dirs("") {
		if err := removeTree(dir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove cgroup parent %s: %w", c.parent, err)
	}
	return nil
}

// ExecCgroup is the cgroup of one execution, under the parent. It carries
// the real limits; nsjail's own NSJAIL.<pid> cgroup inside it has looser
// ones, so limit events are charged here and survive nsjail removing its
// cgroup. Its methods are safe for concurrent use.
type ExecCgroup struct {
	cg     *Cgroups
	id     string
	limits Limits
	dirs   []string // v1: memory, pids (one when co-mounted); v2: one

	mu        sync.Mutex // guards oomEvent and oomEvents
	oomEvent  int        // v1: eventfd notified on OOM; -1 when none
	oomEvents uint64     // v1: notifications read from oomEvent so far
}

// NewExec creates the cgroup of one execution, named id (one path
// component, not starting with "NSJAIL"), under the parent, and sets the
// real limits on it: memory (no swap) and pids. In v1: memory.limit_in_bytes,
// memory.memsw.limit_in_bytes when swap is accounted, pids.max, and an OOM
// notification. In v2: memory.max, memory.swap.max=0, memory.oom.group=1
// (an OOM kills the whole execution, not one of its processes) and
// pids.max; it is left a leaf, which both Attach and nsjail's own nested
// cgroup (see Placement) can use.
// Only l.MemoryBytes and l.Pids are used. On error nothing is left behind.
func (c *Cgroups) NewExec(id string, l Limits) (*ExecCgroup, error) {
	e, err := c.newExec(id, l)
	if err != nil {
		return nil, fmt.Errorf("create cgroup %s/%s: %w", c.parent, id, err)
	}
	return e, nil
}

func (c *Cgroups) newExec(id string, l Limits) (*ExecCgroup, error) {
	if c.parent == "" {
		return nil, errors.New("Setup not called")
	}
	if id == "" || id == "." || id == ".." || strings.HasPrefix(id, nsjailPrefix) ||
		strings.IndexFunc(id, func(r rune) bool {
			return !(r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
		}) >= 0 {
		return nil, fmt.Errorf("id %q: want letters, digits, '-', '_' or '.', not starting with %s", id, nsjailPrefix)
	}
	if l.MemoryBytes <= 0 || l.Pids <= 0 {
		return nil, fmt.Errorf("limits: memory %d bytes, pids %d: want positive", l.MemoryBytes, l.Pids)
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
			if err := c.write(filepath.Join(e.v1Dir(c.cpu), "cpu.shares"), strconv.Itoa(cpuShares)); err != nil {
				return err
			}
		}
		if err := c.write(filepath.Join(md, "memory.limit_in_bytes"), mem); err != nil {
			return err
		}
		// memory+swap equal to memory: no swap. The file exists only when
		// the kernel accounts swap.
		if memsw := filepath.Join(md, "memory.memsw.limit_in_bytes"); exists(memsw) {
			if err := c.write(memsw, mem); err != nil {
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
			if err := c.write(sw, "0"); err != nil {
				return err
			}
		}
		if og := filepath.Join(d, "memory.oom.group"); c.create || exists(og) {
			if err := c.write(og, "1"); err != nil {
				return err
			}
		}
		if err := c.write(filepath.Join(d, "pids.max"), pids); err != nil {
			return err
		}
		// Only when the cpu controller is enabled here (see DetectCgroups).
		if w := filepath.Join(d, "cpu.weight"); exists(w) {
			if err := c.write(w, strconv.Itoa(cpuWeight)); err != nil {
				return err
			}
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
	ctl, err := os.Open(filepath.Join(dir, "memory.oom_control"))
	if err != nil {
		return -1, err
	}
	defer ctl.Close()
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return -1, fmt.Errorf("eventfd: %w", err)
	}
	// The kernel keeps its own reference to the control file.
	reg := fmt.Sprintf("%d %d", efd, ctl.Fd())
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

// Remove removes nsjail's NSJAIL.* cgroups left inside the execution's
// cgroup, then the cgroup itself, retrying briefly while the last tasks
// exit. Kill first if processes may be left. A cgroup already gone is not
// an error.
func (e *ExecCgroup) Remove() error {
	e.mu.Lock()
	if e.oomEvent >= 0 {
		unix.Close(e.oomEvent)
		e.oomEvent = -1
	}
	e.mu.Unlock()
	var errs []error
	for _, d := range e.dirs {
		errs = append(errs, removeTree(d))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove cgroup %s: %w", e.id, err)
	}
	return nil
}

// killTree SIGKILLs every process of the cgroup dir and its descendants,
// repeating until they are gone (a process may fork while the first
// signals are sent). In v2 cgroup.kill (Linux 5.14+) does it atomically.
// Every signal goes through a pidfd to a process confirmed to be a member
// (killMembers), never to a bare pid that may have been reaped and reused
// since cgroup.procs was read.
func killTree(dir string, mode CgroupMode) error {
	deadline := time.Now().Add(killTimeout)
	if mode == CgroupV2 {
		// Never created: before Linux 5.14 the file does not exist.
		if err := writeExisting(filepath.Join(dir, "cgroup.kill"), "1"); err != nil &&
			!errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	for {
		groups, err := treeProcsByDir(dir)
		if err != nil {
			return err
		}
		n := 0
		for _, g := range groups {
			n += len(g.pids)
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d processes still in %s after %v", n, dir, killTimeout)
		}
		for _, g := range groups {
			if err := killMembers(g.dir, g.pids); err != nil {
				return err
			}
		}
		time.Sleep(pollInterval)
	}
}

// killMembers SIGKILLs those of pids (read from dir's cgroup.procs) that
// are still members of dir. It opens a pidfd for each, then reads
// cgroup.procs again: a pid listed there now belonged to a member at that
// moment, and if the pidfd's process has not been reaped by the time the
// signal is sent, it held that pid all along, so it is that member. If it
// has been reaped, the signal fails with ESRCH and reaches nobody, whoever
// holds the pid now.
func killMembers(dir string, pids []int) error {
	fds := make(map[int]int, len(pids))
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for _, pid := range pids {
		fd, err := unix.PidfdOpen(pid, 0)
		if errors.Is(err, unix.ESRCH) {
			continue // gone already
		}
		if err != nil {
			return fmt.Errorf("pidfd of pid %d of %s: %w", pid, dir, err)
		}
		fds[pid] = fd
	}
	if len(fds) == 0 {
		return nil
	}
	now, err := readProcs(dir)
	if err != nil {
		return err
	}
	for _, pid := range now {
		fd, ok := fds[pid]
		if !ok {
			continue
		}
		if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("kill pid %d of %s: %w", pid, dir, err)
		}
	}
	return nil
}

// cgroupProcs is the pids of one cgroup directory.
type cgroupProcs struct {
	dir  string
	pids []int
}

// treeProcsByDir lists the pids in the cgroup dir and its descendants, per
// directory. A cgroup removed meanwhile counts as empty.
func treeProcsByDir(dir string) ([]cgroupProcs, error) {
	var out []cgroupProcs
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		pids, err := readProcs(p)
		if err != nil {
			return err
		}
		if len(pids) > 0 {
			out = append(out, cgroupProcs{dir: p, pids: pids})
		}
		return nil
	})
	return out, err
}

// treeProcs lists the pids in the cgroup dir and its descendants.
func treeProcs(dir string) ([]int, error) {
	groups, err := treeProcsByDir(dir)
	var pids []int
	for _, g := range groups {
		pids = append(pids, g.pids...)
	}
	return pids, err
}

// readProcs reads the cgroup dir's cgroup.procs; a cgroup removed
// meanwhile has none.
func readProcs(dir string) ([]int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENODEV) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("parse %s/cgroup.procs: %w", dir, err)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// removeTree removes the cgroup dir and its descendants, deepest first.
// rmdir fails with EBUSY while a dying task is still attached, so it
// retries for a moment.
func removeTree(dir string) error {
	// The common case, an execution's cgroup with neither tasks nor child
	// cgroups left, needs no listing of its (dozens of) control files.
	if err := unix.Rmdir(dir); err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	var subdirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			subdirs = append(subdirs, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// WalkDir lists parents before children: remove in reverse.
	slices.Reverse(subdirs)
	deadline := time.Now().Add(removeTimeout)
	for _, d := range subdirs {
		for {
			err := unix.Rmdir(d)
			if err == nil || errors.Is(err, unix.ENOENT) {
				break
			}
			if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
				return &os.PathError{Op: "rmdir", Path: d, Err: err}
			}
			time.Sleep(pollInterval)
		}
	}
	return nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func readInt(p string) (int64, error) {
	b, err := os.ReadFile(p)
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
	b, err := os.ReadFile(p)
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

// What nsjail 3.6 does with cgroups (read in its cgroup.cc and cgroup2.cc,
// matched against the strings of the shipped binary, and exercised by
// TestCgroupsReal and TestRenderV2Placement):
//
//   - v1: for each of memory and pids whose max is non-zero it creates
//     <cgroup_*_mount>/<cgroup_*_parent>/NSJAIL.<pid>, writes
//     memory.limit_in_bytes (cgroup_mem_max is in bytes, despite older
//     docs saying MiB) and memory.oom_control=0, or pids.max, then the
//     pid to tasks; it rmdirs the cgroup when the jail exits. The parent
//     must exist.
//   - v2: it reads <cgroupv2_mount>/cgroup.subtree_control and, if memory
//     or pids is missing, writes "+memory"/"+pids" there, on EBUSY first
//     moving itself into <cgroupv2_mount>/NSJAIL_SELF.<pid>. It then
//     creates <cgroupv2_mount>/NSJAIL.<pid>, writes the pid to
//     cgroup.procs, memory.max, memory.swap.max (only when
//     cgroup_mem_swap_max >= 0) and pids.max, and rmdirs it at the end.
//     So cgroupv2_mount is set to the execution cgroup itself, which is
//     empty when nsjail starts: its "+memory +pids" succeeds there, and
//     NSJAIL_SELF is never needed. (NewExec must not enable them itself:
//     the warm engine attaches processes to the same kind of cgroup, and
//     v2 refuses processes in a cgroup that delegates controllers.)
//
// Either way the kernel records OOM kills in the victim's cgroup, which is
// nsjail's and short-lived; hence the real limits on the execution cgroup
// above it (see ExecCgroup.Stats).

// Placement is where nsjail creates its cgroup for the jail, and the
// limits it puts on it. Get it from ExecCgroup.Placement; the zero value is
// invalid.
type Placement struct {
	// Mode is CgroupV1 or CgroupV2.
	Mode CgroupMode
	// MemoryMount and PidsMount are the v1 hierarchies' mount points, and
	// Parent the execution cgroup's path relative to both; nsjail creates
	// <mount>/<Parent>/NSJAIL.<pid>. Empty in v2.
	MemoryMount, PidsMount, Parent string
	// Dir is the v2 execution cgroup's directory; nsjail 3.6 creates
	// <Dir>/NSJAIL.<pid> (it names its cgroup after cgroupv2_mount).
	// Empty in v1.
	Dir string
	// CPUMount is the v1 cpu hierarchy's mount point ("" when absent):
	// nsjail puts the jail in <CPUMount>/<Parent>/NSJAIL.<pid>, so that it
	// gets the execution cgroup's fair share. nsjail 3.6 joins a cpu
	// cgroup only along with a CFS quota; it gets one of all the host's
	// CPUs, which never throttles. Empty in v2, where the execution cgroup
	// itself shares the CPU fairly.
	CPUMount string
	// MemoryMax (bytes) and PidsMax are nsjail's limits: positive, and
	// looser than the execution cgroup's.
	MemoryMax int64
	PidsMax   int
}

func (p *Placement) validate() error {
	if p.MemoryMax <= 0 || p.PidsMax <= 0 {
		return fmt.Errorf("memory max %d, pids max %d: want positive", p.MemoryMax, p.PidsMax)
	}
	switch p.Mode {
	case CgroupV1:
		if err := checkPath("memory mount", p.MemoryMount); err != nil {
			return err
		}
		if err := checkPath("pids mount", p.PidsMount); err != nil {
			return err
		}
		if p.CPUMount != "" {
			if err := checkPath("cpu mount", p.CPUMount); err != nil {
				return err
			}
		}
		if err := checkRelCgroup(p.Parent); err != nil {
			return err
		}
		if p.Dir != "" {
			return fmt.Errorf("v1 placement with a v2 dir %q", p.Dir)
		}
	case CgroupV2:
		if err := checkPath("cgroup dir", p.Dir); err != nil {
			return err
		}
		if p.MemoryMount != "" || p.PidsMount != "" || p.CPUMount != "" || p.Parent != "" {
			return errors.New("v2 placement with v1 fields")
		}
	default:
		return fmt.Errorf("mode %v: want v1 or v2", p.Mode)
	}
	return nil
}

// render writes nsjail's cgroup options. Swap is not limited here: the
// execution cgroup forbids it, and nsjail fails when memory.swap.max is
// missing (kernels without swap accounting).
func (p *Placement) render(w *textWriter) {
	w.uint("cgroup_mem_max", uint64(p.MemoryMax))
	switch p.Mode {
	case CgroupV1:
		w.str("cgroup_mem_mount", p.MemoryMount)
		w.str("cgroup_mem_parent", p.Parent)
		w.uint("cgroup_pids_max", uint64(p.PidsMax))
		w.str("cgroup_pids_mount", p.PidsMount)
		w.str("cgroup_pids_parent", p.Parent)
		if p.CPUMount != "" {
			w.uint("cgroup_cpu_ms_per_sec", uint64(1000*runtime.NumCPU()))
			w.str("cgroup_cpu_mount", p.CPUMount)
			w.str("cgroup_cpu_parent", p.Parent)
		}
	case CgroupV2:
		w.uint("cgroup_pids_max", uint64(p.PidsMax))
		w.str("cgroupv2_mount", p.Dir)
		w.bool("use_cgroupv2", true)
	}
}
