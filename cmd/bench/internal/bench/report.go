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

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
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
		"memory with %d executions of the pandas example in flight, each sleeping %gs (supervisor -slots %d)\n\n",
		s.Requests, s.Warmup, s.Duration, s.Concurrency, s.Warmup, rounds, s.MemInFlight, s.MemHold, s.MemInFlight)

	base := r.baseline()
	header := []string{"metric"}
	for _, e := range r.Engines {
		header = append(header, e.Engine)
	}
	var others []int
	for i, e := range r.Engines {
		if i != base {
			others = append(others, i)
			header = append(header, e.Engine+"/"+r.Engines[base].Engine)
		}
	}
	row(&b, header...)
	align := []string{"---"}
	for range header[1:] {
		align = append(align, "---:")
	}
	row(&b, align...)

	// A metric is a value per engine, shown by show and compared by cmp
	// (false: no ratio).
	type metric struct {
		name string
		show func(*EngineResult) string
		cmp  func(a, b *EngineResult) (string, bool)
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
	count := func(n func(Tally) int) metric {
		return metric{show: func(e *EngineResult) string {
			if e.Status == StatusUnavailable {
				return ""
			}
			return fmt.Sprint(n(e.Tally()))
		}}
	}
	named := func(name string, m metric) metric { m.name = name; return m }
	metrics := []metric{
		named("hello p50 / p90 / p99 (c=1)", latency(func(e *EngineResult) *LatencyCell { return e.HelloLatency })),
		named("pandas p50 / p90 / p99 (c=1)", latency(func(e *EngineResult) *LatencyCell { return e.PandasLatency })),
		named(fmt.Sprintf("hello throughput (c=%d)", s.Concurrency), throughput(func(e *EngineResult) *ThroughputCell { return e.HelloThroughput })),
		named(fmt.Sprintf("pandas throughput (c=%d)", s.Concurrency), throughput(func(e *EngineResult) *ThroughputCell { return e.PandasThroughput })),
		named("private memory per execution", memory(func(m *MemoryCell) int64 { return m.Own.Private })),
		named("added memory per execution (PSS)", memory(func(m *MemoryCell) int64 { return m.Added.Pss })),
		named("idle sandbox memory (PSS)", memory(func(m *MemoryCell) int64 { return m.Idle.Pss })),
		named("non-200 answers", count(func(t Tally) int { return t.Non200 })),
	}
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
		row(&b, cells...)
	}

	var notes []string
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
		"- Non-200 answers count every request of the run, warm-up included; requests without an answer count as non-200.")
	fmt.Fprintf(&b, "\n%s\n", strings.Join(notes, "\n"))
	_, err := io.WriteString(w, b.String())
	return err
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
