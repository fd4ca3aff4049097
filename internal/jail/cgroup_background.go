package jail

import (
	"path/filepath"
	"strconv"
)

// The CPU weight of a cgroup whose work nobody waits for yet: a spare's
// set-up before an execution takes it. The lowest each version allows; the
// scheduler is work conserving, so the work still runs at once on an idle
// CPU and only yields to what a caller is waiting for (a request's gateway,
// supervisor and runner) when both want the same CPU. (An execution's
// teardown after its answer is not lowered: its slot is held until the
// child has exited, so a slower teardown delays the requests queued for
// the slot.)
const (
	backgroundShares = 2 // v1 cpu.shares' minimum
	backgroundWeight = 1 // v2 cpu.weight's minimum
)

// SetBackground lowers the cgroup's CPU weight to the minimum (bg) or
// restores the weight of its limits (!bg). Without a cpu controller (v1
// without the cpu hierarchy, v2 without cpu enabled) it does nothing. Only
// the weight changes: the limits, and what the execution is charged, do
// not. A kept cgroup (Recycle) gets its own weight back before reuse.
func (e *ExecCgroup) SetBackground(bg bool) error {
	c := e.cg
	if !e.weighted {
		return nil
	}
	var path, value string
	switch c.mode {
	case CgroupV1:
		path, value = filepath.Join(e.v1Dir(c.cpu), "cpu.shares"), strconv.Itoa(e.limits.CPUShares)
		if bg {
			value = strconv.Itoa(backgroundShares)
		}
	case CgroupV2:
		path, value = filepath.Join(e.dirs[0], "cpu.weight"), strconv.Itoa(e.limits.CPUWeight)
		if bg {
			value = strconv.Itoa(backgroundWeight)
		}
	default:
		return nil
	}
	if err := c.write(path, value); err != nil {
		return err
	}
	e.background.Store(bg)
	return nil
}
