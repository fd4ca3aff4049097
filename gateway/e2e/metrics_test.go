package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/python-executor/python-executor/internal/supervisortest"
)

// metricsClient is plain: the metrics listener is not the API the OpenAPI
// document (and specChecked) describes.
var metricsClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}

// scrapeMetrics reads GET /metrics on the gateway's metrics listener.
func scrapeMetrics(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := metricsClient.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, b)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	for name := range fams {
		if !strings.HasPrefix(name, "pyexec_") {
			t.Errorf("metric %s does not start with pyexec_", name)
		}
	}
	return fams
}

// metricValue is the value of name's sample whose labels include labels
// (a histogram's count); 0 when there is none yet (counters start absent).
func metricValue(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	mf := fams[name]
	if mf == nil {
		return 0
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
		case m.Untyped != nil:
			return m.Untyped.GetValue()
		}
	}
	return 0
}

// The real stack: known traffic through the public port, then the metrics
// listener serves the gateway's and the supervisor's metrics with the
// values that traffic implies; both processes log Cloud Logging's fields.
func TestMetricsAndLogs(t *testing.T) {
	if supervisortest.Remote() {
		// Not a skip: a remote run that reaches this test is misconfigured
		// (scripts/image/test.sh lists it among the host-only tests).
		t.Fatal("the metrics listener is loopback-only inside the remote target: run this test on the host")
	}
	for _, engine := range []string{"cold", "warm"} {
		t.Run(engine, func(t *testing.T) {
			s := supervisortest.Start(t, supervisortest.Options{Engine: engine, GatewayUser: supervisortest.GatewayUser, Args: []string{"-zygotes", "1", "-slim-zygotes", "1"}})
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			maddr := l.Addr().String()
			l.Close()
			gw := supervisortest.StartGateway(t, s, "-metrics-listen", maddr)
			mbase := "http://" + maddr
			base := gw.URL

			before := scrapeMetrics(t, mbase)
			for range 2 {
				r := execute(t, base, "print('hello')\ndef main():\n    return 12345\n", nil)
				if v := r.wantOK(t); v != float64(12345) {
					t.Fatalf("result %v", v)
				}
			}
			req, _ := http.NewRequest("POST", base+"/execute", strings.NewReader(`{"script": "def main():\n    raise ValueError('x')\n"}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
			resp, err := httpClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 500 {
				t.Fatalf("exception: status %d", resp.StatusCode)
			}
			reqID := resp.Header.Get("X-Request-Id")
			after := scrapeMetrics(t, mbase)

			delta := func(name string, labels ...string) float64 {
				return metricValue(after, name, labels...) - metricValue(before, name, labels...)
			}
			gwc := []string{"client", "gateway"}
			for _, tc := range []struct {
				name   string
				labels []string
				want   float64
			}{
				{"pyexec_supervisor_executions_total", append(gwc, "engine", engine, "outcome", "ok"), 2},
				{"pyexec_supervisor_executions_total", append(gwc, "engine", engine, "outcome", "exception"), 1},
				{"pyexec_supervisor_execution_duration_seconds", []string{"engine", engine, "outcome", "ok"}, 2},
				{"pyexec_supervisor_queue_wait_seconds", gwc, 3},
				{"pyexec_supervisor_output_bytes_total", append(gwc, "stream", "stdout"), 2 * 6},
				{"pyexec_supervisor_output_bytes_total", append(gwc, "stream", "result"), 2 * 5},
				{"pyexec_supervisor_busy_total", nil, 0},
				{"pyexec_supervisor_cgroup_cleanup_failures_total", nil, 0},
				{"pyexec_gateway_http_requests_total", []string{"route", "/execute", "method", "POST", "code", "200"}, 2},
				{"pyexec_gateway_http_requests_total", []string{"route", "/execute", "method", "POST", "code", "500"}, 1},
			} {
				if got := delta(tc.name, tc.labels...); got != tc.want {
					t.Errorf("%s%v went up by %v, want %v", tc.name, tc.labels, got, tc.want)
				}
			}
			// The slot is released just after the answer is sent: running
			// drops to 0 a moment after the last answer, not before it.
			for deadline := time.Now().Add(10 * time.Second); metricValue(after, "pyexec_supervisor_running") != 0 && time.Now().Before(deadline); {
				time.Sleep(20 * time.Millisecond)
				after = scrapeMetrics(t, mbase)
			}
			for _, tc := range []struct {
				name   string
				labels []string
				want   float64
			}{
				{"pyexec_supervisor_running", nil, 0},
				{"pyexec_supervisor_queued", nil, 0},
				{"pyexec_supervisor_ready", nil, 1},
				{"pyexec_supervisor_connections", gwc, 1},
				{"pyexec_gateway_supervisor_metrics_up", nil, 1},
			} {
				if got := metricValue(after, tc.name, tc.labels...); got != tc.want {
					t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
				}
			}
			spares := delta("pyexec_supervisor_spare_hits_total") + delta("pyexec_supervisor_spare_misses_total")
			if want := map[string]float64{"cold": 0, "warm": 3}[engine]; spares != want {
				t.Errorf("spare hits+misses went up by %v, want %v", spares, want)
			}
			if engine == "warm" {
				// A zygote killed from the host is counted when replaced
				// (one preloaded, one slim: either kind).
				zs := supervisortest.ZygoteProcesses(t)
				if len(zs) != 2 {
					t.Fatalf("zygotes %v, want 2", zs)
				}
				syscall.Kill(zs[0], syscall.SIGKILL)
				deadline := time.Now().Add(60 * time.Second)
				for metricValue(scrapeMetrics(t, mbase), "pyexec_supervisor_zygote_restarts_total")-metricValue(before, "pyexec_supervisor_zygote_restarts_total") != 1 {
					if time.Now().After(deadline) {
						t.Fatal("zygote_restarts_total did not count the killed zygote within 60s")
					}
					time.Sleep(100 * time.Millisecond)
				}
				r := execute(t, base, "def main():\n    return 1\n", nil)
				r.wantOK(t)
			}

			// Logs: every JSON line has a severity and a message; the
			// request's lines carry its id as a label in both processes,
			// and the gateway's its trace.
			checkCloudLog(t, "supervisor", s.Logs.String(), reqID, "", "gateway")
			checkCloudLog(t, "gateway", gw.Logs.String(), reqID, "0af7651916cd43dd8448eb211c80319c", "")
		})
	}
}

// checkCloudLog checks a process's JSON log: severity and message on every
// line, and at least one line of request reqID with it as a label (and
// with the trace and the supervisor's client name, when given).
func checkCloudLog(t *testing.T, who, log, reqID, trace, client string) {
	t.Helper()
	found := 0
	for _, line := range strings.Split(log, "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("%s: log line is not JSON: %q", who, line)
			continue
		}
		sev, _ := m["severity"].(string)
		if sev == "" || m["message"] == nil || m["time"] == nil || m["level"] != nil || m["msg"] != nil {
			t.Errorf("%s: log line without Cloud Logging's fields: %s", who, line)
		}
		labels, _ := m["logging.googleapis.com/labels"].(map[string]any)
		if m["request_id"] == reqID && labels["request_id"] == reqID {
			found++
			if trace != "" && m["trace"] != trace {
				t.Errorf("%s: line of request %s without its trace %s: %s", who, reqID, trace, line)
			}
			if client != "" && m["client"] != client {
				t.Errorf("%s: line of request %s names client %v, want %s: %s", who, reqID, m["client"], client, line)
			}
		}
	}
	if found == 0 {
		t.Errorf("%s: no log line of request %s with it as a label:\n%s", who, reqID, log)
	}
}
