package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/sys/mountinfo"
)

// stackConfig says how to start one supervisor and gateway pair, as make run
// does: the supervisor as root, the gateway as its own user.
type stackConfig struct {
	BinDir, Venv, Runner     string
	GatewayUser, SandboxUser string
	Engine                   string
	Slots                    int
	Name                     string // run directory /run/<Name>, cgroup parent <Name>
}

type stack struct {
	cfg        stackConfig
	url        string
	runDir     string
	socket     string
	sandboxUID int
	sup, gw    *proc
}

// proc is one process the soak started.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  *logTail
}

func startProc(name, bin string, args, env []string, cred *syscall.Credential) (*proc, error) {
	p := &proc{name: name, done: make(chan struct{}), log: &logTail{}}
	p.cmd = exec.Command(bin, args...)
	if cred != nil {
		// As make run does (scripts/run.sh): the checkout may be where
		// only root can traverse, so root opens the binary and the
		// process, already running as its user, executes the open file
		// (fd 3 in the child). The gateway closes it once it runs.
		f, err := os.Open(bin)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", name, err)
		}
		defer f.Close()
		p.cmd = &exec.Cmd{Path: "/proc/self/fd/3", Args: append([]string{bin}, args...), ExtraFiles: []*os.File{f}}
		env = append(env, "PYEXEC_GATEWAY_EXE_FD=3")
	}
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM, Credential: cred}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and wants a clean exit within grace.
func (p *proc) stop(grace time.Duration) error {
	if p.exited() {
		return fmt.Errorf("%s exited on its own with status %d", p.name, p.cmd.ProcessState.ExitCode())
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within %v of SIGTERM (killed)", p.name, grace)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("%s exited with status %d after SIGTERM", p.name, code)
	}
	return nil
}

func startStack(ctx context.Context, cfg stackConfig) (_ *stack, err error) {
	gwUID, gwGID, err := lookupUser(cfg.GatewayUser)
	if err != nil {
		return nil, err
	}
	sbUID, _, err := lookupUser(cfg.SandboxUser)
	if err != nil {
		return nil, err
	}
	s := &stack{cfg: cfg, runDir: filepath.Join("/run", cfg.Name), sandboxUID: sbUID}
	s.socket = filepath.Join(s.runDir, "sock", "supervisor.sock")
	if err := os.MkdirAll(s.runDir, 0o755); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.stop()
		}
	}()
	args := []string{
		"-socket", s.socket,
		"-gateway-user", cfg.GatewayUser,
		"-sandbox-user", cfg.SandboxUser,
		"-venv", cfg.Venv,
		"-runner", cfg.Runner,
		"-stage-dir", filepath.Join(s.runDir, "stage"),
		"-cgroup-parent", cfg.Name,
		"-engine", cfg.Engine,
	}
	if cfg.Slots > 0 {
		args = append(args, "-slots", strconv.Itoa(cfg.Slots))
	}
	if s.sup, err = startProc("supervisor", filepath.Join(cfg.BinDir, "supervisor"), args, []string{"PATH=/usr/bin:/bin"}, nil); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, 120*time.Second, s.sup, func() bool {
		c, err := net.Dial("unix", s.socket)
		if err == nil {
			c.Close()
		}
		return err == nil
	}); err != nil {
		return nil, fmt.Errorf("supervisor: %w\n%s", err, s.sup.log)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	s.url = "http://" + addr
	cred := &syscall.Credential{Uid: uint32(gwUID), Gid: uint32(gwGID), Groups: []uint32{}}
	if s.gw, err = startProc("gateway", filepath.Join(cfg.BinDir, "gateway"), []string{"-listen", addr, "-socket", s.socket}, []string{"PATH=/usr/bin:/bin"}, cred); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, 30*time.Second, s.gw, func() bool {
		resp, err := http.Get(s.url + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}); err != nil {
		return nil, fmt.Errorf("gateway: %w\n%s", err, s.gw.log)
	}
	return s, nil
}

