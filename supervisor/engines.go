package supervisor

import (
	"github.com/python-executor/python-executor/internal/engine"
	"github.com/python-executor/python-executor/internal/proc"
)

// The engines and what they share live under internal/engine; these names
// are the part of them the supervisor's API (Config, NewServer, SelfTest)
// speaks in.
type (
	Engine    = engine.Engine
	Execution = engine.Execution
	Outcome   = engine.Outcome
	LimitSet  = engine.LimitSet
)

// DefaultLimits are the limits an execution gets when it asks for nothing.
func DefaultLimits() LimitSet { return engine.DefaultLimits() }

// The default range of per-execution host uids (Config.SandboxUIDBase and
// SandboxUIDCount); see proc.UIDPool.
const (
	DefaultSandboxUIDBase  = proc.DefaultSandboxUIDBase
	DefaultSandboxUIDCount = proc.DefaultSandboxUIDCount
)
