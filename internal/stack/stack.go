// Package stack starts python-executor's real stack for the tools that drive
// it from outside (cmd/bench, cmd/soak): the supervisor as root and the
// gateway as its own user on a loopback port, as make run does, each
// instance with its own run directory and cgroup parent so that it does not
// meet another one on the host. Stop stops it in order and reports anything
// it left behind.
//
// It uses the service only through its binaries, its socket and GET
// /health, and imports none of the project's packages.
package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/moby/sys/mountinfo"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// Config says how to start one supervisor and gateway pair.
type Config struct {
	// BinDir holds the supervisor and gateway binaries. It must be
	// traversable by GatewayUser.
	BinDir string
	// Venv and Runner are passed to the supervisor (-venv, -runner).
	Venv   string
	Runner string
	// GatewayUser and SandboxUser are the service's users (make setup
	// creates them).
	GatewayUser string
	SandboxUser string
	Engine      string
	// Slots is the supervisor's -slots; 0 leaves its default (one per CPU).
	Slots int
	// Name makes the instance unique: its files live in /run/<Name> and its
	// cgroups under <Name>.
	Name string
	// StartTimeout bounds the supervisor's start-up (it runs a self-test,
	// and a warm engine starts its zygotes, before it listens); 0 means
	// DefaultStartTimeout.
	StartTimeout time.Duration
	// Log, if set, gets what goes wrong while a failed start is undone.
	Log *logrus.Entry
}

// DefaultStartTimeout is the supervisor's start-up bound when Config has
// none.
const DefaultStartTimeout = 120 * time.Second

// How long each process may take to exit after SIGTERM (the supervisor
// drains and then removes its cgroups), and the gateway to answer /health.
const (
	gatewayGrace    = 30 * time.Second
	supervisorGrace = 60 * time.Second
	gatewayStart    = 30 * time.Second
)

// UnavailableError says the supervisor would not run the engine asked for:
// it refused to start with it, or started with another engine instead (a
// fallback, or a supervisor that predates it).
type UnavailableError struct {
	Engine string
	Reason string
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("engine %s unavailable: %s", e.Engine, e.Reason)
}

// Stack is a running supervisor and gateway.
type Stack struct {
	// URL is the gateway's, http://127.0.0.1:<port>.
	URL string
	// Engine is the one the running supervisor reports in /health.
	Engine string
	// SandboxUID is the uid of SandboxUser, which the jails map to.
	SandboxUID int
	RunDir     string
	Socket     string
	Supervisor *Process
	Gateway    *Process

	cfg  Config
	http *http.Client // for /health
	// failedStart is set when Start gives up: Stop then does not repeat
	// that a process exited on its own.
	failedStart bool
}

// Process is one process of the stack.
type Process struct {
	Name string
	Cmd  *exec.Cmd
	// Log is the tail of its standard output and error.
	Log  *Tail
	done chan struct{}
}

// Pid is the process's pid.
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

func startProcess(name, bin string, args, env []string, cred *syscall.Credential) (*Process, error) {
	p := &Process{Name: name, done: make(chan struct{}), Log: &Tail{}}
	p.Cmd = exec.Command(bin, args...)
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
		p.Cmd = &exec.Cmd{Path: "/proc/self/fd/3", Args: append([]string{bin}, args...), ExtraFiles: []*os.File{f}}
		env = append(env, "PYEXEC_GATEWAY_EXE_FD=3")
	}
	p.Cmd.Env = env
	p.Cmd.Stdout, p.Cmd.Stderr = p.Log, p.Log
	// Its own process group, so a Ctrl-C at the terminal reaches only the
	// tool, which then stops the stack in order; and SIGTERM should the tool
	// die without doing so.
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM, Credential: cred}
	if err := p.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { p.Cmd.Wait(); close(p.done) }()
	return p, nil
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits up to grace for a clean exit (status 0);
// after that it kills the process and says so. A process that had already
// exited on its own is reported as such, unless quiet (its failure has been
// reported another way).
func (p *Process) stop(grace time.Duration, quiet bool) error {
	if p.Exited() {
		if code := p.Cmd.ProcessState.ExitCode(); code != 0 && !quiet {
			return fmt.Errorf("%s exited on its own with status %d: %s", p.Name, code, p.Log.LastError())
		}
		return nil
	}
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within %v of SIGTERM (killed)", p.Name, grace)
	}
	if code := p.Cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("%s exited with status %d after SIGTERM: %s", p.Name, code, p.Log.LastError())
	}
	return nil
}

