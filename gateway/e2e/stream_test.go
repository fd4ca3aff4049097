package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/python-executor/python-executor/internal/supervisortest"
)

// streamLine is one line of a streamed answer (gateway/API.md, "Streaming
// (NDJSON)"), with when it arrived.
type streamLine struct {
	At       time.Duration   `json:"-"`
	Event    string          `json:"event"`
	Data     string          `json:"data"`
	Status   int             `json:"status"`
	Response json.RawMessage `json:"response"`
}

// stream is a streamed answer being read.
type stream struct {
	resp  *http.Response
	br    *bufio.Reader
	start time.Time
}

// openStream posts script (and extra fields) with Accept:
// application/x-ndjson and returns once the response headers are in.
func openStream(t testing.TB, base, script string, extra map[string]any) *stream {
	t.Helper()
	req := map[string]any{"script": script}
	for k, v := range extra {
		req[k] = v
	}
	body, _ := json.Marshal(req)
	hr, err := http.NewRequest("POST", base+"/execute", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Accept", "application/x-ndjson")
	start := time.Now()
	resp, err := httpClient.Do(hr)
	if err != nil {
		t.Fatalf("POST /execute (stream): %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("got %d %s %s, want a 200 NDJSON stream", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	return &stream{resp: resp, br: bufio.NewReaderSize(resp.Body, 1<<16), start: start}
}

// next reads one line; io.EOF at the end of the stream.
func (s *stream) next(t testing.TB) (streamLine, error) {
	t.Helper()
	b, err := s.br.ReadBytes('\n')
	if err != nil {
		if err == io.EOF && len(b) > 0 {
			t.Fatalf("the stream ends in the middle of a line: %q", b)
		}
		return streamLine{}, err
	}
	l := streamLine{At: time.Since(s.start)}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		t.Fatalf("line %q: %v", b, err)
	}
	switch l.Event {
	case "stdout", "stderr":
	case "done":
		if l.Status == 0 || len(l.Response) == 0 {
			t.Fatalf("done line without status or response: %s", b)
		}
	default:
		t.Fatalf("unknown event in %s", b)
	}
	return l, nil
}

// stdoutUntil reads lines until the stdout chunks read so far join to want,
// and returns the line that completed it: a chunk is whatever one read of
// the pipe got, and a print is two writes (the text, then the newline), so
// "started\n" may come as one chunk or as two. Any other line, or more
// stdout than want, fails the test.
func (s *stream) stdoutUntil(t testing.TB, want string) streamLine {
	t.Helper()
	var got string
	for {
		l, err := s.next(t)
		if err != nil || l.Event != "stdout" || !strings.HasPrefix(want, got+l.Data) {
			t.Fatalf("after stdout %q: line %+v, %v; want stdout up to %q", got, l, err, want)
		}
		if got += l.Data; got == want {
			return l
		}
	}
}

// all reads the rest of the stream, checks it ends with exactly one done
// line, and returns every line and the chunks of each stream joined.
func (s *stream) all(t testing.TB) (lines []streamLine, stdout, stderr string) {
	t.Helper()
	var out, errb strings.Builder
	for {
		l, err := s.next(t)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		if n := len(lines); n > 0 && lines[n-1].Event == "done" {
			t.Fatalf("a line after done: %+v", l)
		}
		lines = append(lines, l)
		switch l.Event {
		case "stdout":
			out.WriteString(l.Data)
		case "stderr":
			errb.WriteString(l.Data)
		}
	}
	if len(lines) == 0 || lines[len(lines)-1].Event != "done" {
		t.Fatalf("the stream does not end with a done line: %d lines", len(lines))
	}
	return lines, out.String(), errb.String()
}

// withoutStats returns the JSON object b without its "stats" key (timings
// differ between two runs).
func withoutStats(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	delete(m, "stats")
	return m
}

func TestStream(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		st := supervisortest.StartStack(t, engine)
		base := st.Gateway.URL

		// Output printed before a sleep arrives before the sleep ends (a
		// plain print: the jail's Python is unbuffered).
		t.Run("before_sleep", func(t *testing.T) {
			s := openStream(t, base, "import time\ndef main():\n    print('before')\n    time.sleep(1)\n    print('after')\n    return 'slept'\n", nil)
			before := s.stdoutUntil(t, "before\n")
			lines, stdout, _ := s.all(t)
			if len(lines) < 2 {
				t.Fatalf("lines %+v after \"before\\n\", want \"after\\n\" and done", lines)
			}
			done := lines[len(lines)-1]
			if gap := done.At - before.At; gap < 900*time.Millisecond {
				t.Fatalf("\"before\" arrived %v before the end, want it before the 1 s sleep ended", gap)
			}
			for _, l := range lines {
				if l.Event == "stdout" && l.At-before.At < 900*time.Millisecond {
					t.Fatalf("%q arrived %v after \"before\", less than the sleep", l.Data, l.At-before.At)
				}
			}
			if stdout != "after\n" || done.Status != 200 || !strings.Contains(string(done.Response), `"result":"slept"`) {
				t.Fatalf("stdout %q, final %d %s", stdout, done.Status, done.Response)
			}
		})

		// The final line holds exactly what the plain answer holds, and the
		// chunks joined are its stdout and stderr.
		t.Run("final_is_plain_answer", func(t *testing.T) {
			for name, script := range map[string]string{
				"ok":        "import sys\ndef main():\n    print('out \u20ac')\n    sys.stderr.write('err\\n')\n    print('more')\n    return {'n': [1, 2.5, None]}\n",
				"exception": "import sys\ndef main():\n    print('first')\n    sys.stderr.write('warn\\n')\n    raise ValueError('nope')\n",
				"exited":    "import os\ndef main():\n    print('bye', flush=True)\n    os._exit(3)\n",
				"syntax":    "def main(:\n",
			} {
				t.Run(name, func(t *testing.T) {
					plain := execute(t, base, script, nil)
					s := openStream(t, base, script, nil)
					lines, stdout, stderr := s.all(t)
					done := lines[len(lines)-1]
					if done.Status != plain.Status {
						t.Fatalf("final status %d, plain answer %d", done.Status, plain.Status)
					}
					got, want := withoutStats(t, done.Response), withoutStats(t, plain.Raw)
					if g, w := mustJSON(got), mustJSON(want); g != w {
						t.Fatalf("final response %s\nplain answer   %s", g, w)
					}
					if stdout != plain.Body.Stdout || stderr != plain.Body.Stderr {
						t.Fatalf("chunks joined %q/%q, answer's stdout/stderr %q/%q", stdout, stderr, plain.Body.Stdout, plain.Body.Stderr)
					}
				})
			}
		})

		// A request refused before anything ran keeps its plain answer.
		t.Run("refused_before_stream", func(t *testing.T) {
			hr, _ := http.NewRequest("POST", base+"/execute", strings.NewReader(`{"script": "def main(): pass", "nope": 1}`))
			hr.Header.Set("Content-Type", "application/json")
			hr.Header.Set("Accept", "application/x-ndjson")
			resp, err := httpClient.Do(hr)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 400 || resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(string(b), `"invalid_request"`) {
				t.Fatalf("got %d %s %s, want a plain 400 invalid_request", resp.StatusCode, resp.Header.Get("Content-Type"), b)
			}
		})

		// Closing a stream cancels its execution at once.
		t.Run("disconnect_cancels", func(t *testing.T) {
			s := openStream(t, base, "import time\ndef main():\n    print('started')\n    time.sleep(25)\n", nil)
			s.stdoutUntil(t, "started\n")
			s.resp.Body.Close()
			deadline := time.Now().Add(5 * time.Second)
			for len(supervisortest.SandboxProcesses(t)) > 0 {
				if time.Now().After(deadline) {
					t.Fatal("execution still running 5s after the stream was closed")
				}
				time.Sleep(50 * time.Millisecond)
			}
			for !strings.Contains(st.Supervisor.Logs.String(), `"exit_reason":"cancelled"`) {
				if time.Now().After(deadline) {
					t.Fatalf("supervisor did not record a cancellation:\n%s", st.Supervisor.Logs)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})

		// A reader that stalls does not hold the execution back (it ends
		// in its own time, the output kept to its cap) and gets everything
		// once it reads.
		t.Run("slow_reader", func(t *testing.T) {
			pause := slowed(4 * time.Second)
			s := openStream(t, base, "import os\ndef main():\n    for _ in range(128):\n        os.write(1, b'o' * 65536)\n        os.write(2, b'e' * 65536)\n    return 'flooded'\n", nil)
			time.Sleep(pause)
			lines, stdout, stderr := s.all(t)
			done := lines[len(lines)-1]
			var resp struct {
				Stdout, Stderr string
				Stats          struct {
					WallMS int64 `json:"wall_ms"`
				}
				Truncated struct{ Stdout, Stderr bool }
			}
			if err := json.Unmarshal(done.Response, &resp); err != nil || done.Status != 200 {
				t.Fatalf("final %d %.300s: %v", done.Status, done.Response, err)
			}
			if len(stdout) != 1<<20 || len(stderr) != 1<<20 || stdout != resp.Stdout || stderr != resp.Stderr ||
				!resp.Truncated.Stdout || !resp.Truncated.Stderr {
				t.Fatalf("streamed %d/%d bytes, answer %d/%d truncated %+v; want exactly the 1 MiB caps, the same in both",
					len(stdout), len(stderr), len(resp.Stdout), len(resp.Stderr), resp.Truncated)
			}
			if resp.Stats.WallMS >= pause.Milliseconds() {
				t.Fatalf("the execution took %d ms, as long as the reader stalled: it waited for the reader", resp.Stats.WallMS)
			}
		})
	})
}

// TestAdversarialStreamFlood: a script that floods both streams, in big
// writes and in one-byte writes, until its timeout, at a reader that stalls
// meanwhile: the gateway keeps to the output caps (its memory stays small),
// the service answers others beside it, and the stream still ends with its
// outcome.
func TestAdversarialStreamFlood(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		st := supervisortest.StartStack(t, engine)
		base := st.Gateway.URL
		for name, script := range map[string]string{
			"big_writes":  "import os\ndef main():\n    b = b'F' * 65536\n    while True:\n        os.write(1, b)\n        os.write(2, b)\n",
			"tiny_writes": "import sys\ndef main():\n    while True:\n        sys.stdout.write('f')\n        sys.stderr.write('g')\n",
		} {
			t.Run(name, func(t *testing.T) {
				const capBytes = 256 << 10
				// 3 s natively; longer under emulation, where a cold start
				// takes most of 3 s (within the 30 s maximum).
				flood := slowed(3 * time.Second)
				s := openStream(t, base, script, map[string]any{"timeout": min(30, int(flood.Seconds())), "output_bytes": capBytes})
				// Beside the flood, with its reader stalled, others are served.
				r := execute(t, base, "def main(): return 'beside'", nil)
				if !sameJSON(r.Body.Result, []byte(`"beside"`)) {
					t.Fatalf("a request beside the flood got %d %s", r.Status, r.Raw)
				}
				time.Sleep(flood)
				if !supervisortest.Remote() {
					if rss := vmRSS(t, st.Gateway.Pid()); rss > 200<<20 {
						t.Fatalf("gateway RSS %d bytes during a capped flood", rss)
					}
				}
				lines, stdout, stderr := s.all(t)
				done := lines[len(lines)-1]
				if done.Status != 500 || !strings.Contains(string(done.Response), `"type":"timeout"`) {
					t.Fatalf("final %d %.300s, want 500 timeout", done.Status, done.Response)
				}
				// An error answer has no "truncated" key (the plain error
				// shape); the lengths say it.
				var resp struct{ Stdout, Stderr string }
				if err := json.Unmarshal(done.Response, &resp); err != nil {
					t.Fatal(err)
				}
				if stdout != resp.Stdout || stderr != resp.Stderr {
					t.Fatalf("streamed %d/%d bytes, the answer holds %d/%d: not the same", len(stdout), len(stderr), len(resp.Stdout), len(resp.Stderr))
				}
				// Big writes reach the caps for sure; one-byte writes on a
				// loaded host may not within the timeout, but never pass them.
				full := name == "big_writes"
				for _, n := range []int{len(stdout), len(stderr)} {
					if n > capBytes || (full && n != capBytes) {
						t.Fatalf("streamed %d/%d bytes; cap %d", len(stdout), len(stderr), capBytes)
					}
				}
			})
		}
		waitNoSandboxProcesses(t)
	})
}

// vmRSS is a process's resident memory in bytes.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