// stop stops the gateway and the supervisor and reports what they left
// behind: a process that was the supervisor's descendant, a mount under the
// run directory, a cgroup of the stack.
func (s *stack) stop() error {
	var errs []error
	var desc []procID
	if s.sup != nil && !s.sup.exited() {
		desc = descendants(s.sup.cmd.Process.Pid)
	}
	if s.gw != nil {
		errs = append(errs, s.gw.stop(30*time.Second))
	}
	if s.sup != nil {
		errs = append(errs, s.sup.stop(60*time.Second))
	}
	for _, d := range desc {
		if d.alive() {
			errs = append(errs, fmt.Errorf("leftover process %d (%s)", d.pid, d.comm()))
		}
	}
	if m := mountsUnder(s.runDir); len(m) > 0 {
		errs = append(errs, fmt.Errorf("leftover mounts: %s", strings.Join(m, " ")))
	}
	if c := leftoverCgroups(s.cfg.Name); len(c) > 0 {
		errs = append(errs, fmt.Errorf("leftover cgroups: %s", strings.Join(c, " ")))
	}
	if err := os.RemoveAll(s.runDir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// procID names a process by pid and start time, so that a recycled pid is
// not taken for it.
type procID struct {
	pid   int
	start string
}

func (p procID) alive() bool {
	f, err := statFields(p.pid)
	return err == nil && f[19] == p.start && f[0] != "Z"
}

func (p procID) comm() string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.pid))
	return strings.TrimSpace(string(b))
}

// statFields returns /proc/pid/stat after the command name: state first,
// ppid second, starttime at index 19.
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return nil, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return f, nil
}

// descendants lists every live descendant of root.
func descendants(root int) []procID {
	ents, _ := os.ReadDir("/proc")
	children := map[int][]procID{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := statFields(pid)
		if err != nil {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], procID{pid: pid, start: f[19]})
	}
	var out []procID
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c.pid)
		}
	}
	return out
}

// mountsUnder lists the mount points in this (the host's) mount namespace
// at or under dir.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return []string{"(cannot read mountinfo: " + err.Error() + ")"}
	}
	defer f.Close()
	ms, err := mountinfo.GetMountsFromReader(f, mountinfo.PrefixFilter(dir))
	if err != nil {
		return []string{"(cannot parse mountinfo: " + err.Error() + ")"}
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.Mountpoint)
	}
	return out
}

// leftoverCgroups lists the cgroup directories named parent, in any v1
// controller or at the top of the v2 hierarchy.
func leftoverCgroups(parent string) []string {
	left, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", parent))
	if st, err := os.Stat(filepath.Join("/sys/fs/cgroup", parent)); err == nil && st.IsDir() {
		left = append(left, filepath.Join("/sys/fs/cgroup", parent))
	}
	return left
}

// usage is one process's resident memory and open file descriptors.
type usage struct {
	RSSKiB int64 `json:"rss_kib"`
	FDs    int   `json:"fds"`
}

func sample(pid int) (usage, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return usage{}, err
	}
	var u usage
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				u.RSSKiB, _ = strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return usage{}, err
	}
	u.FDs = len(fds)
	return u, nil
}

func waitFor(ctx context.Context, timeout time.Duration, p *proc, ready func() bool) error {
	deadline := time.Now().Add(timeout)
	for !ready() {
		if p.exited() {
			return errors.New("exited during start-up")
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %v", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

func lookupUser(name string) (uid, gid int, err error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, fmt.Errorf("user %s (run make setup): %w", name, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid, nil
}

// logTail keeps the last 64 KiB of a process's log, and apart from that
// its last 20 lines logged at error level, which a busy log would push out.
type logTail struct {
	mu      sync.Mutex
	b       []byte
	partial []byte   // an unfinished line
	errs    []string // the last error lines
}

func (t *logTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - 64<<10; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	t.partial = append(t.partial, p...)
	for {
		i := bytes.IndexByte(t.partial, '\n')
		if i < 0 {
			break
		}
		if line := string(t.partial[:i]); strings.Contains(line, `"level":"error"`) {
			t.errs = append(t.errs, line)
			if len(t.errs) > 20 {
				t.errs = t.errs[1:]
			}
		}
		t.partial = t.partial[i+1:]
	}
	if len(t.partial) > 64<<10 {
		t.partial = t.partial[:0] // a line that long is no log line
	}
	return len(p), nil
}

func (t *logTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// errorLines returns the last lines logged at error level.
func (t *logTail) errorLines() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.errs) == 0 {
		return "(none)"
	}
	return strings.Join(t.errs, "\n")
}