// Start starts a supervisor running cfg.Engine and a gateway in front of it,
// and waits until GET /health answers 200 with that engine. An engine the
// supervisor refuses or replaces is an *UnavailableError. On any error
// nothing is left running.
func Start(ctx context.Context, cfg Config) (_ *Stack, err error) {
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = DefaultStartTimeout
	}
	gwUID, gwGID, err := lookupUser(cfg.GatewayUser)
	if err != nil {
		return nil, err
	}
	sbUID, _, err := lookupUser(cfg.SandboxUser)
	if err != nil {
		return nil, err
	}
	s := &Stack{cfg: cfg, SandboxUID: sbUID, RunDir: filepath.Join("/run", cfg.Name)}
	s.Socket = filepath.Join(s.RunDir, "sock", "supervisor.sock")
	// /run/<name> must be traversable by the gateway user to reach the socket.
	if err := os.MkdirAll(s.RunDir, 0o755); err != nil {
		return nil, fmt.Errorf("create run directory: %w", err)
	}
	defer func() {
		if err != nil {
			s.failedStart = true
			if serr := s.Stop(); serr != nil && cfg.Log != nil {
				cfg.Log.WithError(serr).Warn("stop after failed start")
			}
		}
	}()

	args := []string{
		"-socket", s.Socket,
		"-gateway-user", cfg.GatewayUser,
		"-sandbox-user", cfg.SandboxUser,
		"-venv", cfg.Venv,
		"-runner", cfg.Runner,
		"-stage-dir", filepath.Join(s.RunDir, "stage"),
		"-cgroup-parent", cfg.Name,
	}
	if cfg.Slots > 0 {
		args = append(args, "-slots", strconv.Itoa(cfg.Slots))
	}
	// The engine goes by its documented environment fallback rather than
	// -engine: a supervisor without engines then starts with its only one,
	// which /health names, instead of refusing an unknown flag.
	env := []string{"PATH=/usr/bin:/bin", "PYEXEC_ENGINE=" + cfg.Engine}
	if s.Supervisor, err = startProcess("supervisor", filepath.Join(cfg.BinDir, "supervisor"), args, env, nil); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, cfg.StartTimeout, s.Supervisor, func() bool {
		c, err := net.Dial("unix", s.Socket)
		if err == nil {
			c.Close()
		}
		return err == nil
	}); err != nil {
		if errors.Is(err, errExited) {
			return nil, &UnavailableError{Engine: cfg.Engine, Reason: "the supervisor refused to start: " + s.Supervisor.Log.LastError()}
		}
		return nil, fmt.Errorf("supervisor: %w", err)
	}

	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	s.URL = "http://" + addr
	cred := &syscall.Credential{Uid: uint32(gwUID), Gid: uint32(gwGID), Groups: []uint32{}}
	// No metrics listener: the default port would be shared by every stack
	// on the host.
	gwArgs := []string{"-listen", addr, "-socket", s.Socket, "-metrics-listen", "off"}
	if s.Gateway, err = startProcess("gateway", filepath.Join(cfg.BinDir, "gateway"), gwArgs, []string{"PATH=/usr/bin:/bin"}, cred); err != nil {
		return nil, err
	}
	s.http = &http.Client{Transport: &http.Transport{Proxy: nil}}
	var health struct {
		Engine string `json:"engine"`
	}
	if err := waitFor(ctx, gatewayStart, s.Gateway, func() bool {
		return s.health(ctx, &health) == nil
	}); err != nil {
		if errors.Is(err, errExited) {
			return nil, fmt.Errorf("gateway exited during start-up: %s", s.Gateway.Log.LastError())
		}
		return nil, fmt.Errorf("gateway: %w", err)
	}
	s.Engine = health.Engine
	if s.Engine != cfg.Engine {
		return nil, &UnavailableError{Engine: cfg.Engine, Reason: fmt.Sprintf("the supervisor runs the %q engine instead", s.Engine)}
	}
	return s, nil
}

