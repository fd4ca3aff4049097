package bench

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// primitiveScript measures the warm engine's primitive alone: see its
// docstring. It is embedded so that the binary needs nothing of the checkout
// but the venv.
//
//go:embed primitive.py
var primitiveScript string

// PrimitiveName is the column of the primitive in the report.
const PrimitiveName = "primitive"

// PrimitiveResult is the primitive measured in the same run as the engines:
// a clone(2) into the warm engine's fresh namespaces from a process with the
// zygote's preloads, the child exiting at once. It is what the machine can do
// at best; the warm engine's figures are reported as ratios to it.
type PrimitiveResult struct {
	Status Status `json:"status"`
	Reason string `json:"reason,omitempty"`
	// Latency is one clone and reap at a time (as the latency cells, c=1).
	Latency *PrimitiveLatency `json:"latency,omitempty"`
	// Rate is clones per second at the throughput cells' concurrency, the
	// median of the rounds.
	Rate *PrimitiveRate `json:"rate,omitempty"`
}

// PrimitiveLatency is the time of one clone and reap.
type PrimitiveLatency struct {
	Samples []time.Duration `json:"-"`
	Latency Percentiles     `json:"latency"`
}

// PrimitiveRate is the rate of clones with Concurrency processes cloning.
type PrimitiveRate struct {
	Concurrency int       `json:"concurrency"`
	PerSecond   float64   `json:"per_second"`
	Rounds      []float64 `json:"rounds_per_second,omitempty"`
}

// primitiveOutput is what primitive.py prints, either mode.
type primitiveOutput struct {
	Mode        string  `json:"mode"`
	Concurrency int     `json:"concurrency"`
	Clones      int     `json:"clones"`
	Seconds     float64 `json:"seconds"`
	SamplesNs   []int64 `json:"samples_ns"`
}

// parsePrimitiveRate reads primitive.py's rate output, which must be for
// concurrency conc.
func parsePrimitiveRate(b []byte, conc int) (float64, error) {
	var o primitiveOutput
	if err := json.Unmarshal(bytes.TrimSpace(b), &o); err != nil {
		return 0, fmt.Errorf("primitive rate: bad output %q: %w", b, err)
	}
	switch {
	case o.Mode != "rate":
		return 0, fmt.Errorf("primitive rate: output of mode %q", o.Mode)
	case o.Concurrency != conc:
		return 0, fmt.Errorf("primitive rate: concurrency %d, want %d", o.Concurrency, conc)
	case o.Clones <= 0 || !(o.Seconds > 0):
		return 0, fmt.Errorf("primitive rate: %d clones in %gs: nothing measured", o.Clones, o.Seconds)
	}
	return float64(o.Clones) / o.Seconds, nil
}

// parsePrimitiveLatency reads primitive.py's latency output: n positive
// samples.
func parsePrimitiveLatency(b []byte, n int) (PrimitiveLatency, error) {
	var o primitiveOutput
	if err := json.Unmarshal(bytes.TrimSpace(b), &o); err != nil {
		return PrimitiveLatency{}, fmt.Errorf("primitive latency: bad output %q: %w", b, err)
	}
	if o.Mode != "latency" || len(o.SamplesNs) != n {
		return PrimitiveLatency{}, fmt.Errorf("primitive latency: mode %q with %d samples, want latency with %d", o.Mode, len(o.SamplesNs), n)
	}
	var c PrimitiveLatency
	for _, ns := range o.SamplesNs {
		if ns <= 0 {
			return PrimitiveLatency{}, fmt.Errorf("primitive latency: sample of %d ns", ns)
		}
		c.Samples = append(c.Samples, time.Duration(ns))
	}
	c.Latency = summarize(c.Samples)
	return c, nil
}

