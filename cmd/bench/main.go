// Package main is the bench command: it compares python-executor's execution engines side by side
// (make bench): see package cmd/bench/internal/bench. It must run as root.
//
//	bench [-engines cold,warm] [-n 200] [-duration 10s] [-rounds 3] [-primitive=false] [-json] ...
//
// It prints a Markdown table (or JSON with -json) on stdout and its progress
// on stderr, and exits 1 if any request failed to get its correct 200
// answer, a stack did not start or stop cleanly, or no engine could be
// measured; 2 on bad flags; 130 when interrupted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/python-executor/python-executor/cmd/bench/internal/bench"
)

func main() {
	os.Exit(run())
}

func run() int {
	root := projectRoot()
	cfg := bench.DefaultConfig()
	engines := flag.String("engines", env("PYEXEC_BENCH_ENGINES", strings.Join(cfg.Engines, ",")), "engines to measure, in order, comma-separated (env PYEXEC_BENCH_ENGINES)")
	asJSON := flag.Bool("json", false, "print JSON instead of a Markdown table")
	jsonOut := flag.String("json-out", "", "also write the report as JSON to this file")
	logLevel := flag.String("log-level", "info", "progress log level on stderr: debug, info, warn or error")
	flag.StringVar(&cfg.BinDir, "bin", filepath.Join(root, "bin"), "directory of the supervisor and gateway binaries")
	flag.StringVar(&cfg.Venv, "venv", env("PYEXEC_VENV", filepath.Join(root, ".venv")), "the supervisor's -venv")
	flag.StringVar(&cfg.Runner, "runner", env("PYEXEC_RUNNER", filepath.Join(root, "runner", "runner.py")), "the supervisor's -runner")
	flag.StringVar(&cfg.GatewayUser, "gateway-user", cfg.GatewayUser, "user the gateway runs as")
	flag.StringVar(&cfg.SandboxUser, "sandbox-user", cfg.SandboxUser, "user the jails map to")
	flag.IntVar(&cfg.Requests, "n", cfg.Requests, "measured requests per latency cell")
	flag.IntVar(&cfg.Warmup, "warmup", cfg.Warmup, "unmeasured requests before each latency and throughput cell")
	flag.DurationVar(&cfg.Duration, "duration", cfg.Duration, "length of each throughput cell")
	flag.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "requests in flight in the throughput cells")
	flag.IntVar(&cfg.OverloadConcurrency, "overload-concurrency", cfg.OverloadConcurrency, "requests in flight in the overload cell (hello and pandas mixed, default slots)")
	flag.BoolVar(&cfg.Primitive, "primitive", cfg.Primitive, "also measure the primitive (clone into fresh namespaces from a preloaded Python) and report ratios to it")
	flag.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "rounds of the throughput cells, engines taking turns; the median round is reported")
	flag.IntVar(&cfg.MemInFlight, "mem-inflight", cfg.MemInFlight, "executions in flight while memory is measured")
	flag.DurationVar(&cfg.MemHold, "mem-hold", cfg.MemHold, "how long each of those executions sleeps")
	flag.DurationVar(&cfg.StartTimeout, "start-timeout", cfg.StartTimeout, "how long a supervisor may take to start")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected arguments %q\n", flag.Args())
		return 2
	}
	cfg.Engines = nil
	for e := range strings.SplitSeq(*engines, ",") {
		if e = strings.TrimSpace(e); e != "" {
			cfg.Engines = append(cfg.Engines, e)
		}
	}
	cfg.Log = newLogger(*logLevel)
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "bench: config:", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	rep, err := bench.Run(ctx, cfg)
	if rep != nil {
		write := rep.WriteMarkdown
		if *asJSON {
			write = rep.WriteJSON
		}
		if werr := write(os.Stdout); werr != nil {
			cfg.Log.WithError(werr).Error("write report")
			return 1
		}
		if *jsonOut != "" {
			if werr := writeFile(*jsonOut, rep.WriteJSON); werr != nil {
				cfg.Log.WithError(werr).Error("write JSON report")
				return 1
			}
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		cfg.Log.Warn("interrupted; every stack was stopped")
		return 130
	case err != nil:
		cfg.Log.WithError(err).Error("benchmark failed")
		return 1
	case rep.Failed():
		cfg.Log.WithField("duration", time.Since(start).Round(time.Second)).Error("benchmark done, with failures (see the table)")
		return 1
	}
	cfg.Log.WithField("duration", time.Since(start).Round(time.Second)).Info("benchmark done")
	return 0
}

func writeFile(name string, write func(io.Writer) error) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func newLogger(level string) *logrus.Entry {
	l := logrus.New()
	l.SetOutput(os.Stderr)
	l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	if lv, err := logrus.ParseLevel(level); err == nil {
		l.SetLevel(lv)
	}
	return logrus.NewEntry(l).WithField("component", "bench")
}

// projectRoot is the checkout the binary was built into: bin/bench lives one
// level below it.
func projectRoot() string {
	exe, err := os.Executable()
	if err != nil {
		return "."
	}
	return filepath.Dir(filepath.Dir(exe))
}

func env(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}
