// Package bench is the benchmark behind cmd/bench (make bench): for each
// execution engine in turn it starts the real stack, the supervisor as root
// and the gateway as its own user on a loopback port, and measures over HTTP
// the seed README's hello-world and pandas scripts: latency at concurrency
// 1, throughput at concurrency 4, and the memory of the sandboxed processes
// per execution in flight; and an overload cell, a mix of both at many more
// requests in flight than the supervisor has slots. In the same run it
// measures the primitive the warm engine is built on (primitive.py: a clone
// into fresh namespaces from a process with the zygote's preloads) and
// reports the engines side by side with their ratios to each other and to
// that primitive.
//
// It drives the service only from outside, through its binaries, its HTTP
// API and /proc; of the project's packages it imports only internal/stack,
// which starts and stops the stack for it and for cmd/soak. Only cmd/bench
// imports it.
package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/python-executor/python-executor/internal/stack"
)

// Config says what to measure and where the stack is. Start from
// DefaultConfig.
type Config struct {
	// BinDir holds the supervisor and gateway binaries. It must be
	// traversable by GatewayUser.
	BinDir string
	// Venv and Runner are passed to the supervisor (-venv, -runner).
	Venv   string
	Runner string
	// GatewayUser and SandboxUser are the service's users (make setup
	// creates them).
	GatewayUser string
	SandboxUser string
	// Engines are measured in this order. An engine the supervisor will not
	// run is reported as unavailable.
	Engines []string
	// Requests is how many requests each latency cell measures, after
	// Warmup requests that are not measured.
	Requests int
	Warmup   int
	// Duration is how long each throughput cell runs at Concurrency
	// requests in flight, after Warmup requests.
	Duration    time.Duration
	Concurrency int
	// OverloadConcurrency is the requests in flight of the overload cell,
	// a mix of hello and pandas in equal parts, run for Duration against the
	// supervisor's default slots; it is compared with the same mix at
	// Concurrency.
	OverloadConcurrency int
	// Primitive measures the primitive alone in the same run (in turn with
	// the engines, each round).
	Primitive bool
	// Rounds is how many times the throughput cells are measured, the
	// engines taking turns, each time on a fresh stack; a cell reports the
	// median round. One machine's load drifts over minutes, and engines
	// measured once each, a minute apart, see different machines.
	Rounds int
	// MemInFlight executions, each holding the pandas example for MemHold,
	// are measured for memory, on a supervisor started with that many slots.
	MemInFlight int
	MemHold     time.Duration
	// StartTimeout bounds a supervisor's start-up.
	StartTimeout time.Duration
	Log          *logrus.Entry
}

// DefaultConfig returns the defaults: engines cold then warm, 200 latency
// requests after 20 of warm-up, 3 rounds of 10 s of throughput at
// concurrency 4, memory with 4 executions holding for 3 s.
func DefaultConfig() Config {
	return Config{
		GatewayUser:         "pyexec-gw",
		SandboxUser:         "pyexec-sandbox",
		Engines:             []string{"cold", "warm"},
		Requests:            200,
		Warmup:              20,
		Duration:            10 * time.Second,
		Concurrency:         4,
		OverloadConcurrency: 16,
		Primitive:           true,
		Rounds:              3,
		MemInFlight:         4,
		MemHold:             3 * time.Second,
		StartTimeout:        120 * time.Second,
	}
}

var engineName = regexp.MustCompile(`^[a-z][a-z0-9]{0,15}$`)

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.BinDir == "" || c.Venv == "" || c.Runner == "":
		return errors.New("bin directory, venv and runner are required")
	case c.GatewayUser == "" || c.SandboxUser == "":
		return errors.New("gateway and sandbox users are required")
	case len(c.Engines) == 0:
		return errors.New("no engine to measure")
	case c.Requests < 1 || c.Warmup < 0:
		return fmt.Errorf("requests %d, warm-up %d: need at least 1 request and no negative warm-up", c.Requests, c.Warmup)
	case c.Duration <= 0 || c.Concurrency < 1 || c.Rounds < 1:
		return fmt.Errorf("duration %v, concurrency %d, rounds %d: all must be positive", c.Duration, c.Concurrency, c.Rounds)
	case c.OverloadConcurrency < 1:
		return fmt.Errorf("overload concurrency %d: must be positive", c.OverloadConcurrency)
	case c.MemInFlight < 1 || c.MemHold <= 0:
		return fmt.Errorf("memory in flight %d, hold %v: both must be positive", c.MemInFlight, c.MemHold)
	case c.StartTimeout <= 0:
		return errors.New("start timeout must be positive")
	case c.Log == nil:
		return errors.New("no logger")
	}
	seen := map[string]bool{}
	for _, e := range c.Engines {
		if !engineName.MatchString(e) {
			return fmt.Errorf("engine %q: not a name (lower-case letters and digits)", e)
		}
		if seen[e] {
			return fmt.Errorf("engine %q listed twice", e)
		}
		seen[e] = true
	}
	return nil
}

