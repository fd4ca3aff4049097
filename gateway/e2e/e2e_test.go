package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/python-executor/python-executor/internal/supervisortest"
)

// The seed README's curl bodies, byte for byte (the shell's quoting removed).
var seedExamples = []struct {
	name, body, want string
}{
	{"hello", `{"script": "def main(): return {\"message\": \"Hello World\", \"result\": 42}"}`,
		`{"message": "Hello World", "result": 42}`},
	{"greeting", `{"script": "def main(): return {\"greeting\": \"Hello World\"}"}`,
		`{"greeting": "Hello World"}`},
	{"pandas", "{\n    \"script\": \"\nimport pandas as pd\nimport numpy as np\n\ndef main():\n    df = pd.DataFrame({\\\"A\\\": [1, 2, 3], \\\"B\\\": [4, 5, 6]})\n    return {\n        \\\"shape\\\": df.shape,\n        \\\"sum\\\": df.sum().to_dict(),\n        \\\"mean\\\": df.mean().to_dict()\n    }\n\"\n  }",
		`{"shape": [3, 2], "sum": {"A": 6, "B": 15}, "mean": {"A": 2.0, "B": 5.0}}`},
	{"numpy", "{\n    \"script\": \"\nimport numpy as np\n\ndef main():\n    arr = np.array([1, 2, 3, 4, 5])\n    return {\n        \\\"array\\\": arr.tolist(),\n        \\\"sum\\\": float(np.sum(arr)),\n        \\\"mean\\\": float(np.mean(arr)),\n        \\\"std\\\": float(np.std(arr))\n    }\n\"\n  }",
		`{"array": [1, 2, 3, 4, 5], "sum": 15.0, "mean": 3.0, "std": 1.4142135623730951}`},
}

