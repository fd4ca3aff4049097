package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"slices"
	"sync"
	"time"
)

// script is one workload: the request body that runs it and the result a
// correct answer carries.
type script struct {
	name string
	body []byte
	want any // main()'s return value, decoded from JSON
}

func newScript(name, source, want string) script {
	body, err := json.Marshal(struct {
		Script string `json:"script"`
	}{source})
	if err != nil {
		panic(err) // a string always encodes
	}
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		panic(fmt.Sprintf("script %s: bad expected result: %v", name, err))
	}
	return script{name: name, body: body, want: w}
}

// argsScript is the args row of make bench: data passed as args and as an
// input file, a file written to output/ and returned.
func argsScript() script {
	body, err := json.Marshal(map[string]any{
		"script": "import os\n\ndef main(name, values):\n    rows = open('in.csv').read().splitlines()\n    os.mkdir('output')\n    open('output/out.csv', 'w').write(';'.join(rows))\n    return {'name': name, 'sum': sum(values), 'rows': len(rows)}",
		"args":   map[string]any{"name": "args", "values": []int{1, 2, 3}},
		"files":  []map[string]string{{"name": "in.csv", "content": "a,b\n1,2\n"}},
	})
	if err != nil {
		panic(err)
	}
	var w any
	json.Unmarshal([]byte(`{"name": "args", "sum": 6, "rows": 2}`), &w)
	return script{name: "args", body: body, want: w}
}

// limitsScript is the hello example sent with a memory limit of its own
// (memory_mb 256, below the default): a client that always sends limits,
// which the warm engine's spares learn to follow after a few executions
// (the cell's warm-up).
func limitsScript() script {
	s := newScript("limits", helloSource, helloResult)
	body, err := json.Marshal(map[string]any{"script": helloSource, "memory_mb": 256})
	if err != nil {
		panic(err)
	}
	s.body = body
	return s
}

// The two workloads are the seed README's examples, character for character.
const (
	helloSource  = `def main(): return {"message": "Hello World", "result": 42}`
	helloResult  = `{"message": "Hello World", "result": 42}`
	pandasSource = `
import pandas as pd
import numpy as np

def main():
    df = pd.DataFrame({"A": [1, 2, 3], "B": [4, 5, 6]})
    return {
        "shape": df.shape,
        "sum": df.sum().to_dict(),
        "mean": df.mean().to_dict()
    }
`
	pandasResult = `{"shape": [3, 2], "sum": {"A": 6, "B": 15}, "mean": {"A": 2.0, "B": 5.0}}`
)

// The plot workload is the README's df.plot() example: one figure rendered
// to a PNG of about 30 KiB that comes back in "images".
const (
	plotSource = `
import pandas as pd

def main():
    df = pd.DataFrame({"month": ["Jan", "Feb", "Mar", "Apr", "May", "Jun"],
                       "sales": [120, 135, 160, 150, 180, 210],
                       "costs": [100, 110, 115, 130, 125, 140]})
    ax = df.plot(x="month", y=["sales", "costs"], marker="o", title="Sales and costs")
    ax.set_ylabel("k$")
    return {"total_sales": int(df["sales"].sum())}
`
	plotResult = `{"total_sales": 955}`
)

// holdingScript is the pandas example that sleeps for hold before it
// returns, to keep executions in flight while their memory is measured.
func holdingScript(hold time.Duration) script {
	src := fmt.Sprintf(`
import time
import pandas as pd
import numpy as np

def main():
    df = pd.DataFrame({"A": [1, 2, 3], "B": [4, 5, 6]})
    time.sleep(%.3f)
    return {
        "shape": df.shape,
        "sum": df.sum().to_dict(),
        "mean": df.mean().to_dict()
    }
`, hold.Seconds())
	return newScript("pandas-hold", src, pandasResult)
}

// Tally counts the answers of one cell, warm-up included.
type Tally struct {
	Requests int `json:"requests"`
	// Non200 counts answers with any status but 200, and requests that got
	// no answer at all (also counted in NoAnswer).
	Non200   int `json:"non_200"`
	NoAnswer int `json:"no_answer"`
	// WrongResult counts 200 answers whose result is not the expected one.
	WrongResult int `json:"wrong_result"`
	// FirstFailure describes the first failed request, for the log.
	FirstFailure string `json:"first_failure,omitempty"`
}

// Failed reports whether any request failed.
func (t Tally) Failed() bool { return t.Non200 > 0 || t.WrongResult > 0 }

func (t *Tally) add(a answer) {
	t.Requests++
	switch {
	case a.err != nil:
		t.Non200++
		t.NoAnswer++
	case a.status != http.StatusOK:
		t.Non200++
	case !a.correct:
		t.WrongResult++
	default:
		return
	}
	if t.FirstFailure == "" {
		t.FirstFailure = a.String()
	}
}

func (t *Tally) merge(o Tally) {
	t.Requests += o.Requests
	t.Non200 += o.Non200
	t.NoAnswer += o.NoAnswer
	t.WrongResult += o.WrongResult
	if t.FirstFailure == "" {
		t.FirstFailure = o.FirstFailure
	}
}

// answer is the outcome of one request.
type answer struct {
	status  int
	correct bool // status 200 and the expected result
	body    []byte
	err     error // no answer
	took    time.Duration
}

func (a answer) ok() bool { return a.err == nil && a.correct }