// Status is how an engine's measurement ended.
type Status string

// The statuses of an EngineResult.
const (
	StatusOK          Status = "ok"
	StatusUnavailable Status = "unavailable" // the supervisor would not run it
	StatusFailed      Status = "failed"      // the stack failed or did not stop cleanly
	StatusInterrupted Status = "interrupted" // the run was interrupted (Ctrl-C)
)

// EngineResult is everything measured for one engine. A cell is nil when it
// was not measured.
type EngineResult struct {
	Engine string `json:"engine"`
	Status Status `json:"status"`
	// Reason says why the engine is unavailable or failed.
	Reason        string       `json:"reason,omitempty"`
	HelloLatency  *LatencyCell `json:"hello_latency,omitempty"`
	PandasLatency *LatencyCell `json:"pandas_latency,omitempty"`
	// ArgsLatency is the hello example's shape with its data passed as
	// args and a small input file, and an output file returned (issue 12).
	ArgsLatency *LatencyCell `json:"args_latency,omitempty"`
	// PlotLatency is the README's df.plot() example, its figure coming
	// back as a PNG.
	PlotLatency *LatencyCell `json:"plot_latency,omitempty"`
	// LimitsLatency is the hello example sent with limits other than the
	// defaults (memory_mb), as some clients send on every request.
	LimitsLatency    *LatencyCell    `json:"limits_latency,omitempty"`
	HelloThroughput  *ThroughputCell `json:"hello_throughput,omitempty"`
	PandasThroughput *ThroughputCell `json:"pandas_throughput,omitempty"`
	// MixedThroughput is hello and pandas in equal parts at the throughput
	// cells' concurrency; Overload the same mix at OverloadConcurrency.
	MixedThroughput *ThroughputCell `json:"mixed_throughput,omitempty"`
	Overload        *ThroughputCell `json:"overload,omitempty"`
	Memory          *MemoryCell     `json:"memory,omitempty"`
	// VsPrimitive are the figures above as ratios to the primitive's
	// (filled when the report is written).
	VsPrimitive *PrimitiveRatios `json:"vs_primitive,omitempty"`
}

// Tally sums the answers of every cell.
func (r *EngineResult) Tally() Tally {
	var t Tally
	if c := r.HelloLatency; c != nil {
		t.merge(c.Tally)
	}
	if c := r.PandasLatency; c != nil {
		t.merge(c.Tally)
	}
	if c := r.ArgsLatency; c != nil {
		t.merge(c.Tally)
	}
	if c := r.PlotLatency; c != nil {
		t.merge(c.Tally)
	}
	if c := r.LimitsLatency; c != nil {
		t.merge(c.Tally)
	}
	if c := r.HelloThroughput; c != nil {
		t.merge(c.Tally)
	}
	if c := r.PandasThroughput; c != nil {
		t.merge(c.Tally)
	}
	if c := r.MixedThroughput; c != nil {
		t.merge(c.Tally)
	}
	if c := r.Overload; c != nil {
		t.merge(c.Tally)
	}
	if c := r.Memory; c != nil {
		t.merge(c.Tally)
	}
	return t
}

// Report is the outcome of one run.
type Report struct {
	Machine  Machine        `json:"machine"`
	Settings Settings       `json:"settings"`
	Engines  []EngineResult `json:"engines"`
	// Primitive is nil when it was not measured (-primitive=false).
	Primitive *PrimitiveResult `json:"primitive,omitempty"`
}

