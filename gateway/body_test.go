package gateway

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const twentyMiB = 20 << 20

// read413 reads one response from conn and checks it is the JSON 413.
func read413(t *testing.T, conn net.Conn) {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("ReadResponse: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, header: resp.Header, body: string(b)}
	e := checkError(t, r, 413, "body_too_large")
	if want := "request body exceeds 2097152 bytes"; e.Error.Message != want {
		t.Errorf("message = %q, want %q", e.Error.Message, want)
	}
	if !resp.Close {
		t.Error("the connection is kept open after a refused body")
	}
}

// TestBodyTooLarge checks that a 20 MiB body is refused with the JSON 413
// without being read: the answer comes back while the client has sent
// little or nothing of it.
func TestBodyTooLarge(t *testing.T) {
	f := &fakeExec{}
	ts := start(t, f)
	head := "POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"

	t.Run("content-length, headers only", func(t *testing.T) {
		conn := dial(t, ts.addr)
		begin := time.Now()
		fmt.Fprintf(conn, "%sContent-Length: %d\r\n\r\n{\"script\":\"", head, twentyMiB)
		read413(t, conn)
		if d := time.Since(begin); d > 2*time.Second {
			t.Errorf("413 took %v", d)
		}
	})
	t.Run("expect 100-continue", func(t *testing.T) {
		conn := dial(t, ts.addr)
		fmt.Fprintf(conn, "%sContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", head, twentyMiB)
		// The first response must be the final 413, not "100 Continue".
		read413(t, conn)
	})
	t.Run("chunked, answered mid-upload", func(t *testing.T) {
		conn := dial(t, ts.addr)
		fmt.Fprintf(conn, "%sTransfer-Encoding: chunked\r\n\r\n", head)
		var sent atomic.Int64
		go func() {
			// 64 KiB every 5 ms: 20 MiB would take over 1.5 s.
			chunk := fmt.Sprintf("%x\r\n%s\r\n", 64<<10, bytes.Repeat([]byte("a"), 64<<10))
			for sent.Load() < twentyMiB {
				if _, err := io.WriteString(conn, chunk); err != nil {
					return
				}
				sent.Add(64 << 10)
				time.Sleep(5 * time.Millisecond)
			}
		}()
		read413(t, conn)
		if n := sent.Load(); n >= twentyMiB {
			t.Errorf("the answer came after the whole upload (%d bytes)", n)
		}
	})
	t.Run("net/http client gets the 413, not a reset", func(t *testing.T) {
		begin := time.Now()
		req, _ := http.NewRequest("POST", ts.url+"/execute", bytes.NewReader(make([]byte, twentyMiB)))
		req.Header.Set("Content-Type", "application/json")
		resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
		if err != nil {
			// Would be "connection reset by peer" without the lingering close.
			t.Fatalf("POST 20 MiB: %v, want the 413", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		checkError(t, reply{status: resp.StatusCode, header: resp.Header, body: string(b)}, 413, "body_too_large")
		if d := time.Since(begin); d > 5*time.Second {
			t.Errorf("took %v", d)
		}
	})
	t.Run("curl", func(t *testing.T) {
		requireCurl(t)
		file := filepath.Join(t.TempDir(), "big.json")
		if err := os.WriteFile(file, bytes.Repeat([]byte("a"), twentyMiB), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
			"-H", "Content-Type: application/json", "--data-binary", "@"+file, ts.url+"/execute").Output()
		if err != nil {
			t.Fatalf("curl: %v", err)
		}
		if string(out) != "413" {
			t.Errorf("curl got status %s, want 413", out)
		}
	})
	if f.calls() != 0 {
		t.Errorf("the executor was called %d times", f.calls())
	}
}

func TestBodyLimitBoundary(t *testing.T) {
	f := &fakeExec{}
	ts := start(t, f, func(c *Config) { c.MaxBodyBytes = 64 })
	at := `{"script":"` + strings.Repeat("x", 64-len(`{"script":""}`)) + `"}`
	if len(at) != 64 {
		t.Fatalf("len = %d", len(at))
	}
	if r := postJSON(t, ts, at); r.status != 200 {
		t.Errorf("a body of exactly the limit: status %d, want 200: %s", r.status, r.body)
	}
	r := postJSON(t, ts, at+" ")
	e := checkError(t, r, 413, "body_too_large")
	if want := "request body exceeds 64 bytes"; e.Error.Message != want {
		t.Errorf("message = %q, want %q", e.Error.Message, want)
	}
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestUnreadableRequests covers the answers to requests fasthttp cannot read:
// they get the same JSON error shape.
func TestUnreadableRequests(t *testing.T) {
	ts := start(t, &fakeExec{}, func(c *Config) { c.ReadTimeout = 300 * time.Millisecond })
	tests := []struct {
		name    string
		request string
		status  int
		typ     string
	}{
		{"headers too large", "POST /execute HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 8192) + "\r\n\r\n", 431, "headers_too_large"},
		{"headers never finish", "POST /execute HTTP/1.1\r\nHost: x\r\n", 408, "request_timeout"},
		{"body never finishes", "POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{", 408, "request_timeout"},
		{"garbage", "NOT HTTP\r\n\r\n", 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := raw(t, ts.addr, tt.request)
			checkError(t, reply{status: resp.StatusCode, header: resp.Header, body: body}, tt.status, tt.typ)
		})
	}
}
