package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"
)

// Percentiles summarises the latencies of one cell.
type Percentiles struct {
	P50, P90, P99 time.Duration
}

// MarshalJSON writes the percentiles in milliseconds.
func (p Percentiles) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]float64{"p50_ms": ms(p.P50), "p90_ms": ms(p.P90), "p99_ms": ms(p.P99)})
}

// percentile is the p-th percentile (0 < p <= 100) of sorted by the nearest
// rank method: the smallest sample that at least p% of the samples are less
// than or equal to. It is always one of the samples, never an interpolation.
// An empty slice yields 0.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// summarize returns the 50th, 90th and 99th percentiles of d (in any order;
// d is not modified).
func summarize(d []time.Duration) Percentiles {
	s := slices.Clone(d)
	slices.Sort(s)
	return Percentiles{P50: percentile(s, 50), P90: percentile(s, 90), P99: percentile(s, 99)}
}

// ratio is a/b, and reports whether both are positive (a ratio of a missing
// or meaningless measurement is not shown).
func ratio(a, b float64) (float64, bool) {
	if !(a > 0 && b > 0) || math.IsInf(a, 0) || math.IsInf(b, 0) {
		return 0, false
	}
	return a / b, true
}

// formatRatio prints a ratio with about two significant digits: 0.031,
// 0.12, 1.00, 3.45, 12.3, 456. It is meant to be read next to numbers that
// are themselves noisy, so more digits would only pretend.
func formatRatio(r float64) string {
	switch {
	case math.IsNaN(r) || math.IsInf(r, 0) || r <= 0:
		return "—"
	case r >= 100:
		return fmt.Sprintf("%.0f", r)
	case r >= 10:
		return fmt.Sprintf("%.1f", r)
	case r >= 0.1:
		return fmt.Sprintf("%.2f", r)
	case r >= 0.01:
		return fmt.Sprintf("%.3f", r)
	default:
		return fmt.Sprintf("%.2g", r)
	}
}

// ms is d in milliseconds as a float.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// mib is b bytes in MiB.
func mib(b int64) float64 { return float64(b) / (1 << 20) }
