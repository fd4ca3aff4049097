package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParsePrimitiveRate(t *testing.T) {
	got, err := parsePrimitiveRate([]byte(`{"mode": "rate", "concurrency": 4, "clones": 900, "seconds": 3.0}`+"\n"), 4)
	if err != nil || got != 300 {
		t.Fatalf("parsePrimitiveRate = %v, %v; want 300, nil", got, err)
	}
	for _, bad := range []string{
		``,
		`not json`,
		`{"mode": "latency", "concurrency": 4, "clones": 900, "seconds": 3.0}`,
		`{"mode": "rate", "concurrency": 2, "clones": 900, "seconds": 3.0}`,
		`{"mode": "rate", "concurrency": 4, "clones": 0, "seconds": 3.0}`,
		`{"mode": "rate", "concurrency": 4, "clones": 900, "seconds": 0}`,
	} {
		if _, err := parsePrimitiveRate([]byte(bad), 4); err == nil {
			t.Errorf("parsePrimitiveRate(%q) succeeded, want an error", bad)
		}
	}
}

func TestParsePrimitiveLatency(t *testing.T) {
	got, err := parsePrimitiveLatency([]byte(`{"mode": "latency", "samples_ns": [3000000, 1000000, 2000000, 4000000]}`), 4)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Percentiles{P50: 2 * time.Millisecond, P90: 4 * time.Millisecond, P99: 4 * time.Millisecond}); got.Latency != want || len(got.Samples) != 4 {
		t.Errorf("parsePrimitiveLatency = %+v, want %+v over 4 samples", got, want)
	}
	for _, bad := range []string{
		`{"mode": "latency", "samples_ns": [1, 2, 3]}`,
		`{"mode": "latency", "samples_ns": [1, 2, 3, 0]}`,
		`{"mode": "rate", "samples_ns": [1, 2, 3, 4]}`,
		`[]`,
	} {
		if _, err := parsePrimitiveLatency([]byte(bad), 4); err == nil {
			t.Errorf("parsePrimitiveLatency(%q) succeeded, want an error", bad)
		}
	}
}

// primitiveReport is testReport with the primitive measured: 4 ms a clone,
// 400 clones a second at c=4 (two rounds).
func primitiveReport() *Report {
	rep := testReport()
	rep.Primitive = &PrimitiveResult{
		Status:  StatusOK,
		Latency: &PrimitiveLatency{Samples: durations(4, 5, 10), Latency: Percentiles{P50: 4 * time.Millisecond, P90: 5 * time.Millisecond, P99: 10 * time.Millisecond}},
		Rate:    &PrimitiveRate{Concurrency: 4, PerSecond: 400, Rounds: []float64{400, 420}},
	}
	for i := range rep.Engines {
		rep.Engines[i].MixedThroughput = throughputCell(float64(20 * (i*8 + 1)))
		rep.Engines[i].MixedThroughput.Latency = Percentiles{P50: 10 * time.Millisecond, P99: 40 * time.Millisecond}
		rep.Engines[i].Overload = throughputCell(float64(18 * (i*8 + 1)))
		rep.Engines[i].Overload.Concurrency = 16
		rep.Engines[i].Overload.Latency = Percentiles{P50: 80 * time.Millisecond, P99: 200 * time.Millisecond}
	}
	rep.Engines[1].Memory.IdleKinds = []IdleKind{{Kind: "numpy,pandas", Zygotes: 2, Spares: 2, Mem: memUsage{Private: 40 << 20, Pss: 150 << 20}}}
	return rep
}

func TestWriteMarkdownPrimitiveAndOverload(t *testing.T) {
	var b bytes.Buffer
	if err := primitiveReport().WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"| metric | cold | warm | primitive | warm/cold | cold/primitive | warm/primitive |",
		"| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
		"| hello p50 / p90 / p99 (c=1) | 40.0 / 50.0 / 80.0 ms | 8.0 / 10.0 / 20.0 ms | 4.0 / 5.0 / 10.0 ms | 0.20 / 0.20 / 0.25 | 10.0 / 10.0 / 8.00 | 2.00 / 2.00 / 2.00 |",
		"| hello throughput (c=4) | 50.0 req/s | 200.0 req/s | 400.0 /s (400.0-420.0) | 4.00 | 0.12 | 0.50 |",
		"| pandas throughput (c=4) | 6.0 req/s | 120.0 req/s | 400.0 /s (400.0-420.0) | 20.0 | 0.015 | 0.30 |",
		"| mixed throughput (c=4) | 20.0 req/s | 180.0 req/s | 400.0 /s (400.0-420.0) | 9.00 | 0.050 | 0.45 |",
		"| mixed p50 / p99 (c=4) | 10.0 / 40.0 ms | 10.0 / 40.0 ms | — | 1.00 / 1.00 | — | — |",
		"| overload: mixed throughput (c=16) | 18.0 req/s | 162.0 req/s | — | 9.00 | — | — |",
		"| overload: throughput c=16 / c=4 | 0.90 | 0.90 | — | — | — | — |",
		"| overload: mixed p50 / p99 (c=16) | 80.0 / 200 ms | 80.0 / 200 ms | — | 1.00 / 1.00 | — | — |",
		"| idle numpy,pandas zygotes + spares: private / PSS | — | 2 + 2: 40.0 / 150.0 MiB | — | — | — | — |",
		"| non-200 answers | 0 | 0 | — | — | — | — |",
		"- primitive: clone(2) into fresh user, mount, PID, network, IPC and UTS namespaces",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("WriteMarkdown output lacks %q:\n%s", want, out)
		}
	}
}

