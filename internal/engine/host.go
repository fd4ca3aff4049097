package engine

import (
	"github.com/python-executor/python-executor/internal/jail"
	"github.com/python-executor/python-executor/internal/proc"
)

// Host is what the supervisor's host preparation gives every engine: the
// jail policy template, nsjail, the cgroups and the per-execution uids.
type Host struct {
	Policy  jail.Policy
	Nsjail  string
	Cgroups *jail.Cgroups // nil when none are usable
	// WorkDir holds the container tier's per-execution directories.
	WorkDir string
	// UIDs are the per-execution host uids, nil where cgroups limit the
	// executions (they then all run as the sandbox user).
	UIDs *proc.UIDPool
	// ZygoteMount binds zygote.py beside the runner, for the warm engine's
	// zygote jails only.
	ZygoteMount jail.Mount
}
