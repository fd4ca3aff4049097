package cold

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/python-executor/python-executor/internal/engine"
	"github.com/python-executor/python-executor/internal/proc"
)

// execEnv is the environment of one container-tier execution: the jail's,
// with its private directory as home and temporary directory and mpl as
// matplotlib's config directory.
func execEnv(env []string, dir, mpl string) []string {
	out := make([]string, 0, len(env))
	for _, e := range env {
		switch {
		case strings.HasPrefix(e, "HOME="), strings.HasPrefix(e, "TMPDIR="):
			name, _, _ := strings.Cut(e, "=")
			out = append(out, name+"="+dir)
		case strings.HasPrefix(e, "MPLCONFIGDIR="):
			out = append(out, "MPLCONFIGDIR="+mpl)
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
		for _, pid := range engine.ProcessesOfUID(uid) {
			// A zombie is dead already; the subreaper reaps it.
			if f, err := proc.Stat(pid); err == nil && f[0] != "Z" && f[0] != "X" {
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
	if engine.RealUID(pid) != uid {
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
// engine.ResultGrace (the time a runner's answer gets to be read).
func killAfterExit(pid, uid int, stop <-chan struct{}) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	for !proc.WaitPidfd(fd, 100*time.Millisecond) {
		select {
		case <-stop:
			return
		default:
		}
	}
	select {
	case <-stop:
	case <-time.After(engine.ResultGrace):
		killUID(uid)
	}
}