func TestWriteMarkdownPrimitiveFailed(t *testing.T) {
	rep := primitiveReport()
	rep.Primitive = &PrimitiveResult{Status: StatusFailed, Reason: "primitive rate: clone: Operation not permitted"}
	var b bytes.Buffer
	if err := rep.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| hello throughput (c=4) | 50.0 req/s | 200.0 req/s | failed | 4.00 | — | — |",
		"- primitive: failed: primitive rate: clone: Operation not permitted",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("WriteMarkdown output lacks %q:\n%s", want, b.String())
		}
	}
	if !rep.Failed() {
		t.Error("Failed() = false with the primitive failed, want true")
	}
}

func TestWriteJSONRatiosToThePrimitive(t *testing.T) {
	var b bytes.Buffer
	if err := primitiveReport().WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Primitive struct {
			Status  string                               `json:"status"`
			Latency struct{ Latency map[string]float64 } `json:"latency"`
			Rate    struct {
				PerSecond float64 `json:"per_second"`
			} `json:"rate"`
		} `json:"primitive"`
		Engines []struct {
			Engine      string `json:"engine"`
			VsPrimitive struct {
				HelloLatency    []float64 `json:"hello_latency_p50_p90_p99"`
				HelloThroughput float64   `json:"hello_throughput"`
				MixedThroughput float64   `json:"mixed_throughput"`
			} `json:"vs_primitive"`
			Overload struct {
				Concurrency int                `json:"concurrency"`
				Latency     map[string]float64 `json:"latency"`
			} `json:"overload"`
			Memory struct {
				IdleKinds []struct {
					Kind    string             `json:"kind"`
					Zygotes int                `json:"zygotes"`
					Spares  int                `json:"spares"`
					Memory  map[string]float64 `json:"memory"`
				} `json:"idle_per_kind"`
			} `json:"memory"`
		} `json:"engines"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("invalid JSON: %v\n%s", err, b.String())
	}
	p, w := got.Primitive, got.Engines[1]
	if p.Status != "ok" || p.Latency.Latency["p50_ms"] != 4 || p.Rate.PerSecond != 400 {
		t.Errorf("primitive = %+v, want ok, p50 4 ms, 400/s", p)
	}
	if w.Engine != "warm" || len(w.VsPrimitive.HelloLatency) != 3 || w.VsPrimitive.HelloLatency[0] != 2 ||
		w.VsPrimitive.HelloThroughput != 0.5 || w.VsPrimitive.MixedThroughput != 0.45 {
		t.Errorf("warm vs primitive = %+v, want latency 2x, hello 0.5, mixed 0.45", w.VsPrimitive)
	}
	if w.Overload.Concurrency != 16 || w.Overload.Latency["p99_ms"] != 200 {
		t.Errorf("warm overload = %+v, want c=16 with p99 200 ms", w.Overload)
	}
	if k := w.Memory.IdleKinds; len(k) != 1 || k[0].Kind != "numpy,pandas" || k[0].Zygotes != 2 || k[0].Spares != 2 || k[0].Memory["private_mib"] != 40 {
		t.Errorf("warm idle per kind = %+v, want one numpy,pandas kind of 2 + 2 with 40 MiB private", k)
	}
}

func TestIdleKindsGroupsSparesUnderTheirZygote(t *testing.T) {
	// nsjail 10 (root) -> zygote 11 -> spares 12, 13; nsjail 20 -> zygote
	// 21 -> spare 22; nsjail 30 -> zygote 31 of another kind.
	s := sandboxSample{
		Pids:   []int{11, 12, 13, 21, 22, 31},
		Parent: map[int]int{11: 10, 12: 11, 13: 11, 21: 20, 22: 21, 31: 30},
		PerPid: map[int]memUsage{
			11: {Private: 10, Pss: 100}, 12: {Private: 1, Pss: 5}, 13: {Private: 1, Pss: 5},
			21: {Private: 10, Pss: 100}, 22: {Private: 1, Pss: 5}, 31: {Private: 7, Pss: 30},
		},
	}
	got := idleKinds(s, func(pid int) string {
		if pid == 31 {
			return "slim"
		}
		return "numpy,pandas"
	})
	want := []IdleKind{
		{Kind: "numpy,pandas", Zygotes: 2, Spares: 3, Mem: memUsage{Private: 23, Pss: 215}},
		{Kind: "slim", Zygotes: 1, Spares: 0, Mem: memUsage{Private: 7, Pss: 30}},
	}
	if len(got) != len(want) {
		t.Fatalf("idleKinds = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("kind %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if got := idleKinds(sandboxSample{}, func(int) string { return "x" }); len(got) != 0 {
		t.Errorf("idleKinds of nothing = %+v, want none", got)
	}
}

// TestMeasureThroughputMixesInEqualParts runs the throughput loop against a
// fake service that counts the scripts it gets.
func TestMeasureThroughputMixesInEqualParts(t *testing.T) {
	hello := newScript("hello", helloSource, helloResult)
	pandas := newScript("pandas", pandasSource, pandasResult)
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req struct{ Script string }
		json.Unmarshal(body, &req)
		mu.Lock()
		defer mu.Unlock()
		switch req.Script {
		case helloSource:
			seen["hello"]++
			io.WriteString(w, `{"result": `+helloResult+`}`)
		case pandasSource:
			seen["pandas"]++
			io.WriteString(w, `{"result": `+pandasResult+`}`)
		default:
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	defer srv.Close()
	cell, err := measureThroughput(context.Background(), newHTTPClient(8), srv.URL, []script{hello, pandas}, 4, 8, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if cell.Failed() || cell.Completed == 0 || cell.Concurrency != 8 {
		t.Fatalf("cell = %+v, want only correct answers at c=8", cell)
	}
	if d := seen["hello"] - seen["pandas"]; d < -1 || d > 1 {
		t.Errorf("requests per script = %v, want equal parts (within one)", seen)
	}
}

// TestPrimitiveScriptRuns runs primitive.py for real, briefly, with the
// checkout's venv (make setup), as the bench does: as root.
func TestPrimitiveScriptRuns(t *testing.T) {
	venv, err := filepath.Abs("../../../../.venv")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(venv, "bin", "python3")); err != nil || os.Geteuid() != 0 {
		// As everywhere in the project: any CI value makes a missing
		// prerequisite a failure, not a skip.
		if os.Getenv("CI") != "" {
			t.Fatalf("needs root and the venv at %s (make setup): euid %d, %v", venv, os.Geteuid(), err)
		}
		t.Skipf("needs root and the venv at %s (make setup)", venv)
	}
	cfg := DefaultConfig()
	cfg.Venv, cfg.Requests, cfg.Concurrency, cfg.Duration = venv, 5, 2, 300*time.Millisecond
	var res PrimitiveResult
	for round := 1; round <= 2; round++ {
		if err := measurePrimitive(context.Background(), cfg, round, &res); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	if res.Status != StatusOK || res.Latency == nil || len(res.Latency.Samples) != 5 || res.Latency.Latency.P50 <= 0 ||
		res.Rate == nil || res.Rate.Concurrency != 2 || len(res.Rate.Rounds) != 2 || res.Rate.PerSecond <= 0 {
		t.Errorf("primitive = %+v (latency %+v, rate %+v), want 5 samples and 2 rounds at c=2", res, res.Latency, res.Rate)
	}
}

func TestRoundsRatioPairsTheRounds(t *testing.T) {
	// The machine's load drifts: round 2 is slow for both. The median of the
	// rounds' ratios is 0.5; the ratio of the medians would be 100/300.
	a, b := []float64{100, 20, 110}, []float64{200, 40, 220}
	if r, ok := roundsRatio(a, b, medianRound(a), 300); !ok || r != 0.5 {
		t.Errorf("roundsRatio = %v, %v; want 0.5", r, ok)
	}
	if r, ok := roundsRatio([]float64{100}, []float64{200, 300}, 100, 400); !ok || r != 0.25 {
		t.Errorf("roundsRatio of unequal rounds = %v, %v; want the medians' 0.25", r, ok)
	}
	if _, ok := roundsRatio([]float64{100, 0}, []float64{200, 300}, 100, 200); ok {
		t.Error("roundsRatio with a round of no rate reported a ratio")
	}
}
