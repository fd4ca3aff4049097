package engine

import (
	"github.com/sirupsen/logrus"

	"github.com/python-executor/python-executor/internal/jail"
)

// RemoveCgroup kills what is left in an execution's cgroup and removes it.
// A failure of either is counted once (Stats.CgroupCleanupFailures).
func RemoveCgroup(cg *jail.ExecCgroup, log *logrus.Entry) {
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