// Settings echoes what was measured.
type Settings struct {
	Requests    int     `json:"latency_requests"`
	Warmup      int     `json:"warmup_requests"`
	Duration    float64 `json:"throughput_seconds"`
	Concurrency int     `json:"throughput_concurrency"`
	Overload    int     `json:"overload_concurrency"`
	Rounds      int     `json:"throughput_rounds"`
	MemInFlight int     `json:"memory_in_flight"`
	MemHold     float64 `json:"memory_hold_seconds"`
}

// Failed reports whether the run failed: a request did not get its correct
// 200 answer, a stack or the primitive's measurement failed, or no engine
// could be measured.
func (r *Report) Failed() bool {
	if r.Primitive != nil && r.Primitive.Status == StatusFailed {
		return true
	}
	measured := false
	for i := range r.Engines {
		e := &r.Engines[i]
		if e.Status == StatusFailed || e.Tally().Failed() {
			return true
		}
		measured = measured || e.Status == StatusOK
	}
	return !measured
}

// Run measures every engine of cfg in turn. It returns the report so far
// and ctx's error when ctx ends first (Ctrl-C); it stops every stack it
// started either way.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("the benchmark must run as root: it starts the supervisor")
	}
	rep := &Report{
		Machine: describeMachine(time.Now()),
		Settings: Settings{
			Requests: cfg.Requests, Warmup: cfg.Warmup,
			Duration: cfg.Duration.Seconds(), Concurrency: cfg.Concurrency, Overload: cfg.OverloadConcurrency, Rounds: cfg.Rounds,
			MemInFlight: cfg.MemInFlight, MemHold: cfg.MemHold.Seconds(),
		},
	}
	rep.Engines = make([]EngineResult, len(cfg.Engines))
	if cfg.Primitive {
		rep.Primitive = &PrimitiveResult{}
	}
	for round := 1; round <= cfg.Rounds; round++ {
		if p := rep.Primitive; p != nil && (round == 1 || p.Status == StatusOK) {
			log := cfg.Log.WithFields(logrus.Fields{"engine": PrimitiveName, "round": round})
			log.Info("measuring the primitive: clone into fresh namespaces and exit")
			if err := measurePrimitive(ctx, cfg, round, p); err != nil {
				if ctx.Err() != nil {
					p.Status = StatusInterrupted
					if round == 1 {
						rep.Engines = rep.Engines[:0] // none started
					}
					return rep, ctx.Err()
				}
				p.Status, p.Reason = StatusFailed, err.Error()
				log.WithError(err).Error("primitive failed")
			}
		}
		for i, engine := range cfg.Engines {
			res := &rep.Engines[i]
			if round > 1 && res.Status != StatusOK {
				continue
			}
			log := cfg.Log.WithFields(logrus.Fields{"engine": engine, "round": round})
			err := runEngine(ctx, cfg, engine, round, res, log)
			if ctx.Err() != nil {
				res.Status, res.Reason = StatusInterrupted, ""
				if round == 1 {
					rep.Engines = rep.Engines[:i+1] // the others never started
				}
				return rep, ctx.Err()
			}
			var unavailable *UnavailableError
			switch {
			case errors.As(err, &unavailable):
				log.WithField("reason", unavailable.Reason).Warn("engine unavailable")
			case err != nil:
				log.WithError(err).Error("engine failed")
			}
		}
	}
	return rep, nil
}

