package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Machine describes the host a report was measured on.
type Machine struct {
	CPUs   int    `json:"cpus"`
	Model  string `json:"model"`
	Kernel string `json:"kernel"`
	Date   string `json:"date"`
}

func (m Machine) String() string {
	return fmt.Sprintf("%d CPUs, %s, %s, %s", m.CPUs, m.Model, m.Kernel, m.Date)
}

func describeMachine(now time.Time) Machine {
	m := Machine{CPUs: runtime.NumCPU(), Model: "unknown CPU", Kernel: runtime.GOOS, Date: now.UTC().Format("2006-01-02 15:04 MST")}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if model := cpuModel(b); model != "" {
			m.Model = model
		}
	}
	ostype, err1 := os.ReadFile("/proc/sys/kernel/ostype")
	release, err2 := os.ReadFile("/proc/sys/kernel/osrelease")
	if err1 == nil && err2 == nil {
		m.Kernel = strings.TrimSpace(string(ostype)) + " " + strings.TrimSpace(string(release))
	}
	return m
}

// cpuModel is the first "model name" of /proc/cpuinfo ("" if none).
func cpuModel(cpuinfo []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(key) == "model name" {
			return strings.Join(strings.Fields(val), " ")
		}
	}
	return ""
}

// WriteJSON writes the report as indented JSON, each engine with its
// ratios to the primitive.
func (r *Report) WriteJSON(w io.Writer) error {
	for i := range r.Engines {
		r.Engines[i].VsPrimitive = vsPrimitive(&r.Engines[i], r.Primitive)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// WriteMarkdown writes the report as a Markdown table, one column per
// engine and one per ratio against the baseline engine (cold when it was
// measured, else the first), ready to paste into the README.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "machine: %s  \n", r.Machine)
	s := r.Settings
	rounds := ""
	if s.Rounds > 1 {
		rounds = fmt.Sprintf(", median of %d rounds with the engines taking turns (min-max in brackets)", s.Rounds)
	}
	fmt.Fprintf(&b, "settings: latency over %d requests one at a time (c=1) after %d of warm-up; "+
		"throughput for %gs at c=%d after %d of warm-up%s; "+
		"mixed: hello and pandas in equal parts, at c=%d and at c=%d (overload) against the supervisor's default slots; "+
		"memory with %d executions of the pandas example in flight, each sleeping %gs (supervisor -slots %d)\n\n",
		s.Requests, s.Warmup, s.Duration, s.Concurrency, s.Warmup, rounds, s.Concurrency, s.Overload, s.MemInFlight, s.MemHold, s.MemInFlight)
	prim := r.Primitive

	base := r.baseline()
	header := []string{"metric"}
	for _, e := range r.Engines {
		header = append(header, e.Engine)
	}
	if prim != nil {
		header = append(header, PrimitiveName)
	}
	var others []int
	for i, e := range r.Engines {
		if i != base {
			others = append(others, i)
			header = append(header, e.Engine+"/"+r.Engines[base].Engine)
		}
	}
	if prim != nil {
		for _, e := range r.Engines {
			header = append(header, e.Engine+"/"+PrimitiveName)
		}
	}
	row(&b, header...)
	align := []string{"---"}
	for range header[1:] {
		align = append(align, "---:")
	}
	row(&b, align...)

	// A metric is a value per engine, shown by show and compared by cmp
	// (false: no ratio). primShow is the primitive's value for it and
	// vsPrim an engine's ratio to that, both nil when the primitive has
	// nothing to compare.
	type metric struct {
		name     string
		show     func(*EngineResult) string
		cmp      func(a, b *EngineResult) (string, bool)
		primShow func(*PrimitiveResult) string
		vsPrim   func(*EngineResult, *PrimitiveResult) (string, bool)
	}
	// vsPrimLatency and vsPrimRate compare with the primitive's single
	// clone and its rate.
	vsPrimLatency := func(m metric, cell func(*EngineResult) *LatencyCell) metric {
		m.primShow = func(p *PrimitiveResult) string {
			if p.Latency == nil {
				return ""
			}
			l := p.Latency.Latency
			return fmt.Sprintf("%s / %s / %s ms", fmtMs(l.P50), fmtMs(l.P90), fmtMs(l.P99))
		}
		m.vsPrim = func(e *EngineResult, p *PrimitiveResult) (string, bool) {
			r := latencyRatios(cell(e), p)
			if r == nil {
				return "", false
			}
			return fmt.Sprintf("%s / %s / %s", formatRatio(r[0]), formatRatio(r[1]), formatRatio(r[2])), true
		}
		return m
	}
	vsPrimRate := func(m metric, cell func(*EngineResult) *ThroughputCell) metric {
		m.primShow = func(p *PrimitiveResult) string {
			if p.Rate == nil {
				return ""
			}
			if len(p.Rate.Rounds) > 1 {
				return fmt.Sprintf("%.1f /s (%.1f-%.1f)", p.Rate.PerSecond, slices.Min(p.Rate.Rounds), slices.Max(p.Rate.Rounds))
			}
			return fmt.Sprintf("%.1f /s", p.Rate.PerSecond)
		}
		m.vsPrim = func(e *EngineResult, p *PrimitiveResult) (string, bool) {
			r := rateRatio(cell(e), p)
			if r == nil {
				return "", false
			}
			return formatRatio(*r), true
		}
		return m
	}
	latency := func(cell func(*EngineResult) *LatencyCell) metric {
		return metric{
			show: func(e *EngineResult) string {
				c := cell(e)
				if c == nil || len(c.Samples) == 0 {
					return ""
				}
				p := c.Latency
				return fmt.Sprintf("%s / %s / %s ms", fmtMs(p.P50), fmtMs(p.P90), fmtMs(p.P99))
			},
			cmp: func(a, b *EngineResult) (string, bool) {
				ca, cb := cell(a), cell(b)
				if ca == nil || cb == nil {
					return "", false
				}
				pa, pb := ca.Latency, cb.Latency
				return fmt.Sprintf("%s / %s / %s", durRatio(pa.P50, pb.P50), durRatio(pa.P90, pb.P90), durRatio(pa.P99, pb.P99)), true
			},
		}
	}
	throughput := func(cell func(*EngineResult) *ThroughputCell) metric {
		return metric{
			show: func(e *EngineResult) string {
				if c := cell(e); c != nil && c.Completed > 0 {
					if len(c.Rounds) > 1 {
						return fmt.Sprintf("%.1f req/s (%.1f-%.1f)", c.PerSecond, slices.Min(c.Rounds), slices.Max(c.Rounds))
					}
					return fmt.Sprintf("%.1f req/s", c.PerSecond)
				}
				return ""
			},
			cmp: func(a, b *EngineResult) (string, bool) {
				ca, cb := cell(a), cell(b)
				if ca == nil || cb == nil {
					return "", false
				}
				rt, ok := ratio(ca.PerSecond, cb.PerSecond)
				return formatRatio(rt), ok
			},
		}
	}
	memory := func(size func(*MemoryCell) int64) metric {
		return metric{
			show: func(e *EngineResult) string {
				if e.Memory == nil || e.Status != StatusOK {
					return ""
				}
				return fmt.Sprintf("%.1f MiB", mib(size(e.Memory)))
			},
			cmp: func(a, b *EngineResult) (string, bool) {
				if a.Memory == nil || b.Memory == nil {
					return "", false
				}
				rt, ok := ratio(float64(size(a.Memory)), float64(size(b.Memory)))
				return formatRatio(rt), ok
			},
		}
	}
	// mixedLatency shows the p50 and p99 of a mixed cell.
	mixedLatency := func(cell func(*EngineResult) *ThroughputCell) metric {
		return metric{
			show: func(e *EngineResult) string {
				if c := cell(e); c != nil && c.Completed > 0 {
					return fmt.Sprintf("%s / %s ms", fmtMs(c.Latency.P50), fmtMs(c.Latency.P99))
				}
				return ""
			},
			cmp: func(a, b *EngineResult) (string, bool) {
				ca, cb := cell(a), cell(b)
				if ca == nil || cb == nil {
					return "", false
				}
				return fmt.Sprintf("%s / %s", durRatio(ca.Latency.P50, cb.Latency.P50), durRatio(ca.Latency.P99, cb.Latency.P99)), true
			},
		}
	}
	// overloadKept is the overload cell's rate over the mixed one's, round
	// by round: 1.00 when overload costs nothing.
	overloadKept := metric{show: func(e *EngineResult) string {
		o, m := e.Overload, e.MixedThroughput
		if o == nil || m == nil {
			return ""
		}
		if r, ok := roundsRatio(o.Rounds, m.Rounds, o.PerSecond, m.PerSecond); ok {
			return formatRatio(r)
		}
		return ""
	}}
	// idle shows a zygote kind's idle footprint.
	idle := func(kind string) metric {
		find := func(e *EngineResult) *IdleKind {
			if e.Memory == nil || e.Status != StatusOK {
				return nil
			}
			for i := range e.Memory.IdleKinds {
				if e.Memory.IdleKinds[i].Kind == kind {
					return &e.Memory.IdleKinds[i]
				}
			}
			return nil
		}
		return metric{show: func(e *EngineResult) string {
			if k := find(e); k != nil {
				return fmt.Sprintf("%d + %d: %.1f / %.1f MiB", k.Zygotes, k.Spares, mib(k.Mem.Private), mib(k.Mem.Pss))
			}
			return ""
		}}
	}
	count := func(n func(Tally) int) metric {
		return metric{show: func(e *EngineResult) string {
			if e.Status == StatusUnavailable {
				return ""
			}
			return fmt.Sprint(n(e.Tally()))
		}}
	}
	named := func(name string, m metric) metric { m.name = name; return m }
	helloLat := func(e *EngineResult) *LatencyCell { return e.HelloLatency }
	pandasLat := func(e *EngineResult) *LatencyCell { return e.PandasLatency }
	argsLat := func(e *EngineResult) *LatencyCell { return e.ArgsLatency }
	plotLat := func(e *EngineResult) *LatencyCell { return e.PlotLatency }
	limitsLat := func(e *EngineResult) *LatencyCell { return e.LimitsLatency }
	helloTp := func(e *EngineResult) *ThroughputCell { return e.HelloThroughput }
	pandasTp := func(e *EngineResult) *ThroughputCell { return e.PandasThroughput }
	mixedTp := func(e *EngineResult) *ThroughputCell { return e.MixedThroughput }
	overTp := func(e *EngineResult) *ThroughputCell { return e.Overload }
	metrics := []metric{
		named("hello p50 / p90 / p99 (c=1)", vsPrimLatency(latency(helloLat), helloLat)),
		named("pandas p50 / p90 / p99 (c=1)", vsPrimLatency(latency(pandasLat), pandasLat)),
		named("args + files p50 / p90 / p99 (c=1)", latency(argsLat)),
		named("plot p50 / p90 / p99 (c=1)", vsPrimLatency(latency(plotLat), plotLat)),
		named("hello with memory_mb p50 / p90 / p99 (c=1)", vsPrimLatency(latency(limitsLat), limitsLat)),
		named(fmt.Sprintf("hello throughput (c=%d)", s.Concurrency), vsPrimRate(throughput(helloTp), helloTp)),
		named(fmt.Sprintf("pandas throughput (c=%d)", s.Concurrency), vsPrimRate(throughput(pandasTp), pandasTp)),
		named(fmt.Sprintf("mixed throughput (c=%d)", s.Concurrency), vsPrimRate(throughput(mixedTp), mixedTp)),
		named(fmt.Sprintf("mixed p50 / p99 (c=%d)", s.Concurrency), mixedLatency(mixedTp)),
		named(fmt.Sprintf("overload: mixed throughput (c=%d)", s.Overload), throughput(overTp)),
		named(fmt.Sprintf("overload: throughput c=%d / c=%d", s.Overload, s.Concurrency), overloadKept),
		named(fmt.Sprintf("overload: mixed p50 / p99 (c=%d)", s.Overload), mixedLatency(overTp)),
		named("private memory per in-flight pandas execution", memory(func(m *MemoryCell) int64 { return m.Own.Private })),
		named("added memory per execution (PSS)", memory(func(m *MemoryCell) int64 { return m.Added.Pss })),
		named("idle sandbox memory (PSS)", memory(func(m *MemoryCell) int64 { return m.Idle.Pss })),
	}
	for _, k := range r.idleKindNames() {
		metrics = append(metrics, named("idle "+k+" zygotes + spares: private / PSS", idle(k)))
	}
	metrics = append(metrics, named("non-200 answers", count(func(t Tally) int { return t.Non200 })))
	if slices.ContainsFunc(r.Engines, func(e EngineResult) bool { return e.Tally().WrongResult > 0 }) {
		metrics = append(metrics, named("200 answers with a wrong result", count(func(t Tally) int { return t.WrongResult })))
	}
	for _, m := range metrics {
		cells := []string{m.name}
		for i := range r.Engines {
			e := &r.Engines[i]
			v := m.show(e)
			if v == "" {
				v = placeholder(e)
			}
			cells = append(cells, v)
		}
		if prim != nil {
			v := ""
			if m.primShow != nil {
				v = m.primShow(prim)
			}
			if v == "" {
				v = "—"
				if prim.Status != StatusOK {
					v = placeholder(&EngineResult{Status: prim.Status})
				}
			}
			cells = append(cells, v)
		}
		for _, i := range others {
			v, ok := "", false
			if m.cmp != nil && r.Engines[i].Status == StatusOK && r.Engines[base].Status == StatusOK {
				v, ok = m.cmp(&r.Engines[i], &r.Engines[base])
			}
			if !ok {
				v = "—"
			}
			cells = append(cells, v)
		}
		if prim != nil {
			for i := range r.Engines {
				v, ok := "", false
				if m.vsPrim != nil {
					v, ok = m.vsPrim(&r.Engines[i], prim)
				}
				if !ok {
					v = "—"
				}
				cells = append(cells, v)
			}
		}
		row(&b, cells...)
	}

	var notes []string
	if prim != nil && prim.Status != StatusOK && prim.Reason != "" {
		notes = append(notes, fmt.Sprintf("- %s: %s: %s", PrimitiveName, prim.Status, prim.Reason))
	}
	if prim != nil {
		notes = append(notes, "- primitive: clone(2) into fresh user, mount, PID, network, IPC and UTS namespaces (the zygote's flags) "+
			"from a Python with numpy and pandas imported and gc frozen, the child exiting at once, run as root; "+
			"its latency is one clone and reap at a time, its rate with as many processes cloning as the throughput cells have requests in flight. "+
			"<engine>/primitive: latency over the primitive's single clone (percentile by percentile), throughput over its rate.")
	}
	for _, e := range r.Engines {
		if e.Status != StatusOK && e.Reason != "" {
			notes = append(notes, fmt.Sprintf("- %s: %s: %s", e.Engine, e.Status, e.Reason))
		}
		if t := e.Tally(); t.FirstFailure != "" {
			notes = append(notes, fmt.Sprintf("- %s: first failed request: %s", e.Engine, t.FirstFailure))
		}
	}
	notes = append(notes,
		"- Latency is client side, over keep-alive HTTP on loopback; percentiles by nearest rank over the requests that succeeded.",
		"- Private memory: Private_Clean+Private_Dirty of the sandboxed processes an execution adds. "+
			"Added memory: PSS of all sandboxed processes in flight minus idle, per execution (pages shared with a zygote or between jails split among their users). "+
			"The per-execution nsjail process of the cold engine runs as root and is not counted.",
		fmt.Sprintf("- Overload: the mixed cell at many more requests in flight than slots; c=%d / c=%d is its throughput over the mixed cell's, "+
			"the median of the rounds' ratios (as are the throughput ratios to the primitive, each round's primitive measured minutes before the engines').", s.Overload, s.Concurrency),
		"- Idle zygotes + spares: the sandboxed processes of the memory stack with nothing in flight, by zygote kind (what it preloads): zygotes + spares: private / PSS, summed.",
		"- Non-200 answers count every request of the run, warm-up included; requests without an answer count as non-200.")
	fmt.Fprintf(&b, "\n%s\n", strings.Join(notes, "\n"))
	_, err := io.WriteString(w, b.String())
	return err
}

// idleKindNames lists the zygote kinds of every engine's idle footprint,
// in order of appearance.
func (r *Report) idleKindNames() []string {
	var names []string
	for _, e := range r.Engines {
		if e.Memory == nil {
			continue
		}
		for _, k := range e.Memory.IdleKinds {
			if !slices.Contains(names, k.Kind) {
				names = append(names, k.Kind)
			}
		}
	}
	return names
}

// baseline is the index of the engine the ratios are against.
func (r *Report) baseline() int {
	for i, e := range r.Engines {
		if e.Engine == "cold" {
			return i
		}
	}
	return 0
}

func placeholder(e *EngineResult) string {
	switch e.Status {
	case StatusUnavailable:
		return "unavailable"
	case StatusFailed:
		return "failed"
	case StatusInterrupted:
		return "interrupted"
	}
	return "—"
}

func row(b *strings.Builder, cells ...string) {
	fmt.Fprintf(b, "| %s |\n", strings.Join(cells, " | "))
}

// fmtMs prints a latency in milliseconds with three significant digits at
// most, and at least a tenth of a millisecond.
func fmtMs(d time.Duration) string {
	v := ms(d)
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func durRatio(a, b time.Duration) string {
	r, ok := ratio(float64(a), float64(b))
	if !ok {
		return "—"
	}
	return formatRatio(r)
}
