package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/python-executor/python-executor/internal/stack"
)

// Outcomes of one request.
const (
	outOK       = "ok"
	outBusy     = "busy"
	outWrong    = "wrong"
	outInternal = "internal"
	outLost     = "lost"
	outHung     = "hung"
)

// counts are the outcomes of one kind's requests (or all of them).
type counts struct {
	Requests int `json:"requests"`
	OK       int `json:"ok"`
	Busy     int `json:"busy"`
	Wrong    int `json:"wrong"`
	Internal int `json:"internal"`
	Lost     int `json:"lost"`
	Hung     int `json:"hung"`
}

func (c *counts) add(out string) {
	c.Requests++
	switch out {
	case outOK:
		c.OK++
	case outBusy:
		c.Busy++
	case outWrong:
		c.Wrong++
	case outInternal:
		c.Internal++
	case outLost:
		c.Lost++
	case outHung:
		c.Hung++
	}
}

func (c counts) bad() int { return c.Wrong + c.Internal + c.Lost + c.Hung }

// report is one engine's soak.
type report struct {
	Engine      string            `json:"engine"`
	Seconds     float64           `json:"seconds"`
	Concurrency int               `json:"concurrency"`
	Slots       int               `json:"slots"`
	Total       counts            `json:"total"`
	Kinds       map[string]counts `json:"kinds"`
	HostilePct  float64           `json:"hostile_pct"`
	BenignP50MS float64           `json:"benign_p50_ms"`
	BenignP99MS float64           `json:"benign_p99_ms"`
	Supervisor  [2]usage          `json:"supervisor_before_after"`
	Gateway     [2]usage          `json:"gateway_before_after"`
	// Examples holds up to three bad answers per kind, for the log.
	Examples map[string][]string `json:"examples,omitempty"`
	Failures []string            `json:"failures"`
}

// request is one prepared kind: its body and client timeout.
type request struct {
	kind
	body    []byte
	timeout time.Duration
}

func prepare(k kind) request {
	req := map[string]any{"script": k.script}
	for f, v := range k.extra {
		req[f] = v
	}
	body, _ := json.Marshal(req)
	t := 30 * time.Second // the server's default timeout
	if v, ok := k.extra["timeout"].(int); ok {
		t = time.Duration(v) * time.Second
	}
	return request{kind: k, body: body, timeout: t + hungGrace}
}

// do sends one request and classifies its answer.
func do(ctx context.Context, c *http.Client, url string, r request) (out, why string, took time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	start := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/execute", bytes.NewReader(r.body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err == nil {
		defer resp.Body.Close()
	}
	var body []byte
	if err == nil {
		body, err = io.ReadAll(resp.Body)
	}
	took = time.Since(start)
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return outHung, fmt.Sprintf("no answer within %v", r.timeout), took
		}
		return outLost, err.Error(), took
	}
	a := &answer{Status: resp.StatusCode}
	if err := json.Unmarshal(body, &a.Body); err != nil {
		return outLost, fmt.Sprintf("status %d, body not JSON: %q", resp.StatusCode, clip(string(body))), took
	}
	switch {
	case a.errType() == "internal":
		return outInternal, a.Body.Error.Message, took
	case a.Status == http.StatusServiceUnavailable && a.errType() == "busy":
		return outBusy, "", took
	}
	if w := r.accept(a); w != "" {
		return outWrong, w, took
	}
	return outOK, "", took
}

