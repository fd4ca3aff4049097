package engine

import (
	"errors"
	"fmt"
	"time"
)

// LimitSet is one full set of per-execution limits.
type LimitSet struct {
	Timeout       time.Duration
	MemoryBytes   int64
	Pids          int
	CPUTime       time.Duration
	FileSizeBytes int64
	OpenFiles     int
	TmpBytes      int64
	TmpInodes     int
	OutputBytes   int64 // kept per stream (stdout, stderr); the rest is dropped
	ResultBytes   int64
}

// DefaultLimits are the limits an execution gets when it asks for nothing.
func DefaultLimits() LimitSet {
	return LimitSet{
		Timeout:       30 * time.Second,
		MemoryBytes:   512 << 20,
		Pids:          64,
		CPUTime:       60 * time.Second,
		FileSizeBytes: 64 << 20,
		OpenFiles:     256,
		TmpBytes:      64 << 20,
		TmpInodes:     4096,
		OutputBytes:   1 << 20,
		ResultBytes:   8 << 20,
	}
}

// Validate reports a limit that is not positive.
func (l LimitSet) Validate() error {
	for i, v := range l.values() {
		if v <= 0 {
			return fmt.Errorf("limit %s must be positive, got %d", limitFields[i].name, v)
		}
	}
	if l.Timeout < time.Millisecond {
		return errors.New("limit timeout must be at least 1ms")
	}
	return nil
}
