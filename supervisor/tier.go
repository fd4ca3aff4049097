package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/python-executor/python-executor/jail"
)

// prepareContainerHost prepares the container tier (jail.Policy.NoNamespaces):
// no staging (nothing is mounted), no cgroups, a uid per execution, and a
// root-owned directory for the executions' private working directories.
func prepareContainerHost(cfg Config, nsj, python string, in jail.Interpreter, log *logrus.Entry) (*Host, error) {
	if err := checkUIDRangeUnused(cfg.SandboxUIDBase, cfg.SandboxUIDCount, cfg.Slots+cfg.Zygotes+1); err != nil {
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
	h := &Host{
		stageDir:  stageDir,
		Nsjail:    nsj,
		Isolation: "container: no namespaces or cgroups; a uid, a working directory and a seccomp filter per execution",
		Tier:      TierContainer,
		workDir:   cfg.WorkDir,
		UIDs:      newUIDPool(cfg.SandboxUIDBase, cfg.SandboxUIDCount),
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
	log.WithFields(logrus.Fields{
		"uids": fmt.Sprintf("%d-%d", cfg.SandboxUIDBase, cfg.SandboxUIDBase+cfg.SandboxUIDCount-1), "work_dir": cfg.WorkDir,
		"for_full_isolation": FullIsolationHint,
	}).Warn("CONTAINER ISOLATION TIER: no namespaces or cgroups on this host; each execution runs as a uid of its own in a private directory, without capabilities, with no_new_privs, a seccomp filter that refuses every socket, rlimits and the supervisor's memory watch")
	return h, nil
}

// execEnv is the environment of one container-tier execution: the jail's,
// with its private directory as home and temporary directory.
func execEnv(env []string, dir string) []string {
	out := make([]string, 0, len(env))
	for _, e := range env {
		switch {
		case strings.HasPrefix(e, "HOME="), strings.HasPrefix(e, "TMPDIR="), strings.HasPrefix(e, "MPLCONFIGDIR="):
			name, _, _ := strings.Cut(e, "=")
			out = append(out, name+"="+dir)
		default:
			out = append(out, e)
		}
	}
	return out
}

// newWorkDir creates an execution's private working directory, 0700 and
// owned by its uid.
func newWorkDir(base, id string, uid int) (string, error) {
	dir := filepath.Join(base, "exec-"+id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("create work dir: %w", err)
	}
	if err := os.Chown(dir, uid, uid); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("chown work dir: %w", err)
	}
	return dir, nil
}

// killUID kills every process running as uid, until none is left: in the
// container tier that is every process of one execution, wherever it was
// re-parented (there is no PID namespace to take them down with its init).
// A process forking while it is killed is found in the next round.
func killUID(uid int) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		var pids []int
		for _, pid := range processesOfUID(uid) {
			// A zombie is dead already; the subreaper reaps it.
			if f, err := procStat(pid); err == nil && f[0] != "Z" && f[0] != "X" {
				pids = append(pids, pid)
			}
		}
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			killIfUID(pid, uid)
		}
		if time.Now().After(deadline) {
			return errors.New(fmt.Sprint("processes of uid ", uid, " survive SIGKILL: ", pids))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// killIfUID kills process pid if it still runs as uid. The pidfd is opened
// first and the uid checked after: a pid that was reaped and reused between
// the listing and the kill then names a process of another uid, which is
// left alone (the pidfd pins the process it was opened for).
func killIfUID(pid, uid int) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return // gone already
	}
	defer unix.Close(fd)
	if realUID(pid) != uid {
		return
	}
	unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
}

// sharedWritableDirs are where any uid may create files in a container
// without a mount namespace of each execution's own (the work dir lives
// under /tmp). The container tier counts an execution's files there against
// its tmp limits and removes them afterwards.
var sharedWritableDirs = []string{"/tmp", "/var/tmp", "/dev/shm"}

// filesOfUID sums the sizes and counts the files owned by uid under dirs,
// without following symbolic links. With top set, it also collects the
// top-most paths owned by uid (what removing them all takes) and does not
// descend into them for the count.
func filesOfUID(uid int, dirs []string, top *[]string) (bytes int64, files int) {
	for _, d := range dirs {
		filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return nil // gone, or unreadable: not the execution's
			}
			info, err := e.Info()
			if err != nil {
				return nil
			}
			st, ok := info.Sys().(*syscall.Stat_t)
			if !ok || int(st.Uid) != uid {
				return nil
			}
			files++
			bytes += st.Blocks * 512
			if top != nil && p != d {
				*top = append(*top, p)
				if e.IsDir() {
					return filepath.SkipDir
				}
			}
			return nil
		})
	}
	return bytes, files
}

// killAfterExit waits until process pid (nsjail) has exited, or stop is
// closed, and then, unless stopped, kills every process of uid after
// resultGrace (the time a runner's answer gets to be read).
func killAfterExit(pid, uid int, stop <-chan struct{}) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	for !waitPidfd(fd, 100*time.Millisecond) {
		select {
		case <-stop:
			return
		default:
		}
	}
	select {
	case <-stop:
	case <-time.After(resultGrace):
		killUID(uid)
	}
}