// soak runs one engine's stack through warm-up, load and shutdown.
func soak(ctx context.Context, cfg config, sc stack.Config, mix []kind) *report {
	rep := &report{Engine: sc.Engine, Concurrency: cfg.concurrency, Slots: cfg.slots,
		Kinds: map[string]counts{}, Examples: map[string][]string{}}
	fail := func(format string, args ...any) { rep.Failures = append(rep.Failures, fmt.Sprintf(format, args...)) }
	logf("%s: starting the stack", sc.Engine)
	st, err := stack.Start(ctx, sc)
	if err != nil {
		fail("start: %v", err)
		return rep
	}
	client := &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: cfg.concurrency,
		DisableCompression:  true,
	}}
	var benign, hostile []request
	for _, k := range mix {
		if k.hostile {
			hostile = append(hostile, prepare(k))
		} else {
			benign = append(benign, prepare(k))
		}
	}

	// Warm-up: every kind once, so the before sample is of a stack that has
	// seen all of them (buffers grown, pools filled).
	logf("%s: warm-up", sc.Engine)
	var wg sync.WaitGroup
	for _, r := range append(slices.Clone(benign), hostile...) {
		wg.Add(1)
		go func() { defer wg.Done(); do(ctx, client, st.URL, r) }()
	}
	wg.Wait()
	client.CloseIdleConnections()
	time.Sleep(2 * time.Second)
	rep.Supervisor[0], _ = sample(st.Supervisor.Pid())
	rep.Gateway[0], _ = sample(st.Gateway.Pid())

	logf("%s: %v of load, %d in flight, %d slots", sc.Engine, cfg.duration, cfg.concurrency, cfg.slots)
	var mu sync.Mutex
	var benignMS []float64
	total := 0
	hostileN := 0
	start := time.Now()
	end := start.Add(cfg.duration)
	for w := range cfg.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(start.UnixNano())))
			for time.Now().Before(end) && ctx.Err() == nil {
				var r request
				if len(hostile) > 0 && rng.Float64() < cfg.hostileShare {
					r = hostile[rng.IntN(len(hostile))]
				} else {
					r = benign[rng.IntN(len(benign))]
				}
				out, why, took := do(ctx, client, st.URL, r)
				if ctx.Err() != nil {
					return // interrupted: not the service's fault
				}
				mu.Lock()
				total++
				if r.hostile {
					hostileN++
				}
				c := rep.Kinds[r.name]
				c.add(out)
				rep.Kinds[r.name] = c
				rep.Total.add(out)
				if out == outOK && !r.hostile {
					benignMS = append(benignMS, float64(took.Microseconds())/1000)
				}
				if why != "" && out != outOK && len(rep.Examples[r.name]) < 3 {
					rep.Examples[r.name] = append(rep.Examples[r.name], out+": "+clip(why))
				}
				mu.Unlock()
				if out == outBusy {
					time.Sleep(100 * time.Millisecond) // as Retry-After asks, shortened
				}
			}
		}()
	}
	wg.Wait()
	rep.Seconds = time.Since(start).Seconds()
	if total > 0 {
		rep.HostilePct = 100 * float64(hostileN) / float64(total)
	}
	sort.Float64s(benignMS)
	rep.BenignP50MS, rep.BenignP99MS = percentile(benignMS, 50), percentile(benignMS, 99)

	client.CloseIdleConnections()
	time.Sleep(3 * time.Second) // executions killed at the end finish their clean-up
	rep.Supervisor[1], _ = sample(st.Supervisor.Pid())
	rep.Gateway[1], _ = sample(st.Gateway.Pid())

	if n := rep.Total.bad(); n > 0 {
		fail("%d of %d answers were wrong, internal, lost or hung", n, rep.Total.Requests)
	}
	if benign := rep.Total.Requests - hostileN; benign > 0 && len(benignMS) == 0 {
		fail("no benign request got its answer")
	}
	for _, p := range []struct {
		name string
		u    [2]usage
	}{{"supervisor", rep.Supervisor}, {"gateway", rep.Gateway}} {
		if g := p.u[1].RSSKiB - p.u[0].RSSKiB; g > cfg.maxRSSGrowth {
			fail("%s RSS grew by %d MiB (from %d to %d MiB), over the bound of %d MiB", p.name, g>>10, p.u[0].RSSKiB>>10, p.u[1].RSSKiB>>10, cfg.maxRSSGrowth>>10)
		}
		if g := p.u[1].FDs - p.u[0].FDs; g > cfg.maxFDGrowth {
			fail("%s open fds grew by %d (from %d to %d), over the bound of %d", p.name, g, p.u[0].FDs, p.u[1].FDs, cfg.maxFDGrowth)
		}
	}
	logf("%s: stopping the stack", sc.Engine)
	if err := st.Stop(); err != nil {
		fail("stop: %v", err)
	}
	if len(rep.Failures) > 0 {
		logf("%s: the supervisor's last errors:\n%s", sc.Engine, st.Supervisor.Log.ErrorLines())
	}
	return rep
}

func (r *report) writeText(w io.Writer) {
	fmt.Fprintf(w, "\n== soak: %s engine, %.0f s, %d in flight, %d slots, %.0f%% hostile ==\n", r.Engine, r.Seconds, r.Concurrency, r.Slots, r.HostilePct)
	fmt.Fprintf(w, "%-14s %8s %8s %6s %6s %9s %5s %5s\n", "kind", "requests", "ok", "busy", "wrong", "internal", "lost", "hung")
	names := make([]string, 0, len(r.Kinds))
	for n := range r.Kinds {
		names = append(names, n)
	}
	sort.Strings(names)
	row := func(n string, c counts) {
		fmt.Fprintf(w, "%-14s %8d %8d %6d %6d %9d %5d %5d\n", n, c.Requests, c.OK, c.Busy, c.Wrong, c.Internal, c.Lost, c.Hung)
	}
	for _, n := range names {
		row(n, r.Kinds[n])
	}
	row("TOTAL", r.Total)
	fmt.Fprintf(w, "benign latency: p50 %.0f ms, p99 %.0f ms\n", r.BenignP50MS, r.BenignP99MS)
	fmt.Fprintf(w, "supervisor: RSS %d -> %d MiB, fds %d -> %d\n", r.Supervisor[0].RSSKiB>>10, r.Supervisor[1].RSSKiB>>10, r.Supervisor[0].FDs, r.Supervisor[1].FDs)
	fmt.Fprintf(w, "gateway:    RSS %d -> %d MiB, fds %d -> %d\n", r.Gateway[0].RSSKiB>>10, r.Gateway[1].RSSKiB>>10, r.Gateway[0].FDs, r.Gateway[1].FDs)
	for _, n := range names {
		for _, e := range r.Examples[n] {
			fmt.Fprintf(w, "  %s: %s\n", n, e)
		}
	}
	if len(r.Failures) == 0 {
		fmt.Fprintln(w, "PASS")
		return
	}
	for _, f := range r.Failures {
		fmt.Fprintln(w, "FAIL:", f)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(stderr, "soak: "+format+"\n", args...)
}

var stderr io.Writer = os.Stderr
