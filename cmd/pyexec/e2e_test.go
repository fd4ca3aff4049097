package main

// End-to-end tests: the real pyexec binary against a real supervisor and
// gateway (internal/stack), in both modes. They need root (the supervisor
// runs as root), nsjail and the venv of make setup; they start a supervisor,
// so on a shared host run them under the host lock:
//
//	flock /work/.hosttest.lock go test -count=1 ./cmd/pyexec
//
// Without root they skip, except in CI (CI=true), where that fails.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/python-executor/python-executor/internal/stack"
)

var (
	// theStack is the stack the e2e tests share; nil when they skip.
	theStack *stack.Stack
	// pyexecBin is the binary under test, built from this package.
	pyexecBin string
	// skipReason says why the e2e tests skip.
	skipReason string
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			fmt.Fprintln(os.Stderr, "pyexec e2e: must run as root in CI (the supervisor runs as root)")
			return 1
		}
		skipReason = "not root: the supervisor must run as root"
		return m.Run()
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := os.Stat(filepath.Join(root, ".venv", "bin", "python")); err != nil {
		fmt.Fprintln(os.Stderr, "pyexec e2e: no venv; run make setup:", err)
		return 1
	}
	// A directory the gateway's user can traverse, for binaries built
	// from this tree (not a stale bin/).
	bin, err := os.MkdirTemp("", "pyexec-cli-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(bin)
	if err := os.Chmod(bin, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	build := exec.Command("go", "build", "-o", bin+"/", "./cmd/supervisor", "./cmd/gateway", "./cmd/pyexec")
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "pyexec e2e: build:", err)
		return 1
	}
	pyexecBin = filepath.Join(bin, "pyexec")
	engine := os.Getenv("PYEXEC_CLI_TEST_ENGINE")
	if engine == "" {
		engine = "cold"
	}
	log := logrus.New()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	st, err := stack.Start(ctx, stack.Config{
		BinDir: bin, Venv: filepath.Join(root, ".venv"), Runner: filepath.Join(root, "runner", "runner.py"),
		GatewayUser: "pyexec-gw", SandboxUser: "pyexec-sandbox", Engine: engine, Slots: 2,
		Name: fmt.Sprintf("pyexec-cli-test-%d", os.Getpid()), Log: logrus.NewEntry(log),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "pyexec e2e: start the stack:", err)
		return 1
	}
	theStack = st
	code := m.Run()
	if err := st.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "pyexec e2e: stop the stack:", err, "\n", st.Logs())
		code = 1
	}
	return code
}

func needStack(t *testing.T) {
	t.Helper()
	if theStack == nil {
		// TestMain has already failed the run under CI; this is a
		// second guard, so that no CI run can skip here.
		if os.Getenv("CI") != "" {
			t.Fatal(skipReason)
		}
		t.Skip(skipReason)
	}
}

// mode is how a test reaches the service: its flags.
type mode struct {
	name  string
	flags func() []string
}

var modes = []mode{
	{"url", func() []string { return []string{"--url", theStack.URL} }},
	{"socket", func() []string { return []string{"--socket", theStack.Socket} }},
}

// result is one run of the binary.
type result struct {
	code           int
	stdout, stderr string
}

// pyexec runs the binary in dir with args and a clean PYEXEC_* environment.
func pyexec(t *testing.T, dir string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, pyexecBin, args...)
	cmd.Dir = dir
	cmd.Env = cleanEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("pyexec %v: %v", args, err)
	}
	return result{code, out.String(), errb.String()}
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PYEXEC_") {
			env = append(env, kv)
		}
	}
	return env
}

