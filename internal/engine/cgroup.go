package engine

import (
	"github.com/sirupsen/logrus"

	"github.com/python-executor/python-executor/internal/jail"
)

// RemoveCgroup kills what is left in an execution's cgroup and removes it.
func RemoveCgroup(cg *jail.ExecCgroup, log *logrus.Entry) {
	if err := cg.Kill(); err != nil {
		log.WithError(err).Warn("kill cgroup")
	}
	if err := cg.Remove(); err != nil {
		log.WithError(err).Warn("remove cgroup")
	}
}
