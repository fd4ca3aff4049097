// Package main is the soak command: it runs a bounded soak test against the real stack (make soak):
// for each engine it starts the supervisor as root and the gateway as its own
// user, as make run does, and sends a mix of benign requests with exact
// expected answers and hostile ones (timeouts, memory and fork bombs, output
// floods, exits, forged result frames, monkeypatching, ...) from many more
// clients than there are execution slots, for a fixed time.
//
//	soak [-engines cold,warm] [-duration 3m] [-concurrency 16] [-slots 2]
//	     [-hostile all|kind,kind] [-hostile-share 0.3] [-json]
//
// It reports, per engine and per kind, requests, ok, busy, wrong, internal,
// lost and hung answers, the benign requests' p50/p99 latency, and the
// supervisor's and gateway's RSS and open fds before and after the load. An
// answer is
//
//   - ok: what that kind must get (benign: the exact result and output);
//   - busy: 503 busy (the service asked the client to retry; not a failure);
//   - internal: error type internal, whatever the kind;
//   - wrong: any other answer that is not ok;
//   - lost: no HTTP answer (connection error, unreadable body);
//   - hung: no answer within the request's timeout plus hungGrace.
//
// It exits 1 on any wrong, internal, lost or hung answer; when the
// supervisor's or gateway's RSS grew by more than -max-rss-growth-mib or
// their open fds by more than -max-fd-growth between the sample after
// warm-up and the one after the load; or when a process, mount or cgroup of
// the stack is left after it stops. 2 on bad flags.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/python-executor/python-executor/internal/stack"
)

func main() {
	os.Exit(run())
}

// hungGrace is how long past its own timeout a request may take to be
// answered before it counts as hung: the gateway's grace plus queueing.
const hungGrace = 20 * time.Second

type config struct {
	engines      []string
	duration     time.Duration
	concurrency  int
	slots        int
	hostile      string
	hostileShare float64
	maxRSSGrowth int64 // KiB
	maxFDGrowth  int
	stack        stack.Config
	asJSON       bool
}

func run() int {
	root := projectRoot()
	var cfg config
	engines := flag.String("engines", env("SOAK_ENGINES", "cold,warm"), "engines to soak, in turn (env SOAK_ENGINES)")
	secs, _ := strconv.Atoi(env("SOAK_SECONDS", "180"))
	flag.DurationVar(&cfg.duration, "duration", time.Duration(secs)*time.Second, "load time per engine (env SOAK_SECONDS, in seconds)")
	flag.IntVar(&cfg.concurrency, "concurrency", envInt("SOAK_CONCURRENCY", 16), "requests in flight (env SOAK_CONCURRENCY); keep it well above -slots")
	flag.IntVar(&cfg.slots, "slots", envInt("SOAK_SLOTS", 2), "the supervisor's -slots (env SOAK_SLOTS)")
	flag.StringVar(&cfg.hostile, "hostile", env("SOAK_HOSTILE", "all"), "hostile kinds in the mix: all, none, or a comma-separated list (env SOAK_HOSTILE)")
	flag.Float64Var(&cfg.hostileShare, "hostile-share", 0.3, "share of hostile requests, at least 0.2 unless -hostile none")
	rssMiB := flag.Int64("max-rss-growth-mib", 64, "largest RSS growth of the supervisor and of the gateway, MiB")
	flag.IntVar(&cfg.maxFDGrowth, "max-fd-growth", 16, "largest growth of the supervisor's and of the gateway's open fds")
	flag.StringVar(&cfg.stack.BinDir, "bin", filepath.Join(root, "bin"), "directory of the supervisor and gateway binaries")
	flag.StringVar(&cfg.stack.Venv, "venv", env("PYEXEC_VENV", filepath.Join(root, ".venv")), "the supervisor's -venv")
	flag.StringVar(&cfg.stack.Runner, "runner", filepath.Join(root, "runner", "runner.py"), "the supervisor's -runner")
	flag.StringVar(&cfg.stack.GatewayUser, "gateway-user", "pyexec-gw", "user the gateway runs as")
	flag.StringVar(&cfg.stack.SandboxUser, "sandbox-user", "pyexec-sandbox", "user the jails map to")
	flag.BoolVar(&cfg.asJSON, "json", false, "print the report as JSON")
	flag.Parse()
	cfg.maxRSSGrowth = *rssMiB << 10
	for e := range strings.SplitSeq(*engines, ",") {
		if e = strings.TrimSpace(e); e != "" {
			cfg.engines = append(cfg.engines, e)
		}
	}
	mix, err := selectKinds(kinds(), cfg.hostile)
	switch {
	case err != nil:
	case flag.NArg() > 0:
		err = fmt.Errorf("unexpected arguments %q", flag.Args())
	case len(cfg.engines) == 0 || cfg.duration <= 0 || cfg.concurrency < 1:
		err = fmt.Errorf("want engines, a positive duration and concurrency")
	case hasHostile(mix) && (cfg.hostileShare < 0.2 || cfg.hostileShare >= 1):
		err = fmt.Errorf("-hostile-share %v: want at least 0.2 and below 1", cfg.hostileShare)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		return 2
	}
	if !hasHostile(mix) {
		cfg.hostileShare = 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	failed := false
	var reports []*report
	for _, engine := range cfg.engines {
		sc := cfg.stack
		sc.Engine = engine
		sc.Slots = cfg.slots
		sc.Name = fmt.Sprintf("pyexec-soak-%d-%s", os.Getpid(), engine)
		rep := soak(ctx, cfg, sc, mix)
		reports = append(reports, rep)
		if !cfg.asJSON {
			rep.writeText(os.Stdout)
		}
		if len(rep.Failures) > 0 {
			failed = true
		}
		if ctx.Err() != nil {
			break
		}
	}
	if cfg.asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(reports)
	}
	if failed || ctx.Err() != nil {
		return 1
	}
	return 0
}

func hasHostile(mix []kind) bool {
	for _, k := range mix {
		if k.hostile {
			return true
		}
	}
	return false
}

func projectRoot() string {
	exe, err := os.Executable()
	if err == nil {
		// bin/soak in a checkout.
		if root := filepath.Dir(filepath.Dir(exe)); fileExists(filepath.Join(root, "runner", "runner.py")) {
			return root
		}
	}
	wd, _ := os.Getwd()
	return wd
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func env(name, def string) string {
	if v := strings.TrimSpace(os.Getenv(name)); v != "" {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(env(name, "")); err == nil {
		return n
	}
	return def
}
