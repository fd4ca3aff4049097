package engine

import "github.com/python-executor/python-executor/limits"

// LimitSet is one full set of per-execution limits; the table of limits
// (package limits) declares each of them. It embeds limits.Set (fields and
// methods) and adds what only the privileged side needs (JailLimits).
type LimitSet struct{ limits.Set }

// DefaultLimits are the limits an execution gets when it asks for nothing.
func DefaultLimits() LimitSet { return LimitSet{limits.Defaults()} }
