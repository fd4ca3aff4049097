package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

	"github.com/sirupsen/logrus"
)

// UnavailableError says an engine could not be benchmarked because the
// supervisor would not run it: it refused to start with it, or started with
// another engine instead (a fallback, or a supervisor that predates it).
type UnavailableError struct {
	Engine string
	Reason string
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("engine %s unavailable: %s", e.Engine, e.Reason)
}

// stackConfig says how to start one supervisor and gateway pair.
type stackConfig struct {
	BinDir      string
	Venv        string
	Runner      string
	GatewayUser string
	SandboxUser string
	Engine      string
	// Slots is the supervisor's -slots; 0 leaves its default (one per CPU).
	Slots int
	// Name makes the instance unique: its files live in /run/<Name> and its
	// cgroups under <Name>.
	Name string
	// StartTimeout bounds the supervisor's start-up (it runs a self-test,
	// and a warm engine starts its zygotes, before it listens).
	StartTimeout time.Duration
	Log          *logrus.Entry
}

// stack is a running supervisor and gateway, wired as in production: the
// supervisor as root, the gateway as the gateway user, on a loopback port.
type stack struct {
	cfg        stackConfig
	url        string
	engine     string // as the running supervisor reports it
	sandboxUID int
	runDir     string
	socket     string
	sup, gw    *child
	http       *http.Client
	// failedStart is set when startStack gives up: stop then does not
	// repeat that a process exited on its own.
	failedStart bool
}

// child is one process the benchmark started.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	logs *tail
}

func startChild(name, bin string, args, env []string, cred *syscall.Credential) (*child, error) {
	c := &child{name: name, done: make(chan struct{}), logs: &tail{max: 64 << 10}}
	c.cmd = exec.Command(bin, args...)
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
		c.cmd = &exec.Cmd{Path: "/proc/self/fd/3", Args: append([]string{bin}, args...), ExtraFiles: []*os.File{f}}
		env = append(env, "PYEXEC_GATEWAY_EXE_FD=3")
	}
	c.cmd.Env = env
	c.cmd.Stdout = c.logs
	c.cmd.Stderr = c.logs
	// Its own process group, so a Ctrl-C at the terminal reaches only the
	// benchmark, which then stops the stack in order; and SIGTERM should the
	// benchmark die without doing so.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM, Credential: cred}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { c.cmd.Wait(); close(c.done) }()
	return c, nil
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits up to grace for a clean exit (status 0);
// after that it kills the process and says so.
// A process that had already exited on its own is reported as such, unless
// quiet (its failure has been reported another way).
func (c *child) stop(grace time.Duration, quiet bool) error {
	if c.exited() {
		if code := c.cmd.ProcessState.ExitCode(); code != 0 && !quiet {
			return fmt.Errorf("%s exited on its own with status %d: %s", c.name, code, c.logs.lastError())
		}
		return nil
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(grace):
		c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("%s did not stop within %v of SIGTERM (killed)", c.name, grace)
	}
	if code := c.cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("%s exited with status %d after SIGTERM: %s", c.name, code, c.logs.lastError())
	}
	return nil
}

