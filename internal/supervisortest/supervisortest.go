// Package supervisortest starts the real supervisor binary (and optionally the
// real gateway) for integration tests: real nsjail, real sockets, real
// cgroups, each instance with its own socket, stage directory and cgroup
// parent, all checked for leftovers when the test ends. Only tests import it.
package supervisortest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/python-executor/python-executor/client"
	"github.com/python-executor/python-executor/internal/engine/warm"
	"github.com/python-executor/python-executor/supervisor"
)

// SandboxUser is the host user the jails map to in tests (created by setup).
const SandboxUser = "pyexec-sandbox"

// GatewayUser is the unprivileged user the gateway runs as (created by setup).
const GatewayUser = "pyexec-gw"

// RequireRoot skips outside CI and fails inside it: nothing skips in CI.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("integration tests need root (real nsjail, namespaces, cgroups)")
	}
	t.Skip("integration tests need root")
}

// RepoRoot is the checkout this package was compiled from, with its venv.
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(filepath.Dir(file)))
	if _, err := os.Stat(filepath.Join(root, ".venv", "bin", "python3")); err != nil {
		t.Fatalf("no venv at %s/.venv: run make setup (%v)", root, err)
	}
	return root
}

var (
	buildOnce sync.Once
	binDir    string
	prebuilt  string
	buildErr  error
)

// Binaries builds cmd/supervisor and cmd/gateway once per test binary and
// returns the directory holding them. The directory is world-traversable so
// the gateway user can execute its binary. PYEXEC_TEST_BIN_DIR names a
// directory of binaries built beforehand instead (make test-v2 runs the
// test binaries in a guest without a Go toolchain); it is never removed.
func Binaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if dir := os.Getenv("PYEXEC_TEST_BIN_DIR"); dir != "" {
			for _, b := range []string{"supervisor", "gateway"} {
				if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
					buildErr = fmt.Errorf("PYEXEC_TEST_BIN_DIR: %v", err)
				}
			}
			prebuilt = dir
			return
		}
		root := RepoRoot(t)
		binDir, buildErr = os.MkdirTemp("", "pyexec-bin-")
		if buildErr != nil {
			return
		}
		os.Chmod(binDir, 0o755)
		cmd := exec.Command("go", "build", "-o", binDir+"/", "./cmd/supervisor", "./cmd/gateway")
		cmd.Dir = root
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, stderr.String())
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	if prebuilt != "" {
		return prebuilt
	}
	return binDir
}

// Cleanup removes the built binaries; call it from TestMain after m.Run.
func Cleanup() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

// Buffer is a goroutine-safe log sink.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
	// source, when set, gives the whole text instead (a service's log read
	// where it runs; see remote.go).
	source func() string
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	if s.source != nil {
		return s.source()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Supervisor is one running supervisor process.
type Supervisor struct {
	Socket   string
	CgParent string
	RunDir   string
	StageDir string // its -stage-dir: no mount under it may show outside
	Logs     *Buffer
	Client   *client.Client
	// Env is the supervisor's whole environment; it carries a canary that
	// must never show up inside a jail.
	Env []string

	bin     string
	args    []string
	cmd     *exec.Cmd
	done    chan struct{}
	stopped bool
	remote  bool // a service already running (PYEXEC_E2E_URL)
}

// Canary is set in the supervisor's environment; no answer may contain it.
const Canary = "canary-supervisor-env-31337"

var seq struct {
	mu sync.Mutex
	n  int
}

// Engines are the engines the integration suites run against, from
// PYEXEC_TEST_ENGINES (space- or comma-separated); both by default.
func Engines() []string {
	v := os.Getenv("PYEXEC_TEST_ENGINES")
	if strings.TrimSpace(v) == "" {
		return []string{"cold", "warm"}
	}
	return strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == ',' })
}

// ForEachEngine runs f as a subtest named after each of Engines.
func ForEachEngine(t *testing.T, f func(t *testing.T, engine string)) {
	t.Helper()
	for _, e := range Engines() {
		t.Run(e, func(t *testing.T) { f(t, e) })
	}
}

// Options tune Start.
type Options struct {
	// Engine is the supervisor's -engine ("" = its default). Start fails
	// the test when the supervisor runs another one (a silent fallback).
	Engine string
	// Args are extra supervisor flags.
	Args []string
	// GatewayUser admits that user's uid/gid on the socket ("" = root only).
	GatewayUser string
	// Wrapper runs the supervisor through a command (its argv before the
	// supervisor's, e.g. setpriv dropping capabilities); nil = directly.
	Wrapper []string
}

