package supervisor

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/python-executor/python-executor/internal/engine"
	"github.com/python-executor/python-executor/internal/jail"
	"github.com/python-executor/python-executor/internal/proc"
)

// prepareContainerHost prepares the container tier (jail.Policy.NoNamespaces):
// no staging (nothing is mounted), no cgroups, a uid per execution, and a
// root-owned directory for the executions' private working directories.
func prepareContainerHost(cfg Config, nsj, python string, in jail.Interpreter, log *logrus.Entry) (*Host, error) {
	if err := proc.CheckUIDRangeUnused(cfg.SandboxUIDBase, cfg.SandboxUIDCount, 2*cfg.Slots+cfg.Zygotes+1); err != nil {
		return nil, fmt.Errorf("per-execution uids: %w (choose another range with -sandbox-uid-base)", err)
	}
	// No jail has a mount namespace here, so the executions' uids reach the
	// venv and the runner by their host paths. A checkout only root can
	// traverse (a `mktemp -d`, /root) is staged into the supervisor's
	// private mount namespace where it has one (the tier chosen on a host
	// that allows namespaces); in a container that does not, the image's
	// paths must be reachable, and a start-up error says so. (Before the
	// umask below: the staged files are for every uid to read.)
	runner := cfg.RunnerPath
	var stageDir string
	if jail.NeedsStaging(cfg.Venv) || jail.NeedsStaging(cfg.RunnerPath) {
		mounts := []jail.Mount{{Kind: jail.Bind, Src: cfg.Venv, Dst: VenvJailPath}, {Kind: jail.Bind, Src: cfg.RunnerPath, Dst: RunnerJailPath}}
		neutral := []jail.Neutral{{Dst: VenvJailPath}, {Dst: RunnerJailPath}}
		if cfgText, err := os.ReadFile(filepath.Join(cfg.Venv, "pyvenv.cfg")); err == nil {
			neutral[0].Replace = map[string][]byte{"pyvenv.cfg": neutralPyvenvCfg(cfgText, cfg.Venv)}
		}
		if err := os.MkdirAll(cfg.StageDir, 0o755); err != nil {
			return nil, fmt.Errorf("create stage dir: %w", err)
		}
		staged, err := jail.StageNeutral(cfg.StageDir, mounts, neutral)
		if err != nil {
			return nil, fmt.Errorf("the venv %s or the runner %s is not reachable by the executions' uids (every directory above them needs o+x), and staging them failed: %w", cfg.Venv, cfg.RunnerPath, err)
		}
		stageDir = cfg.StageDir
		python = filepath.Join(staged[0].Src, "bin", filepath.Base(python))
		runner = staged[1].Src
	}

	// A leftover of a crashed predecessor goes; what is there must be a
	// directory of root's, not something an execution planted.
	if st, err := os.Lstat(cfg.WorkDir); err == nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); !st.IsDir() || !ok || sys.Uid != 0 {
			return nil, fmt.Errorf("work dir %s exists and is not a directory of root's", cfg.WorkDir)
		}
		if err := os.RemoveAll(cfg.WorkDir); err != nil {
			return nil, fmt.Errorf("remove leftover work dir: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(cfg.WorkDir), 0o755); err != nil {
		return nil, fmt.Errorf("create work dir: %w", err)
	}
	// 0711: an execution can reach its own directory by name, not list
	// the others.
	if err := os.Mkdir(cfg.WorkDir, 0o711); err != nil {
		return nil, fmt.Errorf("create work dir: %w", err)
	}
	if err := os.Chmod(cfg.WorkDir, 0o711); err != nil {
		return nil, fmt.Errorf("chmod work dir: %w", err)
	}
	// Files an execution creates are its own: readable by no other uid
	// (the umask is inherited through nsjail into the jail).
	syscall.Umask(0o077)

	env := jailEnv(jail.Interpreter{Prefix: filepath.Dir(filepath.Dir(python))})
	eh := engine.Host{
		Nsjail:  nsj,
		WorkDir: cfg.WorkDir,
		UIDs:    proc.NewUIDPool(cfg.SandboxUIDBase, cfg.SandboxUIDCount),
		Policy: jail.Policy{
			Python:       python,
			Args:         []string{runner},
			OutsideUID:   cfg.SandboxUIDBase,
			OutsideGID:   cfg.SandboxUIDBase,
			Env:          env,
			Seccomp:      true,
			NoNamespaces: true,
		},
	}
	h := &Host{
		Host:      eh,
		stageDir:  stageDir,
		Isolation: "container: no namespaces or cgroups; a uid, a working directory and a seccomp filter per execution",
		Tier:      TierContainer,
	}
	log.WithFields(logrus.Fields{
		"uids": fmt.Sprintf("%d-%d", cfg.SandboxUIDBase, cfg.SandboxUIDBase+cfg.SandboxUIDCount-1), "work_dir": cfg.WorkDir,
		"for_full_isolation": FullIsolationHint,
	}).Warn("CONTAINER ISOLATION TIER: no namespaces or cgroups on this host; each execution runs as a uid of its own in a private directory, without capabilities, with no_new_privs, a seccomp filter that refuses every socket, rlimits and the supervisor's memory watch")
	return h, nil
}
