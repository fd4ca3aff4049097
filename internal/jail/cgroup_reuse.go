package jail

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/python-executor/python-executor/internal/proc"
)

// Reusing emptied execution cgroups (v1).
//
// On cgroup v1 an execution's cgroup is two or three directories (memory,
// pids, cpu), and creating them, writing their limits, registering the OOM
// notification and removing them again cost about 0.35 ms of kernel CPU
// per execution (0.25 ms in the calls, the rest in kernel workers after the
// rmdir); the checks, the reset and two renames below cost about 0.15 ms,
// most of it opening the files. A cgroup whose processes are all gone and
// whose counters show no limit hit is as good as a new one once its peak
// is reset: it is kept, and the next NewExec with the same limits renames
// it instead of creating one. While kept it is named idle-<n>, so that a
// cgroup named after an execution exists only while that execution does.
//
// v2 keeps creating a cgroup per execution: memory.peak can be reset only
// from Linux 6.12 (and then per open file), and cpu.stat's usage, which
// Stats reports there, cannot be reset at all.

// maxIdleCgroups bounds the cgroups kept for reuse: enough for every slot's
// spare and execution to find one, few enough that limits no longer asked
// for age out.
const maxIdleCgroups = 16

// maxReusedUsage is the most memory a cgroup may still have charged (page
// cache its execution read, kernel objects) to be reused: the next
// execution's peak starts from it, so it must stay small beside any peak
// worth reporting, and an execution that filled the cache does not pass
// its charge on.
const maxReusedUsage = 1 << 20

// idleCgroups holds the emptied cgroups kept for reuse, oldest first.
type idleCgroups struct {
	mu   sync.Mutex
	list []*ExecCgroup
}

// take removes and returns the most recently kept cgroup with limits l, or
// nil.
func (p *idleCgroups) take(l CgroupLimits) *ExecCgroup {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.list) - 1; i >= 0; i-- {
		if e := p.list[i]; e.limits == l {
			p.list = append(p.list[:i], p.list[i+1:]...)
			return e
		}
	}
	return nil
}

// put keeps e and returns the cgroup it pushed out to stay within
// maxIdleCgroups, or nil.
func (p *idleCgroups) put(e *ExecCgroup) (evicted *ExecCgroup) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.list) >= maxIdleCgroups {
		evicted = p.list[0]
		p.list = append(p.list[:0], p.list[1:]...)
	}
	p.list = append(p.list, e)
	return evicted
}

// drain removes and returns every kept cgroup.
func (p *idleCgroups) drain() []*ExecCgroup {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.list
	p.list = nil
	return out
}

// idlePrefix starts the name of a kept cgroup; exec ids must not.
const idlePrefix = "idle-"

// reuse returns a kept cgroup with limits l, renamed to id, or nil when
// none is kept (or renaming failed: then it is removed).
func (c *Cgroups) reuse(id string, l CgroupLimits) *ExecCgroup {
	e := c.idle.take(l)
	if e == nil {
		return nil
	}
	if err := e.rename(id); err != nil {
		_ = e.Remove()
		return nil
	}
	return e
}

// rename renames the cgroup to id in every hierarchy. On error its dirs
// say where each one is, under the old name or the new.
func (e *ExecCgroup) rename(id string) error {
	to := e.cg.dirs(id)
	for i, d := range e.dirs {
		if err := unix.Rename(d, to[i]); err != nil {
			return err
		}
		e.dirs[i] = to[i]
	}
	e.id = id
	return nil
}

// Recycle keeps the execution's cgroup for a later NewExec with the same
// limits, when the host is on cgroup v1 and nothing of the execution is
// left in it: no process and no child cgroup in any hierarchy, no OOM and
// no pids limit hit, at most maxReusedUsage of memory still charged. Its
// peak memory is reset then. It reports whether the cgroup was kept; when
// not, the caller removes it as before (RemoveIfEmpty, Kill, Remove). Call
// it instead of those, once the execution's processes have exited, and use
// e no more when it returns true: it may be another execution's by then.
func (e *ExecCgroup) Recycle() bool {
	c := e.cg
	if c.mode != CgroupV1 || !e.reusable() {
		return false
	}
	if err := e.rename(fmt.Sprintf("%s%d", idlePrefix, c.idleSeq.Add(1))); err != nil {
		return false
	}
	if evicted := c.idle.put(e); evicted != nil {
		_ = evicted.Remove()
	}
	return true
}

// reusable checks what Recycle promises and resets the peak. Any error
// (a file missing, a value it cannot parse) means no.
func (e *ExecCgroup) reusable() bool {
	for _, d := range e.dirs {
		// A cgroupfs directory's link count is 2 plus its child
		// cgroups: one stat tells that none was made inside (nsjail's
		// NSJAIL.<pid> left by a killed nsjail, anything else).
		var st unix.Stat_t
		if err := unix.Stat(d, &st); err != nil || st.Nlink != 2 {
			return false
		}
		// tasks, not cgroup.procs: v1 can hold one thread of a process
		// whose leader is elsewhere.
		b, err := proc.ReadKernelFile(filepath.Join(d, "tasks"))
		if err != nil || strings.TrimSpace(string(b)) != "" {
			return false
		}
	}
	if e.readOOMEvents() > 0 {
		return false
	}
	md := e.v1Dir(e.cg.memory)
	oc, err := readKeyed(filepath.Join(md, "memory.oom_control"))
	if err != nil || oc["oom_kill"] > 0 || oc["under_oom"] > 0 {
		return false
	}
	if hit, err := pidsHit(e.v1Dir(e.cg.pids), e.limits.Pids); err != nil || hit {
		return false
	}
	usage, err := readInt(filepath.Join(md, "memory.usage_in_bytes"))
	if err != nil || usage < 0 || usage > maxReusedUsage {
		return false
	}
	// The next execution gets the weight of its limits, not that of a
	// spare's set-up (a spare discarded before it was taken).
	if e.background.Load() && e.SetBackground(false) != nil {
		return false
	}
	// Writing 0 sets the peak to the current usage (cgroup-v1/memory.rst,
	// "max_usage_in_bytes").
	return e.cg.write(filepath.Join(md, "memory.max_usage_in_bytes"), "0") == nil
}

// removeIdle removes every cgroup kept for reuse, and closes their OOM
// notifications; a failure leaves the directory to Sweep.
func (c *Cgroups) removeIdle() {
	for _, e := range c.idle.drain() {
		_ = e.Remove()
	}
}