// Start starts a supervisor and stops it when the test ends, asserting a
// clean exit and that no socket, cgroup or jailed process is left behind.
func Start(t testing.TB, opt Options) *Supervisor {
	t.Helper()
	RequireRoot(t)
	root := RepoRoot(t)
	bin := Binaries(t)
	seq.mu.Lock()
	seq.n++
	n := seq.n
	seq.mu.Unlock()
	name := fmt.Sprintf("pyexec-it-%d-%d", os.Getpid(), n)
	// /run is traversable by everyone, unlike t.TempDir() (0700).
	s := &Supervisor{
		RunDir:   filepath.Join("/run", name),
		CgParent: name,
		Logs:     &Buffer{},
		Env:      []string{"PATH=/usr/bin:/bin", "PYEXEC_CANARY=" + Canary},
	}
	if v, ok := os.LookupEnv(SlimZygotesEnv); ok {
		s.Env = append(s.Env, SlimZygotesEnv+"="+v)
	}
	s.Socket = filepath.Join(s.RunDir, "sock", "supervisor.sock")
	s.StageDir = filepath.Join(s.RunDir, "stage")
	args := append([]string{
		"-socket", s.Socket,
		"-gateway-user", opt.GatewayUser,
		"-sandbox-user", SandboxUser,
		"-venv", filepath.Join(root, ".venv"),
		"-runner", filepath.Join(root, "runner", "runner.py"),
		"-stage-dir", s.StageDir,
		"-cgroup-parent", s.CgParent,
		"-log-level", "debug",
	}, append(queueWaitArgs(true), opt.Args...)...)
	if opt.Engine != "" {
		args = append(args, "-engine", opt.Engine)
	}
	s.bin = filepath.Join(bin, "supervisor")
	s.args = args
	if len(opt.Wrapper) > 0 {
		s.args = append(append(append([]string(nil), opt.Wrapper[1:]...), s.bin), args...)
		s.bin = opt.Wrapper[0]
	}
	if err := os.MkdirAll(s.RunDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop(t); os.RemoveAll(s.RunDir) })
	s.launch(t)
	s.Client = client.New(client.Config{SocketPath: s.Socket})
	if opt.Engine != "" {
		st, err := s.Client.Status(context.Background())
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		if st.Engine != opt.Engine {
			t.Fatalf("supervisor runs engine %q, want %q:\n%s", st.Engine, opt.Engine, s.Logs)
		}
	}
	return s
}