// writeScript writes a script into dir and returns its name.
func writeScript(t *testing.T, dir, name, src string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

const ioScript = `import os, sys
import matplotlib.pyplot as plt

def main(n, name, opts):
    print("hello", name)
    print("to stderr", file=sys.stderr)
    with open("data.csv") as f:
        rows = f.read().splitlines()
    os.makedirs("output/sub", exist_ok=True)
    with open("output/sub/report.txt", "w") as f:
        f.write("rows=%d\n" % len(rows))
    plt.plot([1, 2, 3], [n, n * 2, n * 3])
    return {"n": n, "name": name, "opts": opts, "rows": len(rows)}
`

// TestRunArgsFilesImages: args (JSON and plain strings), an input file,
// output as it is written, the result, an output file and a figure saved
// under --out, in both modes.
func TestRunArgsFilesImages(t *testing.T) {
	needStack(t)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			dir := t.TempDir()
			writeScript(t, dir, "s.py", ioScript)
			os.WriteFile(filepath.Join(dir, "data.csv"), []byte("a\nb\nc\n"), 0o644)
			args := append([]string{"run", "s.py", "--arg", "n=3", "--arg", "name=Ada", "--arg", `opts={"x": [1, true]}`,
				"--file", filepath.Join(dir, "data.csv"), "--out", "out"}, m.flags()...)
			r := pyexec(t, dir, args...)
			if r.code != 0 {
				t.Fatalf("exit %d, want 0\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
			}
			want := "hello Ada\n{\n  \"n\": 3,\n  \"name\": \"Ada\",\n  \"opts\": {\n    \"x\": [\n      1,\n      true\n    ]\n  },\n  \"rows\": 3\n}\n"
			if r.stdout != want {
				t.Errorf("stdout = %q, want %q", r.stdout, want)
			}
			if !strings.Contains(r.stderr, "to stderr\n") {
				t.Errorf("stderr = %q, want the script's stderr", r.stderr)
			}
			got, err := os.ReadFile(filepath.Join(dir, "out", "files", "sub", "report.txt"))
			if err != nil || string(got) != "rows=3\n" {
				t.Errorf("saved output file = %q, %v; want rows=3", got, err)
			}
			png, err := os.ReadFile(filepath.Join(dir, "out", "images", "figure-1.png"))
			if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
				t.Errorf("saved figure: %d bytes, %v; want a PNG", len(png), err)
			}
		})
	}
}

// TestRunJSONSameInBothModes: --json prints the API's answer, and the two
// modes give the same keys.
func TestRunJSONSameInBothModes(t *testing.T) {
	needStack(t)
	var keys [2]string
	for i, m := range modes {
		dir := t.TempDir()
		writeScript(t, dir, "s.py", ioScript)
		os.WriteFile(filepath.Join(dir, "data.csv"), []byte("a\n"), 0o644)
		r := pyexec(t, dir, append([]string{"run", "s.py", "--json", "--arg", "n=1", "--arg", "name=x", "--arg", "opts=null", "--file", "data.csv"}, m.flags()...)...)
		if r.code != 0 {
			t.Fatalf("%s: exit %d\n%s\n%s", m.name, r.code, r.stdout, r.stderr)
		}
		// The script's own line comes first, then the answer.
		body, ok := strings.CutPrefix(r.stdout, "hello x\n")
		if !ok {
			t.Fatalf("%s: stdout = %q, want the script's line first", m.name, r.stdout)
		}
		var ans map[string]json.RawMessage
		if err := json.Unmarshal([]byte(body), &ans); err != nil {
			t.Fatalf("%s: --json printed %q: %v", m.name, body, err)
		}
		var names []string
		for k := range ans {
			names = append(names, k)
		}
		slices.Sort(names)
		keys[i] = fmt.Sprint(names)
		if string(ans["result"]) == "" || !strings.Contains(string(ans["stdout"]), "hello x") {
			t.Errorf("%s: answer %s lacks the result or stdout", m.name, body)
		}
	}
	if want := "[files images result stats stderr stdout truncated]"; keys[0] != want || keys[1] != want {
		t.Errorf("keys: url %s, socket %s; want both %s", keys[0], keys[1], want)
	}
}

