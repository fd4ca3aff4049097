package engine

import "sync/atomic"

// Counters of engine events the supervisor exports as metrics (see
// ReadStats). They are process-wide, as the supervisor runs one engine;
// every engine and the helpers they share count into them.
var (
	cgroupCleanupFailures atomic.Uint64
	cgroupsKept           atomic.Uint64
	zygoteRestarts        atomic.Uint64
	spareHits             atomic.Uint64
	spareMisses           atomic.Uint64
)

// Stats is a snapshot of the engine counters, each counted since the
// process started.
type Stats struct {
	// CgroupCleanupFailures counts execution (and zygote, spare) cgroups
	// that could not be killed or removed after use: each one is a cgroup
	// left for the next sweep, and a sign of trouble on the host.
	CgroupCleanupFailures uint64
	// CgroupsKept counts execution (and spare) cgroups kept after use for
	// a later execution with the same limits rather than removed (cgroup
	// v1, jail.ExecCgroup.Recycle).
	CgroupsKept uint64
	// ZygoteRestarts counts warm-engine zygotes that died and were
	// replaced.
	ZygoteRestarts uint64
	// SpareHits and SpareMisses count warm executions that found a spare
	// child ready, and those that launched a child of their own: none was
	// ready, or their limits were not the ones the spares follow.
	SpareHits, SpareMisses uint64
}

// ReadStats returns the counters now.
func ReadStats() Stats {
	return Stats{
		CgroupCleanupFailures: cgroupCleanupFailures.Load(),
		CgroupsKept:           cgroupsKept.Load(),
		ZygoteRestarts:        zygoteRestarts.Load(),
		SpareHits:             spareHits.Load(),
		SpareMisses:           spareMisses.Load(),
	}
}

// CountZygoteRestart records a zygote replaced after it died.
func CountZygoteRestart() { zygoteRestarts.Add(1) }

// CountSpare records whether a warm execution got a spare.
func CountSpare(hit bool) {
	if hit {
		spareHits.Add(1)
	} else {
		spareMisses.Add(1)
	}
}