func TestHTTP(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		st := supervisortest.StartStack(t, engine)
		base := st.Gateway.URL

		t.Run("seed_examples", func(t *testing.T) {
			for _, ex := range seedExamples {
				t.Run(ex.name, func(t *testing.T) {
					r := post(t, base, "/execute", []byte(ex.body))
					if r.Status != 200 || !sameJSON(r.Body.Result, []byte(ex.want)) {
						t.Fatalf("got %d %s, want 200 with result %s", r.Status, r.Raw, ex.want)
					}
					if r.Header.Get("Content-Type") != "application/json" {
						t.Fatalf("content type %q", r.Header.Get("Content-Type"))
					}
				})
			}
		})

		t.Run("health", func(t *testing.T) {
			resp, err := httpClient.Get(base + "/health")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var h map[string]any
			json.NewDecoder(resp.Body).Decode(&h)
			if resp.StatusCode != 200 || h["status"] != "healthy" || h["engine"] != engine {
				t.Fatalf("health %d %v", resp.StatusCode, h)
			}
			// The full tier lacks nothing; the container tier (an image
			// run with no flags) says so and names what it lacks.
			missing, _ := h["missing"].([]any)
			switch tier := serviceTier(t, base); tier {
			case "full":
				if h["isolation"] != "full" || h["tier"] != "full" || missing == nil || len(missing) != 0 {
					t.Fatalf("health %v, want the full tier with nothing missing", h)
				}
			case "container":
				iso, _ := h["isolation"].(string)
				if !strings.HasPrefix(iso, "container") || engine != "cold" || !slices.Contains(missing, any("pid_namespace")) || !slices.Contains(missing, any("network_namespace")) || !slices.Contains(missing, any("memory_cgroup")) {
					t.Fatalf("health %v, want the container tier (cold engine) naming the namespaces and cgroups it lacks", h)
				}
			}
		})

		t.Run("stdout_is_what_was_printed", func(t *testing.T) {
			r := execute(t, base, "import sys\nprint('at import')\ndef main():\n    print('in main')\n    sys.stdout.buffer.write(b'bad \\xff utf8\\n')\n    print('warn', file=sys.stderr)\n    return None\n", nil)
			r.wantOK(t)
			if r.Body.Stdout != "at import\nin main\nbad \uFFFD utf8\n" || r.Body.Stderr != "warn\n" {
				t.Fatalf("stdout %q stderr %q", r.Body.Stdout, r.Body.Stderr)
			}
		})

		// Every error class: status and the one error body shape.
		errorCases := []struct {
			name, script string
			extra        map[string]any
			status       int
			typ          string
		}{
			{"syntax_error", "def main(:", nil, 400, "syntax_error"},
			{"missing_main", "def helper(): return 1", nil, 400, "missing_main"},
			{"invalid_result", "def main(): return {1, 2}", nil, 400, "invalid_result"},
			{"result_too_large", "def main(): return 'x' * 100", map[string]any{"result_bytes": 10}, 400, "result_too_large"},
			{"exception", "def main(): raise ValueError('nope')", nil, 500, "exception"},
			{"exited", "import os\ndef main(): os._exit(3)", nil, 500, "exited"},
			{"timeout", "import time\ndef main(): time.sleep(10)", map[string]any{"timeout": 1}, 500, "timeout"},
			{"memory_limit", "def main():\n    x = bytearray(1 << 30)\n    return 1", map[string]any{"memory_mb": 64}, 500, "memory_limit"},
			{"limit_above_max", "def main(): return 1", map[string]any{"timeout": 3600}, 400, "invalid_request"},
		}
		for _, tc := range errorCases {
			t.Run("error_"+tc.name, func(t *testing.T) {
				r := execute(t, base, tc.script, tc.extra)
				r.wantError(t, tc.status, tc.typ)
				var shape map[string]json.RawMessage
				json.Unmarshal(r.Raw, &shape)
				for _, k := range []string{"error", "stdout", "stderr"} {
					if _, ok := shape[k]; !ok {
						t.Fatalf("error body lacks %q: %s", k, r.Raw)
					}
				}
				if r.Body.Error.Message == "" {
					t.Fatalf("error without a message: %s", r.Raw)
				}
			})
		}
		t.Run("exception_traceback", func(t *testing.T) {
			r := execute(t, base, "def main():\n    raise ValueError('nope')\n", nil)
			r.wantError(t, 500, "exception")
			if !strings.Contains(r.Body.Error.Traceback, "raise ValueError('nope')") {
				t.Fatalf("traceback %q lacks the user's line", r.Body.Error.Traceback)
			}
		})

		malformed := []struct {
			name, ctype string
			body        []byte
			status      int
			typ         string
		}{
			{"not_json", "application/json", []byte("def main(): pass"), 400, "invalid_request"},
			{"json_array", "application/json", []byte(`["def main(): pass"]`), 400, "invalid_request"},
			{"missing_script", "application/json", []byte(`{}`), 400, "invalid_request"},
			{"empty_script", "application/json", []byte(`{"script": ""}`), 400, "invalid_request"},
			{"non_string_script", "application/json", []byte(`{"script": 42}`), 400, "invalid_request"},
			{"wrong_content_type", "text/plain", []byte(`{"script": "def main(): return 1"}`), 400, "invalid_request"},
			{"huge_body", "application/json", append(append([]byte(`{"script": "`), bytes.Repeat([]byte("#"), 20<<20)...), `"}`...), 413, "body_too_large"},
		}
		for _, tc := range malformed {
			t.Run("malformed_"+tc.name, func(t *testing.T) {
				resp, err := httpClient.Post(base+"/execute", tc.ctype, bytes.NewReader(tc.body))
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				raw, _ := io.ReadAll(resp.Body)
				var body struct {
					Error struct{ Type string } `json:"error"`
				}
				if err := json.Unmarshal(raw, &body); err != nil || resp.StatusCode != tc.status || body.Error.Type != tc.typ {
					t.Fatalf("got %d %s, want %d %s", resp.StatusCode, raw, tc.status, tc.typ)
				}
			})
		}

		t.Run("not_found", func(t *testing.T) {
			resp, err := httpClient.Get(base + "/nope")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 404 || !strings.Contains(string(raw), `"not_found"`) {
				t.Fatalf("got %d %s", resp.StatusCode, raw)
			}
		})
		t.Run("method_not_allowed", func(t *testing.T) {
			resp, err := httpClient.Get(base + "/execute")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 405 || !strings.Contains(string(raw), `"method_not_allowed"`) || !strings.Contains(resp.Header.Get("Allow"), "POST") {
				t.Fatalf("got %d %s Allow=%q", resp.StatusCode, raw, resp.Header.Get("Allow"))
			}
		})
		t.Run("request_id", func(t *testing.T) {
			req, _ := http.NewRequest("POST", base+"/execute", strings.NewReader(`{"script": "def main(): return 1"}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Request-Id", "trace-abc-123")
			resp, err := httpClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("X-Request-Id"); got != "trace-abc-123" {
				t.Fatalf("X-Request-Id %q, want the caller's", got)
			}
			// Both log the request once it is answered: give them a moment.
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(st.Supervisor.Logs.String(), "trace-abc-123") || !strings.Contains(st.Gateway.Logs.String(), "trace-abc-123") {
				if time.Now().After(deadline) {
					t.Fatalf("request id missing from the logs")
				}
				time.Sleep(20 * time.Millisecond)
			}
		})

		t.Run("concurrent_20", func(t *testing.T) {
			var wg sync.WaitGroup
			errs := make(chan string, 20)
			for i := 0; i < 20; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					r := execute(t, base, fmt.Sprintf("def main():\n    print(%d)\n    return [%d]\n", i, i), nil)
					if r.Status != 200 || !sameJSON(r.Body.Result, []byte(fmt.Sprintf("[%d]", i))) || r.Body.Stdout != fmt.Sprintf("%d\n", i) {
						errs <- fmt.Sprintf("%d: %d %s", i, r.Status, r.Raw)
					}
				}(i)
			}
			wg.Wait()
			close(errs)
			for e := range errs {
				t.Error(e)
			}
		})
	})
}

// The client hanging up cancels its execution: the jail goes away long before
// the script's own deadline.
func TestClientDisconnectCancels(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		st := supervisortest.StartStack(t, engine)
		c := &http.Client{Timeout: 1500 * time.Millisecond, Transport: specChecked(nil)}
		_, err := c.Post(st.Gateway.URL+"/execute", "application/json", strings.NewReader(`{"script": "import time\ndef main():\n    time.sleep(25)\n"}`))
		if err == nil {
			t.Fatal("request finished instead of timing out client-side")
		}
		deadline := time.Now().Add(5 * time.Second)
		for len(supervisortest.SandboxProcesses(t)) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("execution still running 5s after the client left")
			}
			time.Sleep(50 * time.Millisecond)
		}
		// The jail is gone before the supervisor logs the outcome: wait for it.
		for !strings.Contains(st.Supervisor.Logs.String(), `"exit_reason":"cancelled"`) {
			if time.Now().After(deadline) {
				t.Fatalf("supervisor did not record a cancellation:\n%s", st.Supervisor.Logs)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// Killing the supervisor mid-run: the request in flight gets 503, /health
// turns 503, and a restarted supervisor is picked up without restarting the
// gateway.
func TestSupervisorRestart(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		st := supervisortest.StartStack(t, engine)
		base := st.Gateway.URL
		r := execute(t, base, "def main(): return 'before'", nil)
		r.wantOK(t)

		// The last execution's sandbox may still be going away (its
		// answer goes out before its teardown): let it, so that the
		// processes seen next are the long execution's.
		waitNoSandboxProcesses(t)
		inflight := make(chan *reply, 1)
		go func() {
			inflight <- execute(t, base, "import time\ndef main():\n    time.sleep(20)\n", nil)
		}()
		deadline := time.Now().Add(10 * time.Second)
		for len(supervisortest.SandboxProcesses(t)) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the long execution never started")
			}
			time.Sleep(20 * time.Millisecond)
		}
		st.Supervisor.Kill()
		got := <-inflight
		got.wantError(t, 503, "unavailable")
		if got.Header.Get("Retry-After") == "" {
			t.Fatalf("503 without Retry-After")
		}
		resp, err := httpClient.Get(base + "/health")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 503 {
			t.Fatalf("health with the supervisor down: %d, want 503", resp.StatusCode)
		}
		execute(t, base, "def main(): return 1", nil).wantError(t, 503, "unavailable")

		st.Supervisor.Restart(t)
		deadline = time.Now().Add(10 * time.Second)
		for {
			r := execute(t, base, "def main(): return 'after'", nil)
			if r.Status == 200 && sameJSON(r.Body.Result, []byte(`"after"`)) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("gateway did not recover after the supervisor restarted: %d %s", r.Status, r.Raw)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}
