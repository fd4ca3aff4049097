package bench

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func latencyCell(p50, p90, p99 int) *LatencyCell {
	c := &LatencyCell{Samples: durations(p50, p90, p99)}
	c.Requests = 3
	c.Latency = Percentiles{P50: time.Duration(p50) * time.Millisecond, P90: time.Duration(p90) * time.Millisecond, P99: time.Duration(p99) * time.Millisecond}
	return c
}

func throughputCell(perSecond float64) *ThroughputCell {
	return &ThroughputCell{Concurrency: 4, Completed: 10, PerSecond: perSecond}
}

func testReport() *Report {
	return &Report{
		Machine:  Machine{CPUs: 2, Model: "AMD EPYC", Kernel: "Linux 6.1", Date: "2025-01-02 03:04 UTC"},
		Settings: Settings{Requests: 200, Warmup: 20, Duration: 10, Concurrency: 4, Overload: 16, MemInFlight: 4, MemHold: 3},
		Engines: []EngineResult{
			{
				Engine: "cold", Status: StatusOK,
				HelloLatency: latencyCell(40, 50, 80), PandasLatency: latencyCell(400, 450, 500),
				HelloThroughput: throughputCell(50), PandasThroughput: throughputCell(6),
				Memory: &MemoryCell{InFlight: 4, Own: memUsage{Private: 60 << 20}, Added: memUsage{Pss: 64 << 20}},
			},
			{
				Engine: "warm", Status: StatusOK,
				HelloLatency: latencyCell(8, 10, 20), PandasLatency: latencyCell(12, 15, 25),
				HelloThroughput: throughputCell(200), PandasThroughput: throughputCell(120),
				Memory: &MemoryCell{InFlight: 4, Own: memUsage{Private: 3 << 20}, Added: memUsage{Pss: 4 << 20}, Idle: memUsage{Pss: 150 << 20}},
			},
		},
	}
}

func TestWriteMarkdownRatios(t *testing.T) {
	var b bytes.Buffer
	if err := testReport().WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"machine: 2 CPUs, AMD EPYC, Linux 6.1, 2025-01-02 03:04 UTC",
		"| metric | cold | warm | warm/cold |",
		"| hello p50 / p90 / p99 (c=1) | 40.0 / 50.0 / 80.0 ms | 8.0 / 10.0 / 20.0 ms | 0.20 / 0.20 / 0.25 |",
		"| pandas p50 / p90 / p99 (c=1) | 400 / 450 / 500 ms | 12.0 / 15.0 / 25.0 ms | 0.030 / 0.033 / 0.050 |",
		"| hello throughput (c=4) | 50.0 req/s | 200.0 req/s | 4.00 |",
		"| pandas throughput (c=4) | 6.0 req/s | 120.0 req/s | 20.0 |",
		"| private memory per in-flight pandas execution | 60.0 MiB | 3.0 MiB | 0.050 |",
		"| added memory per execution (PSS) | 64.0 MiB | 4.0 MiB | 0.062 |",
		"| idle sandbox memory (PSS) | 0.0 MiB | 150.0 MiB | — |",
		"| non-200 answers | 0 | 0 | — |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("WriteMarkdown output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "wrong result") {
		t.Errorf("WriteMarkdown shows a wrong-result row with no wrong result:\n%s", out)
	}
}

func TestWriteMarkdownUnavailableEngine(t *testing.T) {
	rep := testReport()
	rep.Engines[1] = EngineResult{Engine: "warm", Status: StatusUnavailable, Reason: `the supervisor runs the "cold" engine instead`}
	rep.Engines[0].PandasThroughput.Non200 = 2
	rep.Engines[0].PandasThroughput.FirstFailure = "status 503: busy"
	var b bytes.Buffer
	if err := rep.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"| hello p50 / p90 / p99 (c=1) | 40.0 / 50.0 / 80.0 ms | unavailable | — |",
		"| non-200 answers | 2 | unavailable | — |",
		`- warm: unavailable: the supervisor runs the "cold" engine instead`,
		"- cold: first failed request: status 503: busy",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("WriteMarkdown output lacks %q:\n%s", want, out)
		}
	}
	if !rep.Failed() {
		t.Errorf("Failed() = false with 2 non-200 answers, want true")
	}
}

