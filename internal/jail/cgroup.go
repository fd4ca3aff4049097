package jail

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"

	"github.com/python-executor/python-executor/internal/proc"
)

// Cgroup handling is split by job, one file each:
//
//   - cgroup.go: the Cgroups type and the cgroupfs writes the others share;
//   - cgroup_detect.go: which interface the host offers (DetectCgroups);
//   - cgroup_delegate.go: the executions' parent cgroup and, in v2, the
//     delegation of controllers down to it (Setup);
//   - cgroup_sweep.go: killing and removing whole cgroup trees (Sweep,
//     Teardown, and ExecCgroup's Kill and Remove);
//   - cgroup_exec.go: one execution's cgroup (NewExec, Attach, Stats);
//   - cgroup_reuse.go: keeping an emptied one for the next (Recycle);
//   - cgroup_nsjail.go: the cgroup nsjail nests inside it (Placement).

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

	// idle holds the emptied v1 execution cgroups kept for reuse
	// (cgroup_reuse.go), named idle-<idleSeq>.
	idle    idleCgroups
	idleSeq atomic.Uint64

	// create lets the tests use a plain directory as a fake cgroupfs: it
	// makes writes create the files the kernel would provide.
	create bool
	// writeFault, in tests, fails writes the way the kernel would.
	writeFault func(path, value string) error
	// selfCgroup, in tests, replaces /proc/self/cgroup.
	selfCgroup string
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
	if err := proc.WriteKernelFile(path, []byte(value), flags&^os.O_WRONLY); err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) && pe.Op == "open" {
			return err
		}
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