// launch starts the process and waits until it listens.
func (s *Supervisor) launch(t testing.TB) {
	t.Helper()
	if s.remote {
		t.Fatal("this test restarts the supervisor, which a service already running (PYEXEC_E2E_URL) does not allow: list it among the local-only tests")
	}
	s.done = make(chan struct{})
	s.stopped = false
	s.cmd = exec.Command(s.bin, s.args...)
	s.cmd.Stderr = s.Logs
	s.cmd.Stdout = s.Logs
	s.cmd.Env = s.Env
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start supervisor: %v", err)
	}
	done := s.done
	cmd := s.cmd
	go func() { cmd.Wait(); close(done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c, err := net.Dial("unix", s.Socket); err == nil {
			c.Close()
			return
		}
		select {
		case <-done:
			t.Fatalf("supervisor exited during start-up:\n%s", s.Logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("supervisor did not listen within 60s:\n%s", s.Logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Restart starts the supervisor again with the same flags, after Kill or
// Stop; clients reconnect by themselves.
func (s *Supervisor) Restart(t testing.TB) {
	t.Helper()
	s.launch(t)
}

// Kill kills the supervisor with SIGKILL (no clean-up of its own).
func (s *Supervisor) Kill() {
	if s.remote {
		panic("supervisortest: Kill needs a supervisor of the test's own, not a service already running (PYEXEC_E2E_URL): list the test among the local-only tests")
	}
	s.cmd.Process.Kill()
	<-s.done
	s.stopped = true
}

// Done is closed when the supervisor process has exited.
func (s *Supervisor) Done() <-chan struct{} { return s.done }

// Pid is the supervisor process's id (0 for a service already running,
// PYEXEC_E2E_URL).
func (s *Supervisor) Pid() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Stop sends SIGTERM, waits, and checks that nothing was left behind. It is
// safe to call more than once.
func (s *Supervisor) Stop(t testing.TB) {
	t.Helper()
	if s.Client != nil {
		s.Client.Close()
	}
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	if !s.stopped {
		s.stopped = true
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
			t.Errorf("supervisor did not stop within 30s of SIGTERM")
		}
		if code := s.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("supervisor exit code %d, want 0", code)
		}
		if _, err := os.Stat(s.Socket); err == nil {
			t.Errorf("socket %s left behind", s.Socket)
		}
	}
	if left := LeftoverCgroups(s.CgParent); len(left) > 0 {
		t.Errorf("cgroups left behind: %v", left)
	}
	if pids := SandboxProcesses(t); len(pids) > 0 {
		t.Errorf("jailed processes left behind: %v", pids)
	}
	if t.Failed() {
		t.Logf("supervisor log:\n%s", s.Logs)
	}
}

// LeftoverCgroups lists the cgroup directories named parent, in any v1
// controller or in the v2 hierarchy: a stopped supervisor removes them all.
func LeftoverCgroups(parent string) []string {
	left, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", parent))
	if st, err := os.Stat(filepath.Join("/sys/fs/cgroup", parent)); err == nil && st.IsDir() {
		left = append(left, filepath.Join("/sys/fs/cgroup", parent))
	}
	return left
}

// SandboxProcesses lists live host processes running as the sandbox user,
// zygotes of the warm engine and their untaken spares excepted (see
// ZygoteProcesses): what is left of executions. Zombies are not counted: they are dead, and the only ones that
// can appear are jails orphaned by a supervisor killed with SIGKILL (the test
// of exactly that), which the host's init reaps in its own time. A running
// supervisor is a subreaper and reaps its orphans itself.
//
// With PYEXEC_E2E_URL the same check runs where that service runs.
func SandboxProcesses(t testing.TB) []int {
	t.Helper()
	if Remote() {
		var pids []int
		InTarget(t, &pids, "sandbox-processes")
		return pids
	}
	uid, _ := LookupUser(t, SandboxUser)
	return sandboxProcessesOf(uid, false)
}

// sandboxUID is the sandbox user's uid on this machine.
func sandboxUID() (int, error) {
	u, err := user.Lookup(SandboxUser)
	if err != nil {
		return 0, fmt.Errorf("user %s (run make setup): %v", SandboxUser, err)
	}
	return strconv.Atoi(u.Uid)
}

// sandboxProcessesOf lists the live processes of uid and of the
// per-execution uid range (without cgroups, and in the container tier, each
// execution runs as a uid of its own): the zygotes alone when zygotes is
// set, else all but the zygotes and their untaken spares.
func sandboxProcessesOf(uid int, zygotes bool) []int {
	pids := []int{}
	for _, pid := range Processes(func(pid int) bool {
		var st syscall.Stat_t
		if syscall.Stat(fmt.Sprintf("/proc/%d", pid), &st) != nil {
			return false
		}
		perExec := int(st.Uid) >= supervisor.DefaultSandboxUIDBase && int(st.Uid) < supervisor.DefaultSandboxUIDBase+supervisor.DefaultSandboxUIDCount
		if int(st.Uid) != uid && !perExec {
			return false
		}
		f := procStat(pid)
		return len(f) > 0 && f[0] != "Z"
	}) {
		if zygotes && isZygote(pid) || !zygotes && !isZygote(pid) && !IsSpare(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// ZygoteProcesses lists the live zygotes of warm engines: sandbox-user
// processes running zygote.py whose parent is nsjail (the zygotes' children
// run zygote.py too, but their parent is the zygote).
func ZygoteProcesses(t testing.TB) []int {
	t.Helper()
	uid, _ := LookupUser(t, SandboxUser)
	return sandboxProcessesOf(uid, true)
}

func isZygote(pid int) bool {
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if !bytes.Contains(cmdline, []byte("zygote.py")) {
		return false
	}
	f := procStat(pid)
	if len(f) < 2 {
		return false
	}
	comm, _ := os.ReadFile("/proc/" + f[1] + "/comm")
	return strings.TrimSpace(string(comm)) == "nsjail"
}

// IsSpare reports whether pid is a warm engine's spare not taken by an
// execution yet: a zygote's child under supervisor.SparePolicy.
func IsSpare(pid int) bool {
	f := procStat(pid)
	if len(f) < 39 || f[38] != strconv.Itoa(warm.SparePolicy) {
		return false
	}
	ppid, err := strconv.Atoi(f[1])
	return err == nil && isZygote(ppid)
}

// procStat returns the fields of /proc/pid/stat after the command name:
// state, ppid, ... (field 3 of proc(5) first).
func procStat(pid int) []string {
	stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(stat[i+1:]))
}

// Processes lists the live host processes for which match is true.
func Processes(match func(pid int) bool) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && match(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// LookupUser returns a user's uid and primary gid.
func LookupUser(t testing.TB, name string) (uid, gid int) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("user %s (run make setup): %v", name, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

// Gateway is one running gateway process, as the unprivileged gateway user.
type Gateway struct {
	URL  string
	Logs *Buffer

	port string // the port it listens on where it runs, when not URL's

	cmd  *exec.Cmd
	done chan struct{}
}

// StartGateway starts the real gateway binary as GatewayUser (no
// capabilities, no supplementary groups) on a free loopback port, talking to
// s, which must have been started with Options.GatewayUser = GatewayUser. It
// is stopped when the test ends. Its metrics listener is off (gateways of
// parallel tests would all want the default port) unless args turn it on
// with -metrics-listen (the last flag wins).
func StartGateway(t testing.TB, s *Supervisor, args ...string) *Gateway {
	t.Helper()
	bin := Binaries(t)
	uid, gid := LookupUser(t, GatewayUser)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	g := &Gateway{URL: "http://" + addr, Logs: &Buffer{}, done: make(chan struct{})}
	g.cmd = exec.Command(filepath.Join(bin, "gateway"), append(append([]string{"-listen", addr, "-socket", s.Socket, "-log-level", "debug", "-metrics-listen", "off"}, queueWaitArgs(false)...), args...)...)
	g.cmd.Env = []string{"PATH=/usr/bin:/bin"}
	g.cmd.Stdout = g.Logs
	g.cmd.Stderr = g.Logs
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
	if err := g.cmd.Start(); err != nil {
		t.Fatalf("start gateway: %v", err)
	}
	go func() { g.cmd.Wait(); close(g.done) }()
	t.Cleanup(func() {
		g.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-g.done:
		case <-time.After(20 * time.Second):
			g.cmd.Process.Kill()
			<-g.done
			t.Errorf("gateway did not stop within 20s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", g.Logs)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return g
		}
		select {
		case <-g.done:
			t.Fatalf("gateway exited during start-up:\n%s", g.Logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway did not listen within 20s:\n%s", g.Logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Port is the TCP port the gateway listens on where it runs (inside a
// container it differs from URL's).
func (g *Gateway) Port() string {
	if g.port != "" {
		return g.port
	}
	u, _ := url.Parse(g.URL)
	return u.Port()
}

// Pid is the gateway's process id.
func (g *Gateway) Pid() int { return g.cmd.Process.Pid }

// Stack is a supervisor and a gateway wired together as in production.
type Stack struct {
	Supervisor *Supervisor
	Gateway    *Gateway
}

// StartStack starts a supervisor running engine ("" = its default) and
// admitting the gateway user, then the gateway. With PYEXEC_E2E_URL set it
// attaches to that service instead (see remote.go).
func StartStack(t testing.TB, engine string, supervisorArgs ...string) *Stack {
	t.Helper()
	if Remote() {
		return startRemote(t, engine, supervisorArgs)
	}
	s := Start(t, Options{Engine: engine, Args: supervisorArgs, GatewayUser: GatewayUser})
	return &Stack{Supervisor: s, Gateway: StartGateway(t, s)}
}

// SlimZygotesEnv, when set in the tests' environment, reaches every
// supervisor they start (its PYEXEC_SLIM_ZYGOTES; flags a test passes still
// win): PYEXEC_SLIM_ZYGOTES=0 runs a suite with the warm engine's slim
// zygote kind off, every execution on the preloaded zygotes, which is how
// the isolation tests cover both kinds (scripts that import nothing run on
// the slim kind by default).
const SlimZygotesEnv = "PYEXEC_SLIM_ZYGOTES"

// SlimZygotesOff reports whether the tests run with the slim kind off
// (SlimZygotesEnv is 0).
func SlimZygotesOff() bool { return os.Getenv(SlimZygotesEnv) == "0" }

// QueueWaitEnv, when set (a Go duration), is the queue wait and the zygote
// wait of every supervisor and gateway the tests start, in place of their
// 5 s defaults: under emulation (make test-v2) an execution, or a zygote's
// restart, takes several times as long, and a queue that is only slow would
// be answered busy. Tests that pass their own flags still win (they come
// later on the command line).
const QueueWaitEnv = "PYEXEC_TEST_QUEUE_WAIT"

func queueWaitArgs(supervisor bool) []string {
	v := os.Getenv(QueueWaitEnv)
	if v == "" {
		return nil
	}
	if supervisor {
		return []string{"-max-queue-wait", v, "-not-ready-after", v}
	}
	return []string{"-max-queue-wait", v}
}
