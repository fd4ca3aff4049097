package gateway

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"testing"
)

// The playground page at GET /: HTML with its security headers, gzip when
// asked, revalidation by ETag, HEAD. (gateway/e2e checks these answers
// against the OpenAPI document, and drives the page in a browser:
// TestPlayground.)
func TestPlaygroundRoute(t *testing.T) {
	ts := start(t, &fakeExec{})
	plain := func(method string, header map[string]string) reply {
		// Without a transport that asks for gzip by itself.
		req, _ := http.NewRequest(method, ts.url+"/", nil)
		req.Header.Set("Accept-Encoding", "identity")
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return reply{status: resp.StatusCode, header: resp.Header, body: string(b)}
	}

	r := plain("GET", nil)
	if r.status != 200 || r.header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET / = %d %q", r.status, r.header.Get("Content-Type"))
	}
	for _, want := range []string{"<title>python-executor playground</title>", `id="editor"`, `"field":"timeout"`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	csp := r.header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'sha256-", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-eval") || strings.Contains(csp, "script-src 'unsafe-inline'") {
		t.Errorf("Content-Security-Policy %q lets scripts in by other means than the hash", csp)
	}
	if r.header.Get("X-Content-Type-Options") != "nosniff" || r.header.Get("X-Request-Id") == "" {
		t.Errorf("headers %v", r.header)
	}

	t.Run("gzip", func(t *testing.T) {
		g := plain("GET", map[string]string{"Accept-Encoding": "gzip, br"})
		if g.header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("Content-Encoding %q", g.header.Get("Content-Encoding"))
		}
		zr, err := gzip.NewReader(strings.NewReader(g.body))
		if err != nil {
			t.Fatal(err)
		}
		html, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(html, []byte(r.body)) {
			t.Fatalf("gzip body decodes to %d bytes (%v), want the %d of the plain page", len(html), err, len(r.body))
		}
		if len(g.body)*2 > len(r.body) {
			t.Errorf("gzip page %d bytes, plain %d: hardly compressed", len(g.body), len(r.body))
		}
	})
	t.Run("etag", func(t *testing.T) {
		etag := r.header.Get("ETag")
		nm := plain("GET", map[string]string{"If-None-Match": etag})
		if etag == "" || nm.status != 304 || nm.body != "" {
			t.Fatalf("If-None-Match %q: %d %q, want 304", etag, nm.status, nm.body)
		}
		if other := plain("GET", map[string]string{"If-None-Match": `"old"`}); other.status != 200 {
			t.Fatalf("stale If-None-Match: %d, want 200", other.status)
		}
	})
	t.Run("head", func(t *testing.T) {
		h := plain("HEAD", nil)
		if h.status != 200 || h.body != "" || h.header.Get("Content-Security-Policy") != csp {
			t.Fatalf("HEAD / = %d %q %v", h.status, h.body, h.header)
		}
	})
	t.Run("post_not_allowed", func(t *testing.T) {
		p := do(t, "POST", ts.url+"/", "application/json", "{}", nil)
		checkError(t, p, 405, "method_not_allowed")
	})
}

// -playground=false: / is an unknown path, like any other.
func TestPlaygroundOff(t *testing.T) {
	ts := start(t, &fakeExec{}, func(c *Config) { c.Playground = false })
	for _, m := range []string{"GET", "HEAD"} {
		r := do(t, m, ts.url+"/", "", "", nil)
		if m == "GET" {
			checkError(t, r, 404, "not_found")
		} else if r.status != 404 {
			t.Errorf("HEAD / = %d, want 404", r.status)
		}
	}
	// The API is unaffected.
	if r := do(t, "GET", ts.url+"/health", "", "", nil); r.status != 200 {
		t.Errorf("GET /health = %d", r.status)
	}
}

func TestETagMatches(t *testing.T) {
	for _, tc := range []struct {
		inm  string
		want bool
	}{
		{`"abc"`, true}, {`W/"abc"`, true}, {`"x", "abc"`, true}, {`*`, true},
		{`"abd"`, false}, {`abc`, false}, {``, false},
	} {
		if got := etagMatches([]byte(tc.inm), `"abc"`); got != tc.want {
			t.Errorf("etagMatches(%q) = %v, want %v", tc.inm, got, tc.want)
		}
	}
}
