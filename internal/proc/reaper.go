package proc

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Reaper makes the supervisor a child subreaper and reaps the orphans that
// get re-parented to it. A jailed process can outlive its nsjail (nsjail
// killed at a deadline, or failing half-way through its set-up); without a
// subreaper it would be handed to the host's init, which on some hosts never
// reaps, and linger as a zombie of the sandbox user.
//
// The supervisor's own children (nsjail processes it waits for through
// os/exec) are registered and left alone, so Wait never loses them.
type Reaper struct {
	mu    sync.Mutex // guards known; held across Start so no child is unregistered while alive
	known map[int]bool
}

// NewReaper makes the calling process a child subreaper; Run then reaps.
func NewReaper() (*Reaper, error) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, err
	}
	return &Reaper{known: make(map[int]bool)}, nil
}

// Start starts cmd and registers its pid before any reaping can see it.
func (r *Reaper) Start(cmd *exec.Cmd) error {
	if r == nil {
		return cmd.Start()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	r.known[cmd.Process.Pid] = true
	return nil
}

// Wait waits for a child that Start started (cmd.Wait) and then
// unregisters it: both engines wait for their nsjail processes this way.
func (r *Reaper) Wait(cmd *exec.Cmd) error {
	err := cmd.Wait()
	r.Forget(cmd.Process.Pid)
	return err
}

// Forget unregisters a child after Wait has reaped it.
func (r *Reaper) Forget(pid int) {
	if r == nil {
		return
	}
	r.mu.Lock()
	delete(r.known, pid)
	r.mu.Unlock()
}

// Run reaps unknown children on every SIGCHLD (and once a second, since
// signals coalesce) until stop is closed.
func (r *Reaper) Run(stop <-chan struct{}) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGCHLD)
	defer signal.Stop(sigs)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-sigs:
		case <-tick.C:
		}
		r.reap()
	}
}

func (r *Reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, pid := range ChildrenOf(os.Getpid()) {
		if r.known[pid] {
			continue
		}
		var ws unix.WaitStatus
		unix.Wait4(pid, &ws, unix.WNOHANG, nil)
	}
}

// ChildrenOf lists pid's children, from every thread's children file (a
// child belongs to the thread that forked it).
func ChildrenOf(pid int) []int {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, _ := os.ReadDir(dir)
	var out []int
	for _, t := range tasks {
		b, _ := os.ReadFile(dir + "/" + t.Name() + "/children")
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}