// TestRunErrorExitStatuses: each failure exits with its own status and
// says its type on stderr, in both modes.
func TestRunErrorExitStatuses(t *testing.T) {
	needStack(t)
	cases := []struct {
		name, script string
		extra        []string
		errType      string
		stderrHas    string
	}{
		{"exception", "def main():\n    print('before')\n    return 1 / 0\n", nil, "exception", "ZeroDivisionError"},
		{"syntax", "def main(:\n    pass\n", nil, "syntax_error", "syntax_error"},
		{"missing_main", "x = 1\n", nil, "missing_main", "missing_main"},
		{"invalid_args", "def main(a):\n    return a\n", []string{"--arg", "b=1"}, "invalid_args", "invalid_args"},
		{"invalid_result", "def main():\n    return {1, 2}\n", nil, "invalid_result", "set"},
		{"exited", "import os\ndef main():\n    os._exit(3)\n", nil, "exited", "exited"},
		{"timeout", "import time\ndef main():\n    time.sleep(30)\n", []string{"--timeout", "1"}, "timeout", "timeout"},
		{"memory_limit", "def main():\n    b = bytearray(512 << 20)\n    return len(b)\n", []string{"--limit", "memory_mb=64"}, "memory_limit", "memory_limit"},
		{"invalid_request", "def main():\n    return 1\n", []string{"--limit", "memory_mb=99999999"}, "invalid_request", "invalid_request"},
	}
	for _, m := range modes {
		for _, c := range cases {
			t.Run(m.name+"/"+c.name, func(t *testing.T) {
				dir := t.TempDir()
				writeScript(t, dir, "s.py", c.script)
				r := pyexec(t, dir, append(append([]string{"run", "s.py"}, c.extra...), m.flags()...)...)
				if want := exitCode(c.errType); r.code != want {
					t.Errorf("exit %d, want %d (%s)\nstdout: %s\nstderr: %s", r.code, want, c.errType, r.stdout, r.stderr)
				}
				if !strings.Contains(r.stderr, "pyexec: "+c.errType+":") || !strings.Contains(r.stderr, c.stderrHas) {
					t.Errorf("stderr = %q, want the type %s and %q", r.stderr, c.errType, c.stderrHas)
				}
				if c.name == "exception" {
					if r.stdout != "before\n" {
						t.Errorf("stdout = %q, want the output before the error and no result", r.stdout)
					}
					if !strings.Contains(r.stderr, "Traceback") {
						t.Errorf("stderr = %q, want the traceback", r.stderr)
					}
				}
			})
		}
	}
}

// TestRunStreamsOutput: the first line is on pyexec's stdout while the
// script still runs, in both modes.
func TestRunStreamsOutput(t *testing.T) {
	needStack(t)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			dir := t.TempDir()
			writeScript(t, dir, "s.py", "import sys, time\ndef main():\n    print('first', flush=True)\n    time.sleep(4)\n    print('second')\n    return 'ok'\n")
			cmd := exec.Command(pyexecBin, append([]string{"run", "s.py"}, m.flags()...)...)
			cmd.Dir, cmd.Env = dir, cleanEnv()
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(out)
			line, err := br.ReadString('\n')
			firstAt := time.Now()
			if err != nil || line != "first\n" {
				t.Fatalf("first line %q, %v", line, err)
			}
			rest, _ := io.ReadAll(br)
			werr := cmd.Wait()
			if werr != nil {
				t.Fatalf("pyexec: %v\n%s", werr, stderr.String())
			}
			// The script sleeps 4 s between its lines: the first must have
			// come well before the end.
			if d := time.Since(firstAt); d < 2*time.Second {
				t.Errorf("the first line came %v before the end, want it streamed (about 4 s)", d)
			}
			if string(rest) != "second\n\"ok\"\n" {
				t.Errorf("rest of stdout = %q", rest)
			}
		})
	}
}