// runEngine measures one round of one engine into res. The first round
// measures every cell, on two stacks: one with the supervisor's default
// slots for latency and throughput, then one with MemInFlight slots for
// memory, so that many executions can be in flight at once. Later rounds
// measure the throughput cells again, on a fresh stack. Its error is also
// recorded in res.
func runEngine(ctx context.Context, cfg Config, engine string, round int, res *EngineResult, log *logrus.Entry) (err error) {
	if round == 1 {
		*res = EngineResult{Engine: engine, Status: StatusOK}
	}
	defer func() {
		var unavailable *UnavailableError
		switch {
		case errors.As(err, &unavailable):
			res.Status, res.Reason = StatusUnavailable, unavailable.Reason
		case err != nil:
			res.Status, res.Reason = StatusFailed, err.Error()
		}
	}()
	sc := stack.Config{
		BinDir: cfg.BinDir, Venv: cfg.Venv, Runner: cfg.Runner,
		GatewayUser: cfg.GatewayUser, SandboxUser: cfg.SandboxUser,
		Engine: engine, Name: fmt.Sprintf("pyexec-bench-%d-%s-%d", os.Getpid(), engine, round),
		StartTimeout: cfg.StartTimeout, Log: log,
	}
	hello := newScript("hello", helloSource, helloResult)
	pandas := newScript("pandas", pandasSource, pandasResult)
	args := argsScript()
	plot := newScript("plot", plotSource, plotResult)
	limited := limitsScript()

	err = withStack(ctx, sc, log, func(st *service) error {
		cells := []struct {
			what string
			run  func() error
		}{
			{"hello latency", func() error {
				c, err := measureLatency(ctx, st.http, st.URL, hello, cfg.Warmup, cfg.Requests)
				res.HelloLatency = &c
				return err
			}},
			{"pandas latency", func() error {
				c, err := measureLatency(ctx, st.http, st.URL, pandas, cfg.Warmup, cfg.Requests)
				res.PandasLatency = &c
				return err
			}},
			{"args latency", func() error {
				c, err := measureLatency(ctx, st.http, st.URL, args, cfg.Warmup, cfg.Requests)
				res.ArgsLatency = &c
				return err
			}},
			{"plot latency", func() error {
				c, err := measureLatency(ctx, st.http, st.URL, plot, cfg.Warmup, cfg.Requests)
				res.PlotLatency = &c
				return err
			}},
			{"limits latency", func() error {
				c, err := measureLatency(ctx, st.http, st.URL, limited, cfg.Warmup, cfg.Requests)
				res.LimitsLatency = &c
				return err
			}},
			{"hello throughput", func() error {
				c, err := measureThroughput(ctx, st.http, st.URL, []script{hello}, cfg.Warmup, cfg.Concurrency, cfg.Duration)
				res.HelloThroughput = addRound(res.HelloThroughput, c)
				return err
			}},
			{"pandas throughput", func() error {
				c, err := measureThroughput(ctx, st.http, st.URL, []script{pandas}, cfg.Warmup, cfg.Concurrency, cfg.Duration)
				res.PandasThroughput = addRound(res.PandasThroughput, c)
				return err
			}},
			{"mixed throughput", func() error {
				c, err := measureThroughput(ctx, st.http, st.URL, []script{hello, pandas}, cfg.Warmup, cfg.Concurrency, cfg.Duration)
				res.MixedThroughput = addRound(res.MixedThroughput, c)
				return err
			}},
			{fmt.Sprintf("overload (c=%d)", cfg.OverloadConcurrency), func() error {
				c, err := measureThroughput(ctx, st.http, st.URL, []script{hello, pandas}, cfg.Warmup, cfg.OverloadConcurrency, cfg.Duration)
				res.Overload = addRound(res.Overload, c)
				return err
			}},
		}
		if round > 1 {
			cells = cells[2:]
		}
		for _, c := range cells {
			log.Infof("measuring %s", c.what)
			if err := c.run(); err != nil {
				return fmt.Errorf("%s: %w", c.what, err)
			}
		}
		return nil
	})
	if err != nil || round > 1 {
		return err
	}

	sc.Name += "-mem"
	sc.Slots = cfg.MemInFlight
	return withStack(ctx, sc, log, func(st *service) error {
		log.Infof("measuring memory with %d executions in flight", cfg.MemInFlight)
		c, err := measureMemory(ctx, st, pandas, holdingScript(cfg.MemHold), cfg.MemInFlight)
		res.Memory = &c
		if err != nil {
			return fmt.Errorf("memory: %w", err)
		}
		return nil
	})
}

// withStack starts a stack, runs f on it, and stops it, reporting f's error
// and the stop's.
func withStack(ctx context.Context, sc stack.Config, log *logrus.Entry, f func(*service) error) error {
	log.WithField("slots", sc.Slots).Info("starting the stack")
	st, err := stack.Start(ctx, sc)
	if err != nil {
		return err
	}
	client := newHTTPClient(64)
	ferr := f(&service{Stack: st, http: client})
	client.CloseIdleConnections()
	serr := st.Stop()
	if (ferr != nil && ctx.Err() == nil) || serr != nil {
		log.Warnf("the stack's logs:\n%s", st.Logs())
	}
	return errors.Join(ferr, serr)
}
