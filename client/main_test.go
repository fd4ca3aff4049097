package client_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	"testing"

	"github.com/python-executor/python-executor/internal/stack"
)

// supervisorSocket is the socket of the real stack TestMain starts for the
// examples (a supervisor as root and its gateway, as make run starts them):
// the examples run against it, so their Output is what the service answers.
// In a deployment it is /run/python-executor/supervisor.sock.
var supervisorSocket string

// examples are the package's Example functions: TestMain starts the stack
// only when -run selects one of them (every test runs when -run is unset).
var examples = []string{"ExampleClient_Stream", "ExampleClient_Execute_argsAndFiles", "ExampleOutcome_images"}

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	flag.Parse()
	run := flag.Lookup("test.run").Value.String()
	if !selectsAny(run, examples) {
		return m.Run()
	}
	if os.Geteuid() != 0 {
		// Nothing skips in CI: there a missing prerequisite fails.
		if os.Getenv("CI") != "" {
			fmt.Fprintln(os.Stderr, "client: the examples run against the real stack, which needs root")
			return 1
		}
		fmt.Fprintln(os.Stderr, "client: not root, so the examples (which need the real stack) are left out")
		if run == "" {
			flag.Set("test.run", "^Test")
		}
		return m.Run()
	}
	st, cleanup, err := startStack()
	if err != nil {
		fmt.Fprintln(os.Stderr, "client: start the stack for the examples:", err)
		return 1
	}
	supervisorSocket = st.Socket
	code := m.Run()
	if err := st.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "client: stop the stack:", err)
		code = 1
	}
	cleanup()
	return code
}

// selectsAny reports whether -run (empty: everything) selects one of names.
func selectsAny(run string, names []string) bool {
	if run == "" {
		return true
	}
	// -run's first slash-separated part selects top-level tests.
	re, err := regexp.Compile(strings.Split(run, "/")[0])
	if err != nil {
		return true // go test reports the bad pattern itself
	}
	for _, n := range names {
		if re.MatchString(n) {
			return true
		}
	}
	return false
}

// startStack builds the supervisor and gateway from this checkout and
// starts them with the checkout's venv and runner (make setup makes them).
func startStack() (*stack.Stack, func(), error) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(file))
	bin, err := os.MkdirTemp("", "pyexec-client-bin-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { os.RemoveAll(bin) }
	// The gateway's user must traverse it.
	if err := os.Chmod(bin, 0o755); err != nil {
		cleanup()
		return nil, nil, err
	}
	cmd := exec.Command("go", "build", "-o", bin+"/", "./cmd/supervisor", "./cmd/gateway")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("go build: %v\n%s", err, out)
	}
	venv := filepath.Join(root, ".venv")
	if _, err := os.Stat(filepath.Join(venv, "bin", "python3")); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("no venv (run make setup): %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st, err := stack.Start(ctx, stack.Config{
		BinDir: bin, Venv: venv, Runner: filepath.Join(root, "runner", "runner.py"),
		GatewayUser: "pyexec-gw", SandboxUser: "pyexec-sandbox", Engine: "warm",
		Name: fmt.Sprintf("pyexec-client-examples-%d", os.Getpid()),
	})
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return st, cleanup, nil
}