// TestRunInterruptCancels: Ctrl-C ends pyexec with 130 at once, and the
// execution is cancelled (the supervisor has nothing running after).
func TestRunInterruptCancels(t *testing.T) {
	needStack(t)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			dir := t.TempDir()
			writeScript(t, dir, "s.py", "import time\ndef main():\n    print('started', flush=True)\n    time.sleep(25)\n")
			cmd := exec.Command(pyexecBin, append([]string{"run", "s.py"}, m.flags()...)...)
			cmd.Dir, cmd.Env = dir, cleanEnv()
			out, _ := cmd.StdoutPipe()
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if line, err := bufio.NewReader(out).ReadString('\n'); line != "started\n" {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("first line %q, %v", line, err)
			}
			sent := time.Now()
			cmd.Process.Signal(syscall.SIGINT)
			err := cmd.Wait()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitInterrupted {
				t.Fatalf("after SIGINT: %v, want exit %d\n%s", err, exitInterrupted, stderr.String())
			}
			if d := time.Since(sent); d > 5*time.Second {
				t.Errorf("pyexec took %v to exit after SIGINT", d)
			}
			// The supervisor cancels it: nothing is running soon after.
			deadline := time.Now().Add(15 * time.Second)
			for {
				r := pyexec(t, dir, "health", "--socket", theStack.Socket)
				var h struct{ Running int }
				json.Unmarshal([]byte(r.stdout), &h)
				if r.code == 0 && h.Running == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the execution still runs 15 s after the interrupt: %s", r.stdout)
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
}

// TestHealth: healthy over both modes; unreachable targets exit with
// unavailable's status.
func TestHealth(t *testing.T) {
	needStack(t)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			r := pyexec(t, t.TempDir(), append([]string{"health"}, m.flags()...)...)
			var h struct{ Status, Engine string }
			if err := json.Unmarshal([]byte(r.stdout), &h); err != nil || r.code != 0 || h.Status != "healthy" || h.Engine != theStack.Engine {
				t.Errorf("health: exit %d, %q (%v), want 0 and healthy with engine %s", r.code, r.stdout, err, theStack.Engine)
			}
		})
	}
	// A port nobody listens on, and a socket path that does not exist.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	writeScript(t, dir, "s.py", "def main():\n    return 1\n")
	for _, args := range [][]string{
		{"health", "--url", dead},
		{"health", "--socket", filepath.Join(dir, "no.sock")},
		{"run", "s.py", "--url", dead},
		{"run", "s.py", "--socket", filepath.Join(dir, "no.sock")},
	} {
		r := pyexec(t, dir, args...)
		if r.code != exitCode("unavailable") {
			t.Errorf("pyexec %v: exit %d, want %d (unavailable)\n%s", args, r.code, exitCode("unavailable"), r.stderr)
		}
	}
}

// TestRunEnvironmentURL: PYEXEC_URL is the default target.
func TestRunEnvironmentURL(t *testing.T) {
	needStack(t)
	dir := t.TempDir()
	writeScript(t, dir, "s.py", "def main():\n    return [1, 2]\n")
	cmd := exec.Command(pyexecBin, "run", "s.py")
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), "PYEXEC_URL="+theStack.URL)
	out, err := cmd.Output()
	if err != nil || string(out) != "[\n  1,\n  2\n]\n" {
		t.Errorf("with PYEXEC_URL: %q, %v", out, err)
	}
	// PYEXEC_SOCKET selects the socket; "-" reads the script from stdin.
	cmd = exec.Command(pyexecBin, "run", "-")
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), "PYEXEC_SOCKET="+theStack.Socket, "PYEXEC_URL=http://127.0.0.1:1")
	cmd.Stdin = strings.NewReader("def main():\n    return 'stdin'\n")
	out, err = cmd.Output()
	if err != nil || string(out) != "\"stdin\"\n" {
		t.Errorf("with PYEXEC_SOCKET and a script on stdin: %q, %v", out, err)
	}
}