// runPrimitive runs primitive.py with the venv's Python as root (the bench
// runs as root, as the supervisor that starts the zygotes does).
func runPrimitive(ctx context.Context, venv string, timeout time.Duration, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(venv, "bin", "python3"), append([]string{"-c", primitiveScript}, args...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("primitive %s: %w: %s", args[0], err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// measurePrimitive measures one round of the primitive into res: its
// latency in the first round (n samples), its rate at conc for d in every
// round.
func measurePrimitive(ctx context.Context, cfg Config, round int, res *PrimitiveResult) error {
	if round == 1 {
		*res = PrimitiveResult{Status: StatusOK}
		out, err := runPrimitive(ctx, cfg.Venv, 5*time.Minute, "latency", strconv.Itoa(cfg.Requests))
		if err == nil {
			var c PrimitiveLatency
			if c, err = parsePrimitiveLatency(out, cfg.Requests); err == nil {
				res.Latency = &c
			}
		}
		if err != nil {
			return err
		}
	}
	out, err := runPrimitive(ctx, cfg.Venv, cfg.Duration+5*time.Minute, "rate", strconv.Itoa(cfg.Concurrency), strconv.FormatFloat(cfg.Duration.Seconds(), 'f', -1, 64))
	if err != nil {
		return err
	}
	rate, err := parsePrimitiveRate(out, cfg.Concurrency)
	if err != nil {
		return err
	}
	if res.Rate == nil {
		res.Rate = &PrimitiveRate{Concurrency: cfg.Concurrency}
	}
	res.Rate.Rounds = append(res.Rate.Rounds, rate)
	res.Rate.PerSecond = medianRound(res.Rate.Rounds)
	return nil
}

// PrimitiveRatios are an engine's figures divided by the primitive's, in
// the same run: latencies by its single clone's (percentile by
// percentile), throughputs by its rate at the same concurrency. A ratio is
// absent when either side was not measured.
type PrimitiveRatios struct {
	HelloLatency     *[3]float64 `json:"hello_latency_p50_p90_p99,omitempty"`
	PandasLatency    *[3]float64 `json:"pandas_latency_p50_p90_p99,omitempty"`
	HelloThroughput  *float64    `json:"hello_throughput,omitempty"`
	PandasThroughput *float64    `json:"pandas_throughput,omitempty"`
	MixedThroughput  *float64    `json:"mixed_throughput,omitempty"`
}

func latencyRatios(c *LatencyCell, p *PrimitiveResult) *[3]float64 {
	if c == nil || len(c.Samples) == 0 || p == nil || p.Latency == nil {
		return nil
	}
	a, b := c.Latency, p.Latency.Latency
	var r [3]float64
	var ok [3]bool
	r[0], ok[0] = ratio(float64(a.P50), float64(b.P50))
	r[1], ok[1] = ratio(float64(a.P90), float64(b.P90))
	r[2], ok[2] = ratio(float64(a.P99), float64(b.P99))
	if !ok[0] || !ok[1] || !ok[2] {
		return nil
	}
	return &r
}

func rateRatio(c *ThroughputCell, p *PrimitiveResult) *float64 {
	if c == nil || c.Completed == 0 || p == nil || p.Rate == nil {
		return nil
	}
	r, ok := roundsRatio(c.Rounds, p.Rate.Rounds, c.PerSecond, p.Rate.PerSecond)
	if !ok {
		return nil
	}
	return &r
}

// roundsRatio is the ratio of two rates measured in the same rounds: the
// median of the rounds' ratios, a[i]/b[i], when both have every round, so
// that each ratio compares measurements minutes apart rather than the
// medians of rounds the machine's drifting load made differ; else medA/medB.
// It reports whether there is a ratio.
func roundsRatio(a, b []float64, medA, medB float64) (float64, bool) {
	if len(a) == 0 || len(a) != len(b) {
		return ratio(medA, medB)
	}
	rs := make([]float64, len(a))
	for i := range a {
		r, ok := ratio(a[i], b[i])
		if !ok {
			return 0, false
		}
		rs[i] = r
	}
	return medianRound(rs), true
}

// vsPrimitive is e's ratios to p, nil when there is none.
func vsPrimitive(e *EngineResult, p *PrimitiveResult) *PrimitiveRatios {
	if e.Status != StatusOK || p == nil || p.Status != StatusOK {
		return nil
	}
	r := PrimitiveRatios{
		HelloLatency:     latencyRatios(e.HelloLatency, p),
		PandasLatency:    latencyRatios(e.PandasLatency, p),
		HelloThroughput:  rateRatio(e.HelloThroughput, p),
		PandasThroughput: rateRatio(e.PandasThroughput, p),
		MixedThroughput:  rateRatio(e.MixedThroughput, p),
	}
	if r == (PrimitiveRatios{}) {
		return nil
	}
	return &r
}
