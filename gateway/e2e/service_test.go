package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/python-executor/python-executor/internal/supervisortest"
)

// The service's own contract under load and at its edges: a queued request
// is answered busy (never internal) once it cannot start in time, SIGTERM
// drains, /health says whether executions can run, and connection floods
// are capped.

// sleepScript returns 1 after sleeping secs seconds.
func sleepScript(secs float64) string {
	return fmt.Sprintf("import time\ndef main():\n    time.sleep(%g)\n    return 1\n", secs)
}

// waitRunning waits until the supervisor runs n executions.
func waitRunning(t *testing.T, s *supervisortest.Supervisor, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := s.Client.Status(context.Background())
		if err == nil && st.Running >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the supervisor does not run %d executions (status %+v, %v)", n, st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitIdle waits until the supervisor runs and queues nothing. An answered
// execution keeps its slot until its sandbox is torn down, so a test that
// fills the slots waits for the previous test's executions to be gone first:
// otherwise waitRunning could count those and the slots free up under it.
func waitIdle(t *testing.T, s *supervisortest.Supervisor) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := s.Client.Status(context.Background())
		if err == nil && st.Running == 0 && st.Queued == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the supervisor is not idle (status %+v, %v)", st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// asyncExecute runs execute in the background.
func asyncExecute(t *testing.T, base, script string, extra map[string]any) <-chan *reply {
	ch := make(chan *reply, 1)
	go func() {
		req := map[string]any{"script": script}
		for k, v := range extra {
			req[k] = v
		}
		body, _ := json.Marshal(req)
		r, err := tryPost(base, body)
		if err != nil {
			t.Errorf("POST /execute: %v", err)
		}
		ch <- r
	}()
	return ch
}

// tryPost is post for goroutines: it reports errors instead of failing.
func tryPost(base string, body []byte) (*reply, error) {
	resp, err := httpClient.Post(base+"/execute", "application/json", bytes.NewReader(body))
	if err != nil {
		return &reply{}, err
	}
	defer resp.Body.Close()
	r := &reply{Status: resp.StatusCode, Header: resp.Header}
	if r.Raw, err = io.ReadAll(resp.Body); err != nil {
		return r, err
	}
	if err := json.Unmarshal(r.Raw, &r.Body); err != nil {
		return r, fmt.Errorf("status %d, body is not JSON: %v: %q", r.Status, err, r.Raw)
	}
	return r, nil
}

// With every slot taken by slow scripts, a queued request waits at most the
// queue wait: it either starts in time (and its stats say how long it
// waited) or gets busy 503 with Retry-After, never internal, and never later
// than its timeout plus the queue wait plus a little.
func TestQueueWaitBounded(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		const queueWait = 2 * time.Second
		s := supervisortest.Start(t, supervisortest.Options{Engine: engine, GatewayUser: supervisortest.GatewayUser,
			Args: []string{"-slots", "2", "-max-queue-wait", queueWait.String()}})
		g := supervisortest.StartGateway(t, s, "-max-queue-wait", queueWait.String(), "-execute-grace", "2s")
		base := g.URL

		t.Run("queued_then_started", func(t *testing.T) {
			waitIdle(t, s)
			slow := []<-chan *reply{asyncExecute(t, base, sleepScript(1), nil), asyncExecute(t, base, sleepScript(1), nil)}
			waitRunning(t, s, 2)
			r := execute(t, base, "def main(): return 7", nil)
			if v := r.wantOK(t); v != 7.0 {
				t.Fatalf("result %v, want 7", v)
			}
			var body struct {
				Stats map[string]int64 `json:"stats"`
			}
			json.Unmarshal(r.Raw, &body)
			if q, ok := body.Stats["queue_ms"]; !ok || q <= 0 || q > queueWait.Milliseconds() {
				t.Fatalf("stats %v: want queue_ms in (0, %d]", body.Stats, queueWait.Milliseconds())
			}
			for _, ch := range slow {
				(<-ch).wantOK(t)
			}
			if !strings.Contains(s.Logs.String(), `"queue_ms"`) {
				t.Fatal("the supervisor's log has no queue_ms field")
			}
		})

		t.Run("cannot_start_in_time", func(t *testing.T) {
			waitIdle(t, s)
			slow := []<-chan *reply{asyncExecute(t, base, sleepScript(8), map[string]any{"timeout": 12}), asyncExecute(t, base, sleepScript(8), map[string]any{"timeout": 12})}
			waitRunning(t, s, 2)
			begin := time.Now()
			r := execute(t, base, "def main(): return 1", map[string]any{"timeout": 1})
			took := time.Since(begin)
			r.wantError(t, 503, "busy")
			if r.Header.Get("Retry-After") == "" {
				t.Fatalf("busy without Retry-After: %v", r.Header)
			}
			// Due by the queue wait; in any case by its timeout plus the
			// queue wait plus the documented clean-up margin.
			if took < queueWait-100*time.Millisecond || took > queueWait+time.Second+2*time.Second {
				t.Fatalf("busy after %v, want about the queue wait %v", took, queueWait)
			}
			for _, ch := range slow {
				(<-ch).wantOK(t)
			}
		})
	})
}

