package jail

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

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