// startStack starts a supervisor running cfg.Engine and a gateway in front of
// it, and waits until GET /health answers 200 with that engine. An engine the
// supervisor refuses or replaces is an *UnavailableError. On any error
// nothing is left running.
func startStack(ctx context.Context, cfg stackConfig) (_ *stack, err error) {
	gwUID, gwGID, err := lookupUser(cfg.GatewayUser)
	if err != nil {
		return nil, err
	}
	sbUID, _, err := lookupUser(cfg.SandboxUser)
	if err != nil {
		return nil, err
	}
	s := &stack{cfg: cfg, sandboxUID: sbUID, runDir: filepath.Join("/run", cfg.Name)}
	s.socket = filepath.Join(s.runDir, "sock", "supervisor.sock")
	// /run/<name> must be traversable by the gateway user to reach the socket.
	if err := os.MkdirAll(s.runDir, 0o755); err != nil {
		return nil, fmt.Errorf("create run directory: %w", err)
	}
	defer func() {
		if err != nil {
			s.failedStart = true
			if serr := s.stop(); serr != nil {
				cfg.Log.WithError(serr).Warn("stop after failed start")
			}
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
	}
	if cfg.Slots > 0 {
		args = append(args, "-slots", strconv.Itoa(cfg.Slots))
	}
	// The engine goes by its documented environment fallback rather than
	// -engine: a supervisor without engines then starts with its only one,
	// which /health names, instead of refusing an unknown flag.
	env := []string{"PATH=/usr/bin:/bin", "PYEXEC_ENGINE=" + cfg.Engine}
	if s.sup, err = startChild("supervisor", filepath.Join(cfg.BinDir, "supervisor"), args, env, nil); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, cfg.StartTimeout, s.sup, func() bool {
		c, err := net.Dial("unix", s.socket)
		if err == nil {
			c.Close()
		}
		return err == nil
	}); err != nil {
		if errors.Is(err, errExited) {
			return nil, &UnavailableError{Engine: cfg.Engine, Reason: "the supervisor refused to start: " + s.sup.logs.lastError()}
		}
		return nil, fmt.Errorf("supervisor: %w", err)
	}

	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	s.url = "http://" + addr
	cred := &syscall.Credential{Uid: uint32(gwUID), Gid: uint32(gwGID), Groups: []uint32{}}
	gwArgs := []string{"-listen", addr, "-socket", s.socket}
	if s.gw, err = startChild("gateway", filepath.Join(cfg.BinDir, "gateway"), gwArgs, []string{"PATH=/usr/bin:/bin"}, cred); err != nil {
		return nil, err
	}
	s.http = newHTTPClient(64)
	var health struct {
		Engine string `json:"engine"`
	}
	if err := waitFor(ctx, 20*time.Second, s.gw, func() bool {
		return s.health(ctx, &health) == nil
	}); err != nil {
		if errors.Is(err, errExited) {
			return nil, fmt.Errorf("gateway exited during start-up: %s", s.gw.logs.lastError())
		}
		return nil, fmt.Errorf("gateway: %w", err)
	}
	s.engine = health.Engine
	if s.engine != cfg.Engine {
		return nil, &UnavailableError{Engine: cfg.Engine, Reason: fmt.Sprintf("the supervisor runs the %q engine instead", s.engine)}
	}
	return s, nil
}

func (s *stack) health(ctx context.Context, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/health", nil)
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

// stop stops the gateway, then the supervisor, each with SIGTERM, and checks
// that both exited cleanly and that the supervisor left no socket, cgroup or
// sandboxed process behind. It removes the run directory. It is safe on a
// partly started stack.
func (s *stack) stop() error {
	var errs []error
	if s.http != nil {
		s.http.CloseIdleConnections()
	}
	if s.gw != nil {
		errs = append(errs, s.gw.stop(20*time.Second, s.failedStart))
	}
	if s.sup != nil {
		// What the supervisor runs now must be gone once it has exited.
		left, _ := sampleSandbox("/proc", s.sup.cmd.Process.Pid, s.sandboxUID)
		errs = append(errs, s.sup.stop(30*time.Second, s.failedStart))
		if _, err := os.Stat(s.socket); err == nil {
			errs = append(errs, fmt.Errorf("socket %s left behind", s.socket))
		}
		for _, pid := range left.Pids {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
				if uid, err := parseRealUID(b); err == nil && uid == s.sandboxUID {
					errs = append(errs, fmt.Errorf("sandboxed process %d left behind", pid))
				}
			}
		}
		if dirs := leftoverCgroups(s.cfg.Name); len(dirs) > 0 {
			errs = append(errs, fmt.Errorf("cgroups left behind: %s", strings.Join(dirs, " ")))
		}
	}
	if err := os.RemoveAll(s.runDir); err != nil {
		errs = append(errs, fmt.Errorf("remove run directory: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop %s stack: %w", s.cfg.Engine, err)
	}
	return nil
}

// logs is the tail of both processes' logs, for a failure report.
func (s *stack) logs() string {
	var b strings.Builder
	for _, c := range []*child{s.sup, s.gw} {
		if c != nil {
			fmt.Fprintf(&b, "--- %s log (tail) ---\n%s", c.name, c.logs.String())
		}
	}
	return b.String()
}

var errExited = errors.New("exited")

// waitFor polls ready every 50 ms until it holds, c exits (errExited), ctx
// ends or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, c *child, ready func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if ready() {
			return nil
		}
		if c.exited() {
			return errExited
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %v: %s", timeout, c.logs.lastError())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
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

// tail keeps the last max bytes written to it; safe for concurrent use.
type tail struct {
	max int
	mu  sync.Mutex // guards b
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// lastError is the most telling line of a log: the last one logged at
// error level or above (as "msg: error" for a JSON log), else the last line.
func (t *tail) lastError() string {
	lines := strings.Split(strings.TrimSpace(t.String()), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		var e struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
			Error string `json:"error"`
		}
		if json.Unmarshal([]byte(lines[i]), &e) == nil && (e.Level == "error" || e.Level == "fatal" || e.Level == "panic") {
			if e.Error != "" {
				return e.Msg + ": " + e.Error
			}
			return e.Msg
		}
	}
	if last := strings.TrimSpace(lines[len(lines)-1]); last != "" {
		return last
	}
	return "(no log)"
}
