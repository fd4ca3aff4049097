package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/python-executor/python-executor/client"
	"github.com/python-executor/python-executor/wire"
)

// metricsExec is a fakeExec that also answers for the supervisor's
// metrics, with what the test sets.
type metricsExec struct {
	fakeExec
	mu   sync.Mutex
	text string
	err  error
}

func (m *metricsExec) Metrics(ctx context.Context) (*wire.Metrics, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return nil, m.err
	}
	return &wire.Metrics{Format: wire.MetricsFormat, Text: []byte(m.text)}, nil
}

func (m *metricsExec) set(text string, err error) {
	m.mu.Lock()
	m.text, m.err = text, err
	m.mu.Unlock()
}

const supervisorText = "# HELP pyexec_supervisor_running Executions running now.\n# TYPE pyexec_supervisor_running gauge\npyexec_supervisor_running 3\n"

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// runGateway runs the gateway with Run (both listeners) until the test
// ends and returns its two base URLs and its log.
func runGateway(t *testing.T, exec Executor, tweak func(*Config)) (api, metrics string, logs *syncBuffer) {
	t.Helper()
	cfg := testConfig()
	cfg.Addr, cfg.MetricsAddr = freeAddr(t), freeAddr(t)
	if tweak != nil {
		tweak(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs = &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- New(cfg, exec, cfg.NewLogger(logs).WithField("test", t.Name())).Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Run() = %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	for _, a := range []string{cfg.Addr, cfg.MetricsAddr} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, err := net.Dial("tcp", a)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("nothing listens on %s: %v\n%s", a, err, logs)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return "http://" + cfg.Addr, "http://" + cfg.MetricsAddr, logs
}

func scrapeGateway(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	r := do(t, "GET", base+"/metrics", "", "", nil)
	if r.status != 200 {
		t.Fatalf("GET /metrics: %d %s", r.status, r.body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(r.body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, r.body)
	}
	for name := range fams {
		if !strings.HasPrefix(name, "pyexec_") {
			t.Errorf("metric %s does not start with pyexec_", name)
		}
	}
	return fams
}

func sample(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	mf := fams[name]
	if mf == nil {
		return -1
	}
next:
	for _, m := range mf.Metric {
		have := map[string]string{}
		for _, lp := range m.Label {
			have[lp.GetName()] = lp.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

func TestMetricsListener(t *testing.T) {
	ex := &metricsExec{text: supervisorText}
	api, metrics, _ := runGateway(t, ex, nil)

	postJSONTo := func(body string) reply { return do(t, "POST", api+"/execute", "application/json", body, nil) }
	for range 2 {
		if r := postJSONTo(`{"script":"def main(): return 1"}`); r.status != 200 {
			t.Fatalf("execute: %d %s", r.status, r.body)
		}
	}
	if r := postJSONTo(`{"script":`); r.status != 400 {
		t.Fatalf("bad JSON: %d", r.status)
	}
	do(t, "GET", api+"/health", "", "", nil)
	do(t, "GET", api+"/no/such/path", "", "", nil)
	// The public port never serves the metrics.
	if r := do(t, "GET", api+"/metrics", "", "", nil); r.status != 404 {
		t.Errorf("GET /metrics on the public port: %d, want 404", r.status)
	}

	f := scrapeGateway(t, metrics)
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"pyexec_gateway_http_requests_total", []string{"route", "/execute", "method", "POST", "code", "200"}, 2},
		{"pyexec_gateway_http_requests_total", []string{"route", "/execute", "method", "POST", "code", "400"}, 1},
		{"pyexec_gateway_http_requests_total", []string{"route", "/health", "method", "GET", "code", "200"}, 1},
		{"pyexec_gateway_http_requests_total", []string{"route", "unmatched", "method", "GET", "code", "404"}, 2},
		{"pyexec_gateway_http_request_duration_seconds", []string{"route", "/execute"}, 3},
		{"pyexec_gateway_http_requests_in_flight", nil, 0},
		{"pyexec_gateway_executions_in_flight", nil, 0},
		{"pyexec_gateway_supervisor_metrics_up", nil, 1},
		{"pyexec_gateway_supervisor_metrics_errors_total", nil, 0},
		// The supervisor's, fetched through the Executor.
		{"pyexec_supervisor_running", nil, 3},
	} {
		if got := sample(f, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	if f["pyexec_gateway_go_goroutines"] == nil || f["pyexec_gateway_process_open_fds"] == nil {
		t.Error("the runtime and process metrics are missing")
	}

	// The in-flight gauges while an execution is held open, then after it:
	// a gauge stuck at 0 would pass the checks above.
	started, release := make(chan struct{}), make(chan struct{})
	ex.execute = func(ctx context.Context, _ wire.Execute) (*client.Outcome, error) {
		close(started)
		<-release
		return &client.Outcome{Result: []byte(`1`), Done: wire.Done{ExitReason: wire.ExitOK}}, nil
	}
	held := make(chan reply, 1)
	go func() {
		r, err := tryDo("POST", api+"/execute", "application/json", `{"script":"x"}`, nil)
		if err != nil {
			r.body = err.Error()
		}
		held <- r
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the held execution did not start")
	}
	f = scrapeGateway(t, metrics)
	for _, name := range []string{"pyexec_gateway_http_requests_in_flight", "pyexec_gateway_executions_in_flight"} {
		if got := sample(f, name); got != 1 {
			t.Errorf("%s = %v with one execution held, want 1", name, got)
		}
	}
	close(release)
	if r := <-held; r.status != 200 {
		t.Fatalf("the held execution: %d %s", r.status, r.body)
	}
	f = scrapeGateway(t, metrics)
	for _, name := range []string{"pyexec_gateway_http_requests_in_flight", "pyexec_gateway_executions_in_flight"} {
		if got := sample(f, name); got != 0 {
			t.Errorf("%s = %v once it answered, want 0", name, got)
		}
	}

	// A supervisor whose metrics cannot be had (unreachable, too large, not
	// its own names, not the text format): the gateway's metrics are still
	// served and say so.
	for i, tc := range []struct {
		text string
		err  error
	}{
		{"", errors.New("supervisor unavailable")},
		{strings.Repeat("#", maxSupervisorMetricsBytes+1), nil},
		{"# TYPE pyexec_gateway_http_requests_in_flight gauge\npyexec_gateway_http_requests_in_flight 99\n", nil},
		{"pyexec_supervisor_running{", nil},
	} {
		ex.set(tc.text, tc.err)
		f := scrapeGateway(t, metrics)
		if got := sample(f, "pyexec_gateway_supervisor_metrics_up"); got != 0 {
			t.Errorf("case %d: supervisor_metrics_up = %v, want 0", i, got)
		}
		if got := sample(f, "pyexec_gateway_supervisor_metrics_errors_total"); got != float64(i+1) {
			t.Errorf("case %d: errors_total = %v, want %d", i, got, i+1)
		}
		if f["pyexec_supervisor_running"] != nil || sample(f, "pyexec_gateway_http_requests_in_flight") == 99 {
			t.Errorf("case %d: the refused answer was served", i)
		}
	}
	ex.set(supervisorText, nil)
	if got := sample(scrapeGateway(t, metrics), "pyexec_gateway_supervisor_metrics_up"); got != 1 {
		t.Errorf("after recovery: up = %v", got)
	}
}

// An executor that cannot fetch the supervisor's metrics (a test fake, an
// older client) leaves the gateway's own.
func TestMetricsWithoutSource(t *testing.T) {
	_, metrics, _ := runGateway(t, &fakeExec{}, nil)
	f := scrapeGateway(t, metrics)
	if sample(f, "pyexec_gateway_supervisor_metrics_up") != 0 || f["pyexec_gateway_http_requests_in_flight"] == nil {
		t.Errorf("metrics without a source: %v", f)
	}
}

func TestMetricsListenerOffAndBusy(t *testing.T) {
	for _, off := range []string{"", "off"} {
		cfg := testConfig()
		cfg.MetricsAddr = off
		if err := cfg.Validate(); err != nil || cfg.MetricsEnabled() {
			t.Errorf("MetricsAddr %q: Validate %v, enabled %v", off, err, cfg.MetricsEnabled())
		}
	}
	cfg := testConfig()
	cfg.MetricsAddr = "nonsense"
	if err := cfg.Validate(); err == nil {
		t.Error("MetricsAddr nonsense: Validate() = nil")
	}
	// A metrics port that is taken stops Run with a clear error.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cfg = testConfig()
	cfg.Addr, cfg.MetricsAddr = freeAddr(t), l.Addr().String()
	err = New(cfg, &fakeExec{}, cfg.NewLogger(&syncBuffer{}).WithField("test", t.Name())).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "metrics listen") {
		t.Fatalf("Run with the metrics port taken: %v", err)
	}
}

// The access log line is what Cloud Logging reads: severity, message, the
// request id as a label, the trace as a resource name with the project,
// httpRequest.
func TestCloudLoggingFields(t *testing.T) {
	api, _, logs := runGateway(t, &fakeExec{}, func(c *Config) { c.GoogleCloudProject = "proj-1" })
	r := do(t, "POST", api+"/execute", "application/json", `{"script":"def main(): return 1"}`,
		map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "X-Request-Id": "req-42"})
	if r.status != 200 {
		t.Fatalf("execute: %d", r.status)
	}
	var access map[string]any
	deadline := time.Now().Add(5 * time.Second)
	for access == nil && time.Now().Before(deadline) {
		for _, line := range strings.Split(logs.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["message"] == "request" && m["request_id"] == "req-42" {
				access = m
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if access == nil {
		t.Fatalf("no access log line for req-42:\n%s", logs)
	}
	labels, _ := access["logging.googleapis.com/labels"].(map[string]any)
	hr, _ := access["httpRequest"].(map[string]any)
	switch {
	case access["severity"] != "INFO":
		t.Errorf("severity %v", access["severity"])
	case labels["request_id"] != "req-42":
		t.Errorf("labels %v", access["logging.googleapis.com/labels"])
	case access["logging.googleapis.com/trace"] != "projects/proj-1/traces/4bf92f3577b34da6a3ce929d0e0e4736":
		t.Errorf("trace %v", access["logging.googleapis.com/trace"])
	case access["logging.googleapis.com/spanId"] != "00f067aa0ba902b7" || access["logging.googleapis.com/trace_sampled"] != true:
		t.Errorf("span %v sampled %v", access["logging.googleapis.com/spanId"], access["logging.googleapis.com/trace_sampled"])
	case hr["requestMethod"] != "POST" || hr["requestUrl"] != "/execute" || hr["status"] != float64(200) || !strings.HasSuffix(hr["latency"].(string), "s"):
		t.Errorf("httpRequest %v", hr)
	}
	if _, ok := access["time"].(string); !ok {
		t.Errorf("no time: %v", access)
	}
}
