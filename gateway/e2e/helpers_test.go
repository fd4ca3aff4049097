package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/python-executor/python-executor/internal/supervisortest"
)

func TestMain(m *testing.M) {
	// Under PYEXEC_E2E_URL this binary also runs the host checks inside the
	// target; see supervisortest/remote.go.
	supervisortest.RunProbe()
	http.DefaultClient.Transport = specChecked(nil)
	code := m.Run()
	if reportSpecViolations() && code == 0 {
		code = 1
	}
	supervisortest.Cleanup()
	os.Exit(code)
}

// reply is a decoded /execute answer.
type reply struct {
	Status int
	Header http.Header
	Raw    []byte
	Body   struct {
		Result json.RawMessage `json:"result"`
		Stdout string          `json:"stdout"`
		Stderr string          `json:"stderr"`
		Error  *struct {
			Type      string `json:"type"`
			Message   string `json:"message"`
			Traceback string `json:"traceback"`
		} `json:"error"`
	}
}

var httpClient = &http.Client{Timeout: 120 * time.Second, Transport: specChecked(nil)}

// post sends body as-is to path with a JSON content type.
func post(t testing.TB, base, path string, body []byte) *reply {
	t.Helper()
	resp, err := httpClient.Post(base+path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	r := &reply{Status: resp.StatusCode, Header: resp.Header}
	r.Raw, err = io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	if err := json.Unmarshal(r.Raw, &r.Body); err != nil {
		t.Fatalf("POST %s: status %d, body is not JSON: %v: %q", path, resp.StatusCode, err, r.Raw)
	}
	return r
}

// execute runs a script with optional extra request fields.
func execute(t testing.TB, base, script string, extra map[string]any) *reply {
	t.Helper()
	req := map[string]any{"script": script}
	for k, v := range extra {
		req[k] = v
	}
	body, _ := json.Marshal(req)
	return post(t, base, "/execute", body)
}

// wantError asserts an error answer of the given status and type.
func (r *reply) wantError(t testing.TB, status int, typ string) {
	t.Helper()
	if r.Status != status || r.Body.Error == nil || r.Body.Error.Type != typ {
		t.Fatalf("got %d %s, want %d with error type %s", r.Status, r.Raw, status, typ)
	}
}

// wantOK asserts a 200 answer and returns its result decoded.
func (r *reply) wantOK(t testing.TB) any {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("got %d %s, want 200", r.Status, r.Raw)
	}
	var v any
	if err := json.Unmarshal(r.Body.Result, &v); err != nil {
		t.Fatalf("result %q: %v", r.Body.Result, err)
	}
	return v
}

// sameJSON reports whether two JSON texts hold the same value.
func sameJSON(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// noCanary asserts that nothing of the supervisor's environment or the host's
// canary file appears in an answer.
func noCanary(t testing.TB, r *reply) {
	t.Helper()
	for _, c := range []string{supervisortest.Canary, hostCanaryText} {
		if strings.Contains(string(r.Raw), c) {
			t.Fatalf("canary %q leaked into the answer: %s", c, r.Raw)
		}
	}
}

// serviceTier is the isolation tier the service at base reports on /health.
// A stack this test binary starts itself runs the full tier unless given
// other flags; a service under PYEXEC_E2E_URL runs what its host allows (the
// container tier for an image run with no flags), and the suites then assert
// that tier's documented answers (containerDiffers), never skip.
func serviceTier(t testing.TB, base string) string {
	t.Helper()
	resp, err := httpClient.Get(base + "/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h struct{ Tier string }
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || (h.Tier != "full" && h.Tier != "container") {
		t.Fatalf("/health: tier %q (%v), want full or container", h.Tier, err)
	}
	if !supervisortest.Remote() && h.Tier != "full" {
		t.Fatalf("a local stack started without flags runs tier %q, want full", h.Tier)
	}
	return h.Tier
}

// slowed stretches one of the suite's own time bounds (never a service
// limit) by PYEXEC_TEST_SLOWDOWN, a factor the cgroup v2 guest sets because
// it runs under emulation (scripts/v2/guest.sh). Unset or not a number > 1,
// the bound is as written.
func slowed(d time.Duration) time.Duration {
	f, err := strconv.ParseFloat(os.Getenv("PYEXEC_TEST_SLOWDOWN"), 64)
	if err != nil || f <= 1 {
		return d
	}
	return time.Duration(float64(d) * f)
}
