package jail

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Timeouts of Kill and Remove: a SIGKILLed task leaves its cgroup within
// milliseconds; longer means something is wrong and the caller should know.
const (
	killTimeout   = 2 * time.Second
	removeTimeout = time.Second
	pollInterval  = 5 * time.Millisecond
)

// Sweep kills the processes in, and removes, every cgroup left under the
// parent by a previous run (execution cgroups and nsjail's NSJAIL.<pid>).
// Call it at start-up, after Setup and before the first execution. It
// reports how many cgroups directly under the parent it removed.
func (c *Cgroups) Sweep() (removed int, err error) {
	if c.parent == "" {
		return 0, errors.New("sweep cgroups: Setup not called")
	}
	names := map[string]bool{}
	var errs []error
	for _, base := range c.dirs("") {
		ents, err := os.ReadDir(base)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, e := range ents {
			if !e.IsDir() {
				continue
			}
			dir := filepath.Join(base, e.Name())
			if err := killTree(dir, c.mode); err != nil {
				errs = append(errs, err)
				continue
			}
			if err := removeTree(dir); err != nil {
				errs = append(errs, err)
				continue
			}
			names[e.Name()] = true
		}
	}
	if err := errors.Join(errs...); err != nil {
		return len(names), fmt.Errorf("sweep cgroups under %s: %w", c.parent, err)
	}
	return len(names), nil
}

// Teardown kills and removes every execution cgroup, then the parent
// itself, so a stopped supervisor leaves no cgroup behind. Ancestors the
// parent was created under are left alone: they may be shared.
func (c *Cgroups) Teardown() error {
	// The sweep would remove the kept cgroups too, but not close their
	// OOM notifications; it removes what this leaves.
	c.removeIdle()
	if _, err := c.Sweep(); err != nil {
		return err
	}
	var errs []error
	for _, dir := range c.dirs("") {
		if err := removeTree(dir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove cgroup parent %s: %w", c.parent, err)
	}
	return nil
}

// killTree SIGKILLs every process of the cgroup dir and its descendants,
// repeating until they are gone (a process may fork while the first
// signals are sent). In v2 cgroup.kill (Linux 5.14+) does it atomically.
// Every signal goes through a pidfd to a process confirmed to be a member
// (killMembers), never to a bare pid that may have been reaped and reused
// since cgroup.procs was read.
func killTree(dir string, mode CgroupMode) error {
	deadline := time.Now().Add(killTimeout)
	if mode == CgroupV2 {
		// Never created: before Linux 5.14 the file does not exist.
		if err := writeExisting(filepath.Join(dir, "cgroup.kill"), "1"); err != nil &&
			!errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	for {
		groups, err := treeProcsByDir(dir)
		if err != nil {
			return err
		}
		n := 0
		for _, g := range groups {
			n += len(g.pids)
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d processes still in %s after %v", n, dir, killTimeout)
		}
		for _, g := range groups {
			if err := killMembers(g.dir, g.pids); err != nil {
				return err
			}
		}
		time.Sleep(pollInterval)
	}
}

// killMembers SIGKILLs those of pids (read from dir's cgroup.procs) that
// are still members of dir. It opens a pidfd for each, then reads
// cgroup.procs again: a pid listed there now belonged to a member at that
// moment, and if the pidfd's process has not been reaped by the time the
// signal is sent, it held that pid all along, so it is that member. If it
// has been reaped, the signal fails with ESRCH and reaches nobody, whoever
// holds the pid now.
func killMembers(dir string, pids []int) error {
	fds := make(map[int]int, len(pids))
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for _, pid := range pids {
		fd, err := unix.PidfdOpen(pid, 0)
		if errors.Is(err, unix.ESRCH) {
			continue // gone already
		}
		if err != nil {
			return fmt.Errorf("pidfd of pid %d of %s: %w", pid, dir, err)
		}
		fds[pid] = fd
	}
	if len(fds) == 0 {
		return nil
	}
	now, err := readProcs(dir)
	if err != nil {
		return err
	}
	for _, pid := range now {
		fd, ok := fds[pid]
		if !ok {
			continue
		}
		if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("kill pid %d of %s: %w", pid, dir, err)
		}
	}
	return nil
}

// cgroupProcs is the pids of one cgroup directory.
type cgroupProcs struct {
	dir  string
	pids []int
}

// treeProcsByDir lists the pids in the cgroup dir and its descendants, per
// directory. A cgroup removed meanwhile counts as empty.
func treeProcsByDir(dir string) ([]cgroupProcs, error) {
	var out []cgroupProcs
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		pids, err := readProcs(p)
		if err != nil {
			return err
		}
		if len(pids) > 0 {
			out = append(out, cgroupProcs{dir: p, pids: pids})
		}
		return nil
	})
	return out, err
}

// treeProcs lists the pids in the cgroup dir and its descendants.
func treeProcs(dir string) ([]int, error) {
	groups, err := treeProcsByDir(dir)
	var pids []int
	for _, g := range groups {
		pids = append(pids, g.pids...)
	}
	return pids, err
}

// readProcs reads the cgroup dir's cgroup.procs; a cgroup removed
// meanwhile has none.
func readProcs(dir string) ([]int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENODEV) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("parse %s/cgroup.procs: %w", dir, err)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// removeTree removes the cgroup dir and its descendants, deepest first.
// rmdir fails with EBUSY while a dying task is still attached, so it
// retries for a moment.
func removeTree(dir string) error {
	// The common case, an execution's cgroup with neither tasks nor child
	// cgroups left, needs no listing of its (dozens of) control files.
	if err := unix.Rmdir(dir); err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	var subdirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			subdirs = append(subdirs, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// WalkDir lists parents before children: remove in reverse.
	slices.Reverse(subdirs)
	deadline := time.Now().Add(removeTimeout)
	for _, d := range subdirs {
		for {
			err := unix.Rmdir(d)
			if err == nil || errors.Is(err, unix.ENOENT) {
				break
			}
			if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
				return &os.PathError{Op: "rmdir", Path: d, Err: err}
			}
			time.Sleep(pollInterval)
		}
	}
	return nil
}
