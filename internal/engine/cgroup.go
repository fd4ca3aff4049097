package engine

import (
	"github.com/sirupsen/logrus"

	"github.com/python-executor/python-executor/internal/jail"
)

// RemoveCgroup is done with an execution's cgroup: it keeps it for the
// next execution when nothing of this one is left in it (v1, see
// jail.ExecCgroup.Recycle), else kills what is left and removes it. A
// failure of either is counted once (Stats.CgroupCleanupFailures).
func RemoveCgroup(cg *jail.ExecCgroup, log *logrus.Entry) {
	if cg.Recycle() {
		cgroupsKept.Add(1)
		return
	}
	// Usually nothing is left: then the kernel's refusal to remove a busy
	// cgroup is the check, and the listing Kill does is saved.
	if cg.RemoveIfEmpty() {
		return
	}
	failed := false
	if err := cg.Kill(); err != nil {
		failed = true
		log.WithError(err).Warn("kill cgroup")
	}
	if err := cg.Remove(); err != nil {
		failed = true
		log.WithError(err).Warn("remove cgroup")
	}
	if failed {
		cgroupCleanupFailures.Add(1)
	}
}