func (s *Stack) health(ctx context.Context, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: status %d", resp.StatusCode)
	}
	return json.Unmarshal(b, v)
}

// Stop stops the gateway, then the supervisor, each with SIGTERM, and checks
// that both exited cleanly and that nothing is left behind: a process that
// was the supervisor's descendant, the socket, a mount under the run
// directory, a cgroup of the stack. It removes the run directory. It is safe
// on a partly started stack.
func (s *Stack) Stop() error {
	var errs []error
	if s.http != nil {
		s.http.CloseIdleConnections()
	}
	// What the supervisor runs now must be gone once it has exited.
	var desc []procID
	if s.Supervisor != nil && !s.Supervisor.Exited() {
		desc = descendants("/proc", s.Supervisor.Pid())
	}
	if s.Gateway != nil {
		errs = append(errs, s.Gateway.stop(gatewayGrace, s.failedStart))
	}
	if s.Supervisor != nil {
		errs = append(errs, s.Supervisor.stop(supervisorGrace, s.failedStart))
		if _, err := os.Stat(s.Socket); err == nil {
			errs = append(errs, fmt.Errorf("socket %s left behind", s.Socket))
		}
		for _, d := range desc {
			if d.alive("/proc") {
				errs = append(errs, fmt.Errorf("process %d (%s) left behind", d.pid, d.comm("/proc")))
			}
		}
		if m := mountsUnder(s.RunDir); len(m) > 0 {
			errs = append(errs, fmt.Errorf("mounts left behind: %s", strings.Join(m, " ")))
		}
		if dirs := leftoverCgroups(s.cfg.Name); len(dirs) > 0 {
			errs = append(errs, fmt.Errorf("cgroups left behind: %s", strings.Join(dirs, " ")))
		}
	}
	if err := os.RemoveAll(s.RunDir); err != nil {
		errs = append(errs, fmt.Errorf("remove run directory: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop %s stack: %w", s.cfg.Engine, err)
	}
	return nil
}

// Logs is the tail of both processes' logs, for a failure report.
func (s *Stack) Logs() string {
	var b strings.Builder
	for _, p := range []*Process{s.Supervisor, s.Gateway} {
		if p != nil {
			fmt.Fprintf(&b, "--- %s log (tail) ---\n%s", p.Name, p.Log.String())
		}
	}
	return b.String()
}

var errExited = errors.New("exited")

// waitFor polls ready every 50 ms until it holds, p exits (errExited), ctx
// ends or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, p *Process, ready func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if ready() {
			return nil
		}
		if p.Exited() {
			return errExited
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %v: %s", timeout, p.Log.LastError())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// procID names a process by pid and start time, so that a recycled pid is
// not taken for it.
type procID struct {
	pid   int
	start string
}

func (p procID) alive(procDir string) bool {
	f, err := statFields(procDir, p.pid)
	return err == nil && f[19] == p.start && f[0] != "Z"
}

func (p procID) comm(procDir string) string {
	b, _ := os.ReadFile(filepath.Join(procDir, strconv.Itoa(p.pid), "comm"))
	return strings.TrimSpace(string(b))
}

// statFields returns the fields of /proc/<pid>/stat after the command name
// (which may hold spaces and parentheses, so they are counted from the last
// ')'): state first, ppid second, starttime at index 19.
func statFields(procDir string, pid int) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(procDir, strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil, err
	}
	return parseStat(b)
}

func parseStat(b []byte) ([]string, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, errors.New("stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return nil, fmt.Errorf("stat: %d fields after the command name, want at least 20", len(f))
	}
	return f, nil
}

// descendants lists every live descendant of root.
func descendants(procDir string, root int) []procID {
	ents, _ := os.ReadDir(procDir)
	children := map[int][]procID{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := statFields(procDir, pid)
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

func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func lookupUser(name string) (uid, gid int, err error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, fmt.Errorf("user %s (run make setup): %w", name, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("user %s: %w", name, err)
	}
	return uid, gid, nil
}