// runService starts scripts/run.sh (what `make run` runs) with extra
// environment, waits until it is healthy, and returns its base URL.
type runService struct {
	cmd    *exec.Cmd
	done   chan error
	logs   *supervisortest.Buffer
	base   string
	bin    string
	socket string
	runDir string
	name   string
}

func startRunScript(t *testing.T, engine string, env ...string) *runService {
	t.Helper()
	return startRunScriptVia(t, nil, engine, env...)
}

// startRunScriptVia is startRunScript with run.sh started through the
// command wrap (e.g. env --ignore-signal=HUP, as nohup starts it).
func startRunScriptVia(t *testing.T, wrap []string, engine string, env ...string) *runService {
	t.Helper()
	supervisortest.RequireRoot(t)
	root := supervisortest.RepoRoot(t)
	bin := supervisortest.Binaries(t)
	name := fmt.Sprintf("pyexec-it-svc-%d-%s", os.Getpid(), engine)
	rs := &runService{bin: bin, name: name, runDir: filepath.Join("/run", name), logs: &supervisortest.Buffer{}, done: make(chan error, 1)}
	os.MkdirAll(rs.runDir, 0o755)
	t.Cleanup(func() { os.RemoveAll(rs.runDir) })
	rs.socket = filepath.Join(rs.runDir, "sock", "supervisor.sock")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	argv := append(append([]string{}, wrap...), filepath.Join(root, "scripts", "run.sh"))
	rs.cmd = exec.Command(argv[0], argv[1:]...)
	rs.cmd.Env = append([]string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"BIN=" + bin,
		"PORT=" + port,
		"ENGINE=" + engine,
		"PYEXEC_SUPERVISOR_SOCKET=" + rs.socket,
		"PYEXEC_STAGE_DIR=" + filepath.Join(rs.runDir, "stage"),
		"PYEXEC_CGROUP_PARENT=" + name,
		"PYEXEC_VENV=" + filepath.Join(root, ".venv"),
		"PYEXEC_RUNNER=" + filepath.Join(root, "runner", "runner.py"),
	}, env...)
	rs.cmd.Stdout, rs.cmd.Stderr = rs.logs, rs.logs
	// Its own process group, so that the clean-up can reach the gateway
	// and the supervisor too; and Wait gives up on the output pipe soon
	// after run.sh is gone (children that outlived it hold the pipe open,
	// and a clean-up waiting on them hung the whole suite to its timeout).
	rs.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	rs.cmd.WaitDelay = 5 * time.Second
	if err := rs.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		err := rs.cmd.Wait()
		close(exited)
		rs.done <- err
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			// As a container runtime stops it: SIGTERM (run.sh drains the
			// gateway, then stops the supervisor), SIGKILL to the group
			// after a deadline.
			rs.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(30 * time.Second):
				t.Errorf("run.sh did not stop within 30 s of SIGTERM; killing its process group")
				syscall.Kill(-rs.cmd.Process.Pid, syscall.SIGKILL)
				<-exited
			}
		}
		if t.Failed() {
			t.Logf("run.sh output:\n%s", rs.logs.String())
		}
	})
	rs.base = "http://127.0.0.1:" + port
	deadline := time.Now().Add(90 * time.Second)
	for {
		if code, _ := getHealth(rs.base); code == 200 {
			return rs
		}
		if time.Now().After(deadline) {
			t.Fatalf("service did not become healthy on port %s:\n%s", port, rs.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freshClient opens a new connection per request, as a new client would.
var freshClient = &http.Client{Timeout: 30 * time.Second, Transport: specChecked(&http.Transport{DisableKeepAlives: true})}

// getHealth returns /health's status and body (0 when it did not answer).
func getHealth(base string) (int, map[string]any) {
	resp, err := freshClient.Get(base + "/health")
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var h map[string]any
	json.NewDecoder(resp.Body).Decode(&h)
	return resp.StatusCode, h
}

// waitExit waits for run.sh to exit 0 and checks that nothing is left.
func (rs *runService) waitExit(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case err := <-rs.done:
		if err != nil {
			t.Fatalf("run.sh exited with %v after SIGTERM", err)
		}
	case <-time.After(within):
		t.Fatalf("run.sh did not stop within %v of SIGTERM", within)
	}
	if p := append(processesOf(filepath.Join(rs.bin, "gateway")), processesOf(filepath.Join(rs.bin, "supervisor"))...); len(p) > 0 {
		t.Fatalf("processes left after SIGTERM: %v", p)
	}
	if p := supervisortest.SandboxProcesses(t); len(p) > 0 {
		t.Fatalf("jailed processes left after SIGTERM: %v", p)
	}
	for _, p := range []string{rs.socket, filepath.Dir(rs.socket), filepath.Join(rs.runDir, "stage")} {
		if _, err := os.Stat(p); err == nil {
			t.Fatalf("%s left after SIGTERM", p)
		}
	}
	if left := supervisortest.LeftoverCgroups(rs.name); len(left) > 0 {
		t.Fatalf("cgroups left after SIGTERM: %v", left)
	}
	if mounts, _ := os.ReadFile("/proc/self/mountinfo"); bytes.Contains(mounts, []byte(rs.runDir)) {
		t.Fatal("mounts left after SIGTERM")
	}
}

// waitDraining waits until /health answers 503 after SIGTERM.
func waitDraining(t *testing.T, base string, sent time.Time) {
	t.Helper()
	for {
		code, h := getHealth(base)
		if code == 503 {
			if h["status"] != "unhealthy" {
				t.Fatalf("draining /health body %v", h)
			}
			if d := time.Since(sent); d > 2*time.Second {
				t.Fatalf("/health turned 503 only %v after SIGTERM", d)
			}
			return
		}
		if code != 200 || time.Since(sent) > 5*time.Second {
			t.Fatalf("/health after SIGTERM: %d %v, want 503 at once", code, h)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SIGTERM to the process `make run` starts drains: /health turns 503 at
// once, a new request gets unavailable, the execution in flight finishes
// with its answer, and then everything exits leaving nothing behind. Past
// the drain limit the executions still running are cancelled (unavailable)
// and the stop stays within the limit.
func TestSIGTERMDrains(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		t.Run("in_flight_finishes", func(t *testing.T) {
			rs := startRunScript(t, engine)
			inflight := asyncExecute(t, rs.base, sleepScript(4), map[string]any{"timeout": 10})
			time.Sleep(time.Second)
			sent := time.Now()
			rs.cmd.Process.Signal(syscall.SIGTERM)
			waitDraining(t, rs.base, sent)
			body, _ := json.Marshal(map[string]any{"script": "def main(): return 1"})
			resp, err := freshClient.Post(rs.base+"/execute", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatalf("a new request during the drain: %v (want 503 unavailable)", err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 503 || !strings.Contains(string(raw), `"unavailable"`) || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("a new request during the drain: %d %s %v, want 503 unavailable with Retry-After", resp.StatusCode, raw, resp.Header)
			}
			r := <-inflight
			if v := r.wantOK(t); v != 1.0 {
				t.Fatalf("in-flight result %v", v)
			}
			rs.waitExit(t, 20*time.Second)
		})
		t.Run("drain_limit", func(t *testing.T) {
			rs := startRunScript(t, engine, "PYEXEC_DRAIN_TIMEOUT=2s")
			inflight := asyncExecute(t, rs.base, sleepScript(20), map[string]any{"timeout": 25})
			time.Sleep(time.Second)
			sent := time.Now()
			rs.cmd.Process.Signal(syscall.SIGTERM)
			waitDraining(t, rs.base, sent)
			r := <-inflight
			r.wantError(t, 503, "unavailable")
			if d := time.Since(sent); d < 1500*time.Millisecond || d > 5*time.Second {
				t.Fatalf("the execution past the drain limit was answered %v after SIGTERM, want about 2s", d)
			}
			rs.waitExit(t, 10*time.Second)
			if d := time.Since(sent); d > 8*time.Second {
				t.Fatalf("stopping took %v with a drain limit of 2s", d)
			}
		})
	})
}

// /health reflects whether executions can run: a warm engine whose zygotes
// all keep dying turns it 503 with a reason after the not-ready window (5 s
// by default), and it recovers once a zygote is ready again.
func TestHealthReflectsZygotes(t *testing.T) {
	st := supervisortest.StartStack(t, "warm", "-zygotes", "1")
	base := st.Gateway.URL
	if code, h := getHealth(base); code != 200 {
		t.Fatalf("health %d %v before the zygotes die", code, h)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			for _, pid := range supervisortest.ZygoteProcesses(t) {
				// This stack's only: its zygotes live in its cgroup parent.
				cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
				if bytes.Contains(cg, []byte("/"+st.Supervisor.CgParent+"/")) {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	killing := time.Now()
	var unhealthy map[string]any
	for {
		code, h := getHealth(base)
		if code == 503 {
			unhealthy = h
			break
		}
		if time.Since(killing) > 30*time.Second {
			close(stop)
			wg.Wait()
			t.Fatalf("/health still %d %v after 30 s without a zygote", code, h)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Meanwhile an execution is told to retry, at once: not internal, and
	// not after waiting for a zygote that does not come.
	begin := time.Now()
	r := execute(t, base, "def main(): return 1", map[string]any{"timeout": 1})
	took := time.Since(begin)
	close(stop)
	wg.Wait()
	r.wantError(t, 503, "busy")
	if took > 3*time.Second {
		t.Fatalf("busy after %v without a zygote, want at once", took)
	}
	if d := time.Since(killing); d < 4*time.Second {
		t.Fatalf("/health turned 503 after %v, before the 5 s window", d)
	}
	if reason, _ := unhealthy["reason"].(string); unhealthy["status"] != "unhealthy" || !strings.Contains(reason, "zygote") {
		t.Fatalf("unhealthy body %v: want status unhealthy and a reason naming the zygotes", unhealthy)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, h := getHealth(base)
		if code == 200 && h["status"] == "healthy" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/health did not recover: %d %v", code, h)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if v := execute(t, base, "def main(): return 3", nil).wantOK(t); v != 3.0 {
		t.Fatalf("result %v after recovery", v)
	}
}

// clientFrom is an HTTP client whose connections come from the loopback
// address ip, so a flood from 127.0.0.1 does not count against it.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 30 * time.Second, Transport: specChecked(&http.Transport{DialContext: d.DialContext, DisableKeepAlives: true})}
}

func dialFrom(t *testing.T, ip, addr string) net.Conn {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", ip, err)
	}
	return c
}

// closedWithin reports how the server ended c: the first bytes it sent (if
// any) and whether it closed the connection within d.
func closedWithin(c net.Conn, d time.Duration) (first string, closed bool) {
	c.SetReadDeadline(time.Now().Add(d))
	var got []byte
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			var ne net.Error
			return string(got), !(errors.As(err, &ne) && ne.Timeout())
		}
	}
}

// Slow-header and idle-connection floods are capped: past the per-address
// cap a connection gets 429 at once, a client that trickles its headers is
// dropped at the read timeout, idle keep-alive connections are closed at the
// idle timeout, and meanwhile a normal client is served.
func TestConnectionFloods(t *testing.T) {
	engine := supervisortest.Engines()[0]
	s := supervisortest.Start(t, supervisortest.Options{Engine: engine, GatewayUser: supervisortest.GatewayUser})
	const perIP, flood = 16, 48
	g := supervisortest.StartGateway(t, s, "-max-conns-per-ip", strconv.Itoa(perIP), "-read-timeout", "2s", "-idle-timeout", "2s")
	addr := strings.TrimPrefix(g.URL, "http://")
	normal := clientFrom("127.0.0.2")
	served := func() {
		t.Helper()
		begin := time.Now()
		resp, err := normal.Get(g.URL + "/health")
		if err != nil {
			t.Fatalf("a normal client during the flood: %v", err)
		}
		resp.Body.Close()
		body, _ := json.Marshal(map[string]any{"script": "def main(): return 5"})
		resp, err = normal.Post(g.URL+"/execute", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("a normal client's execute during the flood: %v", err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(raw), `"result":5`) {
			t.Fatalf("a normal client's execute during the flood: %d %s", resp.StatusCode, raw)
		}
		if d := time.Since(begin); d > 10*time.Second {
			t.Fatalf("a normal client waited %v during the flood", d)
		}
	}

	t.Run("slow_headers", func(t *testing.T) {
		conns := make([]net.Conn, flood)
		for i := range conns {
			conns[i] = dialFrom(t, "127.0.0.1", addr)
			defer conns[i].Close()
			io.WriteString(conns[i], "GET /health HTTP/1.1\r\nHost: x\r\n")
		}
		stopTrickle := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stopTrickle:
					return
				case <-time.After(300 * time.Millisecond):
				}
				for _, c := range conns {
					io.WriteString(c, "X-Slow-"+strconv.Itoa(i)+": y\r\n")
				}
			}
		}()
		served()
		type result struct {
			first  string
			closed bool
			after  time.Duration
		}
		results := make([]result, flood)
		opened := time.Now()
		var rwg sync.WaitGroup
		for i, c := range conns {
			rwg.Add(1)
			go func() {
				defer rwg.Done()
				first, closed := closedWithin(c, 8*time.Second)
				results[i] = result{first, closed, time.Since(opened)}
			}()
		}
		rwg.Wait()
		close(stopTrickle)
		wg.Wait()
		refused, timedOut := 0, 0
		for i, r := range results {
			switch {
			case strings.HasPrefix(r.first, "HTTP/1.1 429") && strings.Contains(r.first, `"too_many_connections"`):
				refused++
			case r.closed:
				timedOut++
			default:
				t.Errorf("flood connection %d still open after %v: read %q", i, r.after, r.first)
			}
		}
		if refused < flood-perIP {
			t.Fatalf("%d connections refused with 429, want at least %d (cap %d of %d)", refused, flood-perIP, perIP, flood)
		}
		if refused+timedOut != flood {
			t.Fatalf("refused %d, closed %d of %d", refused, timedOut, flood)
		}
	})

	t.Run("idle_connections", func(t *testing.T) {
		var conns []net.Conn
		for i := 0; i < perIP; i++ {
			// Half say nothing at all; half send one request and then idle
			// on keep-alive.
			c := dialFrom(t, "127.0.0.3", addr)
			defer c.Close()
			if i%2 == 1 {
				io.WriteString(c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Fatalf("keep-alive request: %v", err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			conns = append(conns, c)
		}
		served()
		begin := time.Now()
		var wg sync.WaitGroup
		open := make([]bool, len(conns))
		for i, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, closed := closedWithin(c, 6*time.Second)
				open[i] = !closed
			}()
		}
		wg.Wait()
		for i, o := range open {
			if o {
				t.Errorf("idle connection %d still open %v later (idle timeout 2s)", i, time.Since(begin))
			}
		}
		// The address's count was released: it may connect again.
		c := dialFrom(t, "127.0.0.3", addr)
		defer c.Close()
		io.WriteString(c, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("after the idle connections closed: %v %v", resp, err)
		}
	})
}

// /health reflects whether executions can get their cgroups: with the
// supervisor's parent cgroup gone (removed under it while idle), it turns
// 503 within a couple of seconds, and recovers once the parent is back.
// The cold engine: the warm one's zygotes keep the parent busy, and without
// cgroups they cannot start, which TestHealthReflectsZygotes covers.
func TestHealthReflectsCgroups(t *testing.T) {
	st := supervisortest.StartStack(t, "cold")
	base := st.Gateway.URL
	if code, h := getHealth(base); code != 200 {
		t.Fatalf("health %d %v before the cgroups go", code, h)
	}
	dirs := supervisortest.LeftoverCgroups(st.Supervisor.CgParent)
	if len(dirs) == 0 {
		t.Fatal("the supervisor has no parent cgroup")
	}
	// v2: what the parent delegates, to put it back as it was.
	subtree, _ := os.ReadFile(filepath.Join("/sys/fs/cgroup", st.Supervisor.CgParent, "cgroup.subtree_control"))
	for _, d := range dirs {
		// On v1 the cgroups of earlier executions (the start-up self-test)
		// may be kept, empty, for the next: they go first, as they would
		// for whoever removes the parent.
		kept, _ := filepath.Glob(filepath.Join(d, "idle-*"))
		for _, k := range kept {
			if err := os.Remove(k); err != nil {
				t.Fatalf("remove %s: %v", k, err)
			}
		}
		if err := os.Remove(d); err != nil {
			t.Fatalf("remove %s: %v", d, err)
		}
	}
	restored := false
	restore := func() {
		if restored {
			return
		}
		restored = true
		for _, d := range dirs {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Errorf("recreate %s: %v", d, err)
			}
		}
		for _, c := range strings.Fields(string(subtree)) {
			os.WriteFile(filepath.Join("/sys/fs/cgroup", st.Supervisor.CgParent, "cgroup.subtree_control"), []byte("+"+c), 0)
		}
	}
	defer restore()
	removed := time.Now()
	for {
		code, h := getHealth(base)
		if code == 503 {
			if h["status"] != "unhealthy" || !strings.Contains(fmt.Sprint(h["reason"]), "cgroup") {
				t.Fatalf("unhealthy body %v: want a reason naming the cgroups", h)
			}
			if strings.Contains(fmt.Sprint(h), "/sys/fs") {
				t.Fatalf("/health shows host paths: %v", h)
			}
			// An execution now is told to retry, not answered internal.
			execute(t, base, "def main(): return 1", nil).wantError(t, 503, "busy")
			break
		}
		if time.Since(removed) > 10*time.Second {
			t.Fatalf("/health still %d %v 10 s after the parent cgroup went", code, h)
		}
		time.Sleep(100 * time.Millisecond)
	}
	restore()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, h := getHealth(base)
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/health did not recover: %d %v", code, h)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if v := execute(t, base, "def main(): return 4", nil).wantOK(t); v != 4.0 {
		t.Fatalf("result %v after recovery", v)
	}
}
