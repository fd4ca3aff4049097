package jail

import (
	"errors"
	"fmt"
	"runtime"
)

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