func TestWriteMarkdownOneEngineHasNoRatio(t *testing.T) {
	rep := testReport()
	rep.Engines = rep.Engines[:1]
	var b bytes.Buffer
	if err := rep.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	if want := "| metric | cold |\n| --- | ---: |\n"; !strings.Contains(b.String(), want) {
		t.Errorf("WriteMarkdown output lacks %q:\n%s", want, b.String())
	}
}

func TestReportFailed(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Report)
		want bool
	}{
		{"all good", func(*Report) {}, false},
		{"warm unavailable", func(r *Report) { r.Engines[1] = EngineResult{Engine: "warm", Status: StatusUnavailable} }, false},
		{"all unavailable", func(r *Report) {
			for i := range r.Engines {
				r.Engines[i].Status = StatusUnavailable
			}
		}, true},
		{"a failed engine", func(r *Report) { r.Engines[1].Status = StatusFailed }, true},
		{"a wrong result", func(r *Report) { r.Engines[1].Memory.WrongResult = 1 }, true},
		{"a non-200 in warm-up", func(r *Report) { r.Engines[0].HelloLatency.Non200 = 1 }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := testReport()
			tt.edit(rep)
			if got := rep.Failed(); got != tt.want {
				t.Errorf("Failed() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWriteJSON(t *testing.T) {
	var b bytes.Buffer
	if err := testReport().WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Engines []struct {
			Engine       string `json:"engine"`
			HelloLatency struct {
				Latency map[string]float64 `json:"latency"`
				Non200  *int               `json:"non_200"`
			} `json:"hello_latency"`
			Memory struct {
				Added map[string]float64 `json:"added_per_execution"`
			} `json:"memory"`
		} `json:"engines"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("WriteJSON wrote invalid JSON: %v\n%s", err, b.String())
	}
	e := got.Engines[0]
	if e.Engine != "cold" || e.HelloLatency.Latency["p50_ms"] != 40 || e.HelloLatency.Non200 == nil || e.Memory.Added["pss_mib"] != 64 {
		t.Errorf("WriteJSON = %s: want cold with p50_ms 40, non_200 and pss_mib 64", b.String())
	}
}

func TestCPUModel(t *testing.T) {
	in := "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel\t\t: 1\nmodel name\t: AMD  EPYC 7B13\nprocessor\t: 1\nmodel name\t: other\n"
	if got := cpuModel([]byte(in)); got != "AMD EPYC 7B13" {
		t.Errorf("cpuModel = %q, want %q", got, "AMD EPYC 7B13")
	}
	if got := cpuModel([]byte("processor\t: 0\n")); got != "" {
		t.Errorf("cpuModel(no model name) = %q, want empty", got)
	}
}

func TestThroughputRoundsReportTheMedian(t *testing.T) {
	var cell *ThroughputCell
	for i, rate := range []float64{140, 120, 131} {
		c := ThroughputCell{Concurrency: 4, Completed: 10 * (i + 1), PerSecond: rate}
		c.Requests = 10 * (i + 1)
		if i == 1 {
			c.Non200 = 1
		}
		cell = addRound(cell, c)
	}
	if cell.PerSecond != 131 || cell.Completed != 60 || cell.Requests != 60 || cell.Non200 != 1 {
		t.Fatalf("after 3 rounds: %+v, want the median rate 131 and sums 60 completed, 60 requests, 1 non-200", cell)
	}
	if got := medianRound([]float64{3, 1, 4, 2}); got != 2 {
		t.Errorf("median of an even count = %v, want the lower middle 2 (a measured round)", got)
	}
	rep := testReport()
	rep.Settings.Rounds = 3
	rep.Engines[1].PandasThroughput = cell
	var b bytes.Buffer
	if err := rep.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"median of 3 rounds with the engines taking turns",
		"| pandas throughput (c=4) | 6.0 req/s | 131.0 req/s (120.0-140.0) | 21.8 |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}
