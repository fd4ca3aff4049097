package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/python-executor/python-executor/gateway/apispec"
)

// Every HTTP answer these suites receive through an http.Client is checked
// against the OpenAPI document (gateway/openapi.json): the transport below
// wraps every client of the package, http.DefaultClient included. A
// departure fails the request itself (the test's own error check reports
// it) and is also recorded, so a test that ignores the request's error still
// fails the run (TestMain).
type specTransport struct{ base http.RoundTripper }

func specChecked(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return specTransport{base: base}
}

var (
	specMu         sync.Mutex
	specViolations []string
)

func specViolation(err error) error {
	specMu.Lock()
	specViolations = append(specViolations, err.Error())
	specMu.Unlock()
	return fmt.Errorf("openapi: %w", err)
}

// reportSpecViolations prints every departure seen and reports whether
// there were any.
func reportSpecViolations() bool {
	specMu.Lock()
	defer specMu.Unlock()
	for _, v := range specViolations {
		fmt.Fprintf(os.Stderr, "FAIL: answer departs from gateway/openapi.json: %s\n", v)
	}
	return len(specViolations) > 0
}

func (s specTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := s.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	spec, err := apispec.Load()
	if err != nil {
		resp.Body.Close()
		return nil, specViolation(err)
	}
	check := func(body []byte) error {
		return spec.Check(apispec.Response{Method: req.Method, Path: req.URL.Path,
			Status: resp.StatusCode, Header: resp.Header, Body: body})
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "application/x-ndjson" {
		// A stream is checked line by line as the test reads it, so
		// checking never delays what the test sees.
		resp.Body = &ndjsonChecker{r: bufio.NewReader(resp.Body), c: resp.Body, check: check}
		return resp, nil
	}
	body, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if rerr != nil {
		// The test sees the truncated body and the read error's
		// effects itself; a half-read answer cannot be judged.
		resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), errReader{rerr}))
		return resp, nil
	}
	if err := check(body); err != nil {
		return nil, specViolation(err)
	}
	return resp, nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// ndjsonChecker passes a streamed body through, checking each complete line.
type ndjsonChecker struct {
	r     *bufio.Reader
	c     io.Closer
	check func([]byte) error
	buf   []byte // what was read but not handed out yet
	err   error
}

func (n *ndjsonChecker) Read(p []byte) (int, error) {
	for len(n.buf) == 0 {
		if n.err != nil {
			return 0, n.err
		}
		line, err := n.r.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			if cerr := n.check(line); cerr != nil {
				n.err = specViolation(cerr)
				return 0, n.err
			}
		}
		n.buf, n.err = line, err
	}
	k := copy(p, n.buf)
	n.buf = n.buf[k:]
	return k, nil
}

func (n *ndjsonChecker) Close() error { return n.c.Close() }

// The checking transport refuses an answer the document does not allow, so
// the suites' checks can fail.
func TestSpecTransportRefusesUndocumented(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Request-Id", "x")
		w.WriteHeader(http.StatusTeapot)
		w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	specMu.Lock()
	before := len(specViolations)
	specMu.Unlock()
	_, err := (&http.Client{Transport: specChecked(nil)}).Post(srv.URL+"/execute", "application/json", strings.NewReader(`{"script":"x"}`))
	specMu.Lock()
	specViolations = specViolations[:before]
	specMu.Unlock()
	if err == nil || !strings.Contains(err.Error(), "not documented") {
		t.Fatalf("an undocumented 418 passed the check: %v", err)
	}
}
