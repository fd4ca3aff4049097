package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/python-executor/python-executor/internal/supervisortest"
)

// TestRunScript drives scripts/run.sh (what `make run` starts) like an
// operator: it serves the seed example on $PORT with the gateway as its own
// capability-less user, and SIGTERM stops everything, leaving no socket,
// process, cgroup or mount behind.
func TestRunScript(t *testing.T) {
	supervisortest.ForEachEngine(t, testRunScript)
}

func testRunScript(t *testing.T, engine string) {
	supervisortest.RequireRoot(t)
	root := supervisortest.RepoRoot(t)
	// The binaries sit in a directory only root may traverse, as in a
	// checkout cloned into `mktemp -d` or /root: the gateway user cannot
	// reach them by path, and run.sh must still start the gateway.
	bin := privateBinaries(t, supervisortest.Binaries(t))
	name := fmt.Sprintf("pyexec-it-run-%d-%s", os.Getpid(), engine)
	runDir := filepath.Join("/run", name)
	os.MkdirAll(runDir, 0o755)
	defer os.RemoveAll(runDir)
	socket := filepath.Join(runDir, "sock", "supervisor.sock")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()

	cmd := exec.Command(filepath.Join(root, "scripts", "run.sh"))
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"BIN=" + bin,
		"PORT=" + port,
		"ENGINE=" + engine,
		"PYEXEC_SUPERVISOR_SOCKET=" + socket,
		"PYEXEC_STAGE_DIR=" + filepath.Join(runDir, "stage"),
		"PYEXEC_CGROUP_PARENT=" + name,
		"PYEXEC_VENV=" + filepath.Join(root, ".venv"),
		"PYEXEC_RUNNER=" + filepath.Join(root, "runner", "runner.py"),
	}
	var logs supervisortest.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	}()

	base := "http://127.0.0.1:" + port
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(base + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("service did not become healthy on port %s:\n%s", port, logs.String())
		}
		select {
		case err := <-done:
			t.Fatalf("run.sh exited (%v) before the service was healthy:\n%s", err, logs.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	var health map[string]any
	if resp, err := http.Get(base + "/health"); err == nil {
		json.NewDecoder(resp.Body).Decode(&health)
		resp.Body.Close()
	}
	if health["engine"] != engine {
		t.Fatalf("ENGINE=%s: /health says %v", engine, health)
	}
	r := post(t, base, "/execute", []byte(seedExamples[0].body))
	if r.Status != 200 || !sameJSON(r.Body.Result, []byte(seedExamples[0].want)) {
		t.Fatalf("seed example: %d %s", r.Status, r.Raw)
	}

	gw := processesOf(filepath.Join(bin, "gateway"))
	sup := processesOf(filepath.Join(bin, "supervisor"))
	if len(gw) != 1 || len(sup) != 1 {
		t.Fatalf("want one gateway and one supervisor, got %v and %v", gw, sup)
	}
	// The descriptor run.sh opened the gateway's binary with is closed.
	if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", gw[0])); err == nil {
		for _, fd := range fds {
			if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", gw[0], fd.Name())); target == filepath.Join(bin, "gateway") {
				t.Errorf("gateway holds its own executable open as fd %s", fd.Name())
			}
		}
	} else {
		t.Errorf("list the gateway's fds: %v", err)
	}
	gwUID, _ := supervisortest.LookupUser(t, supervisortest.GatewayUser)
	st := procStatus(t, gw[0])
	if !strings.HasPrefix(st["Uid"], strconv.Itoa(gwUID)+"\t") || st["CapEff"] != "0000000000000000" || st["CapPrm"] != "0000000000000000" || st["CapBnd"] != "0000000000000000" || st["NoNewPrivs"] != "1" {
		t.Fatalf("gateway runs with Uid %q CapEff %q CapPrm %q CapBnd %q NoNewPrivs %q; want uid %d and nothing else", st["Uid"], st["CapEff"], st["CapPrm"], st["CapBnd"], st["NoNewPrivs"], gwUID)
	}
	if ss := procStatus(t, sup[0]); !strings.HasPrefix(ss["Uid"], "0\t") {
		t.Fatalf("supervisor uid %q, want root", ss["Uid"])
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run.sh exited with %v after SIGTERM:\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("run.sh did not stop within 30s of SIGTERM:\n%s", logs.String())
	}
	if p := append(processesOf(filepath.Join(bin, "gateway")), processesOf(filepath.Join(bin, "supervisor"))...); len(p) > 0 {
		t.Fatalf("processes left after SIGTERM: %v", p)
	}
	for _, p := range []string{socket, filepath.Dir(socket), filepath.Join(runDir, "stage")} {
		if _, err := os.Stat(p); err == nil {
			t.Fatalf("%s left after SIGTERM", p)
		}
	}
	if left := supervisortest.LeftoverCgroups(name); len(left) > 0 {
		t.Fatalf("cgroups left after SIGTERM: %v", left)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if bytes.Contains(mounts, []byte(runDir)) {
		t.Fatal("mounts left after SIGTERM")
	}

	t.Run("unknown_engine_refused", func(t *testing.T) {
		cmd := exec.Command(filepath.Join(root, "scripts", "run.sh"))
		cmd.Env = []string{"PATH=/usr/bin:/bin", "BIN=" + bin, "ENGINE=turbo"}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "ENGINE=turbo") {
			t.Fatalf("ENGINE=turbo: err=%v out=%s", err, out)
		}
	})
}

// processesOf lists live processes whose executable is exe.
func processesOf(exe string) []int {
	return supervisortest.Processes(func(pid int) bool {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		return err == nil && target == exe
	})
}

func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":\t"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// privateBinaries copies the binaries of dir into a fresh directory of mode
// 0700 (removed when the test ends) and returns it.
func privateBinaries(t *testing.T, dir string) string {
	t.Helper()
	priv := filepath.Join(t.TempDir(), "checkout", "bin")
	if err := os.MkdirAll(priv, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(priv), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"supervisor", "gateway"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(priv, name), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return priv
}