func (a answer) String() string {
	if a.err != nil {
		return "no answer: " + a.err.Error()
	}
	b := a.body
	if len(b) > 300 {
		b = b[:300]
	}
	return fmt.Sprintf("status %d: %s", a.status, b)
}

// newHTTPClient returns a keep-alive client for the loopback gateway: no
// proxy from the environment, no compression, idle connections for conns
// concurrent requests.
func newHTTPClient(conns int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		},
		// The longest execution is 30 s; the gateway adds its grace.
		Timeout: 90 * time.Second,
	}
}

// execute posts sc to url/execute and checks the answer.
func execute(ctx context.Context, c *http.Client, url string, sc script) answer {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/execute", bytes.NewReader(sc.body))
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return answer{err: err, took: time.Since(start)}
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	a := answer{status: resp.StatusCode, body: body, err: err, took: time.Since(start)}
	if err == nil && a.status == http.StatusOK {
		var got struct {
			Result any `json:"result"`
		}
		a.correct = json.Unmarshal(body, &got) == nil && reflect.DeepEqual(got.Result, sc.want)
	}
	return a
}

// LatencyCell is one script's latency at concurrency 1.
type LatencyCell struct {
	Tally
	// Samples are the latencies of the measured (not warm-up) requests that
	// succeeded, client side: from sending the request to the last byte of
	// the answer.
	Samples []time.Duration `json:"-"`
	Latency Percentiles     `json:"latency"`
}

// measureLatency sends warmup requests, then n more one after the other.
// It fails only when ctx ends.
func measureLatency(ctx context.Context, c *http.Client, url string, sc script, warmup, n int) (LatencyCell, error) {
	var cell LatencyCell
	for i := 0; i < warmup+n; i++ {
		a := execute(ctx, c, url, sc)
		if err := ctx.Err(); err != nil {
			return cell, err
		}
		cell.add(a)
		if i >= warmup && a.ok() {
			cell.Samples = append(cell.Samples, a.took)
		}
	}
	cell.Latency = summarize(cell.Samples)
	return cell, nil
}

// ThroughputCell is one script's throughput at a fixed concurrency.
type ThroughputCell struct {
	Tally
	Concurrency int `json:"concurrency"`
	// Completed counts the correct answers in the measured period.
	Completed int `json:"completed"`
	// Elapsed runs from the start of the measured period to the last answer.
	Elapsed   time.Duration `json:"-"`
	PerSecond float64       `json:"per_second"`
	// Latency is the per-request latency under this load.
	Latency Percentiles `json:"latency"`
	// Rounds are the rates of every round, in order. PerSecond is their
	// median; Latency and Elapsed are the first round's; Tally and
	// Completed sum every round.
	Rounds []float64 `json:"rounds_per_second,omitempty"`
}

// addRound adds round c to cell (nil before the first round) and returns
// the result.
func addRound(cell *ThroughputCell, c ThroughputCell) *ThroughputCell {
	if cell == nil {
		c.Rounds = []float64{c.PerSecond}
		return &c
	}
	sum := *cell
	sum.Tally.merge(c.Tally)
	sum.Completed += c.Completed
	sum.Rounds = append(slices.Clone(cell.Rounds), c.PerSecond)
	sum.PerSecond = medianRound(sum.Rounds)
	return &sum
}

// medianRound is the median of rates: the middle one, the lower middle
// with an even count, so that it is one of the measured rounds.
func medianRound(rates []float64) float64 {
	s := slices.Clone(rates)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// measureThroughput keeps conc requests in flight: first warmup requests in
// all, then for d, after which no request is started and the ones in
// flight are waited for. The requests take the scripts in turn (one script:
// all the same; several: a mix in equal parts). It fails only when ctx ends.
func measureThroughput(ctx context.Context, c *http.Client, url string, scripts []script, warmup, conc int, d time.Duration) (ThroughputCell, error) {
	cell := ThroughputCell{Concurrency: conc}
	var (
		mu      sync.Mutex // guards cell, samples, last, turn
		samples []time.Duration
		last    time.Time
		turn    int
	)
	pick := func() script {
		mu.Lock()
		defer mu.Unlock()
		turn++
		return scripts[turn%len(scripts)]
	}
	run := func(next func() bool, measured bool) {
		var wg sync.WaitGroup
		for range conc {
			wg.Go(func() {
				for next() && ctx.Err() == nil {
					a := execute(ctx, c, url, pick())
					if ctx.Err() != nil {
						return
					}
					mu.Lock()
					cell.add(a)
					if measured && a.ok() {
						cell.Completed++
						samples = append(samples, a.took)
						last = time.Now()
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	var left = warmup
	var lmu sync.Mutex // guards left
	run(func() bool {
		lmu.Lock()
		defer lmu.Unlock()
		left--
		return left >= 0
	}, false)
	if err := ctx.Err(); err != nil {
		return cell, err
	}
	start := time.Now()
	deadline := start.Add(d)
	run(func() bool { return time.Now().Before(deadline) }, true)
	if err := ctx.Err(); err != nil {
		return cell, err
	}
	if cell.Completed > 0 {
		cell.Elapsed = last.Sub(start)
		cell.PerSecond = float64(cell.Completed) / cell.Elapsed.Seconds()
	}
	cell.Latency = summarize(samples)
	return cell, nil
}
