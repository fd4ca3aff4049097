package supervisor

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/python-executor/python-executor/client"
	"github.com/python-executor/python-executor/wire"
)

// scriptedEngine answers by script, without a jail: the metrics tests need
// known outcomes, output sizes and timings, not Python.
type scriptedEngine struct{}

func (scriptedEngine) Name() string { return "scripted" }

func (scriptedEngine) Run(ctx context.Context, x *Execution) Outcome {
	x.Stdout([]byte("hello\n"))
	switch x.Script {
	case "raise":
		return Outcome{Err: &wire.Error{Type: wire.ErrException, Message: "boom"}, Done: wire.Done{WallMS: 20, ExitReason: wire.ExitError}}
	case "slow":
		select {
		case <-ctx.Done():
		case <-time.After(600 * time.Millisecond):
		}
	}
	return Outcome{Result: []byte("12345"), Files: []wire.File{{Name: "a", Data: []byte("abc")}}, Done: wire.Done{WallMS: 30, ExitReason: wire.ExitOK}}
}

// startMetricsServer serves an in-process Server on scriptedEngine with one
// slot and a 100 ms queue wait.
func startMetricsServer(t *testing.T) string {
	t.Helper()
	logger, _ := logtest.NewNullLogger()
	srv := NewServer(Config{GatewayUID: -1, GatewayGID: -1, Slots: 1, QueueSize: 4, MaxQueueWait: 100 * time.Millisecond, Defaults: DefaultLimits(), Max: DefaultLimits()},
		scriptedEngine{}, "full", "none", logrus.NewEntry(logger))
	return serveInProcess(t, srv)
}

// scrape fetches the supervisor's metrics over the socket and parses them
// as the gateway does.
func scrape(t *testing.T, c *client.Client) map[string]*dto.MetricFamily {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := c.Metrics(ctx)
	if err != nil {
		t.Fatalf("Metrics: %v", err)
	}
	if m.Format != wire.MetricsFormat {
		t.Errorf("format %q, want %q", m.Format, wire.MetricsFormat)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(m.Text))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, m.Text)
	}
	for name := range fams {
		if !strings.HasPrefix(name, "pyexec_supervisor_") {
			t.Errorf("metric %s does not start with pyexec_supervisor_", name)
		}
	}
	return fams
}

// value returns the value of the sample of family name whose labels
// include labels (counter, gauge, or a histogram's count); -1 when there is
// none.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
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

func TestMetricsAfterKnownTraffic(t *testing.T) {
	requireRoot(t)
	path := startMetricsServer(t)
	c := client.New(client.Config{SocketPath: path, Features: []string{wire.FeatureIO, wire.FeatureMetrics}})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exec := func(script string) *client.Outcome {
		t.Helper()
		out, err := c.Execute(ctx, wire.Execute{Script: script}, nil)
		if err != nil {
			t.Fatalf("Execute(%q): %v", script, err)
		}
		return out
	}
	exec("ok")
	exec("ok")
	if out := exec("raise"); out.Err == nil || out.Err.Type != wire.ErrException {
		t.Fatalf("raise: %+v", out)
	}
	// One slot: "slow" holds it for 600 ms; the next one waits 100 ms and
	// is refused busy.
	slow := make(chan *client.Outcome)
	go func() {
		out, _ := c.Execute(ctx, wire.Execute{Script: "slow"}, nil)
		slow <- out
	}()
	deadline := time.Now().Add(5 * time.Second)
	for value(scrape(t, c), "pyexec_supervisor_running") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the slow execution never ran")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if out := exec("ok"); out.Err == nil || out.Err.Type != wire.ErrBusy {
		t.Fatalf("with the slot taken: %+v, want busy", out)
	}
	if out := <-slow; out == nil || out.Err != nil {
		t.Fatalf("slow: %+v", out)
	}
	// The answer is sent before the slot is released: wait for the release.
	for value(scrape(t, c), "pyexec_supervisor_running") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the slow execution's slot was never released")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The slot is released just after the answer is sent.
	f := scrape(t, c)
	for deadline := time.Now().Add(5 * time.Second); value(f, "pyexec_supervisor_running") != 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		f = scrape(t, c)
	}
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"pyexec_supervisor_executions_total", []string{"client", "root", "engine", "scripted", "outcome", "ok"}, 3},
		{"pyexec_supervisor_executions_total", []string{"client", "root", "engine", "scripted", "outcome", "exception"}, 1},
		{"pyexec_supervisor_executions_total", []string{"client", "root", "engine", "scripted", "outcome", "busy"}, 1},
		{"pyexec_supervisor_busy_total", []string{"client", "root", "reason", "queue_wait"}, 1},
		{"pyexec_supervisor_execution_duration_seconds", []string{"engine", "scripted", "outcome", "ok"}, 3},
		{"pyexec_supervisor_execution_duration_seconds", []string{"engine", "scripted", "outcome", "exception"}, 1},
		// Every execution that reached the queue: 4 admitted, 1 gave up.
		{"pyexec_supervisor_queue_wait_seconds", []string{"client", "root"}, 5},
		{"pyexec_supervisor_output_bytes_total", []string{"client", "root", "stream", "stdout"}, 4 * 6},
		{"pyexec_supervisor_output_bytes_total", []string{"client", "root", "stream", "result"}, 3 * 5},
		{"pyexec_supervisor_output_bytes_total", []string{"client", "root", "stream", "files"}, 3 * 3},
		{"pyexec_supervisor_running", nil, 0},
		{"pyexec_supervisor_queued", nil, 0},
		{"pyexec_supervisor_slots", nil, 1},
		{"pyexec_supervisor_queue_size", nil, 4},
		{"pyexec_supervisor_ready", nil, 1},
		{"pyexec_supervisor_connections", []string{"client", "root"}, 1},
	} {
		if got := value(f, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	// The wall-time histogram sums the engine's wall times: 3 × 30 ms + 20 ms.
	var sum float64
	for _, m := range f["pyexec_supervisor_execution_duration_seconds"].Metric {
		sum += m.Histogram.GetSampleSum()
	}
	if sum < 0.109 || sum > 0.111 {
		t.Errorf("duration sum %v, want 0.11", sum)
	}
	for _, name := range []string{"pyexec_supervisor_zygote_restarts_total", "pyexec_supervisor_spare_hits_total", "pyexec_supervisor_cgroup_cleanup_failures_total", "pyexec_supervisor_go_goroutines", "pyexec_supervisor_process_open_fds"} {
		if f[name] == nil {
			t.Errorf("no metric %s", name)
		}
	}
}

// A client that did not agree to the feature cannot ask: the client says so
// without sending, and a raw metrics_request is a protocol violation.
func TestMetricsNeedTheFeature(t *testing.T) {
	requireRoot(t)
	path := startMetricsServer(t)
	c := client.New(client.Config{SocketPath: path})
	defer c.Close()
	if _, err := c.Metrics(context.Background()); !errors.Is(err, client.ErrFeatureNotAgreed) {
		t.Fatalf("Metrics without the feature: %v, want ErrFeatureNotAgreed", err)
	}
	_, conn, br := rawHello(t, path, wire.Hello{Version: 1, Software: "t"})
	f, _ := wire.NewFrame(0, wire.TypeMetricsRequest, wire.Empty{})
	if err := wire.WriteFrame(conn, f); err != nil {
		t.Fatal(err)
	}
	got, err := wire.ReadFrame(br, wire.DefaultMaxFrame)
	if err != nil {
		t.Fatal(err)
	}
	var e wire.Error
	if got.Type != wire.TypeError || wire.Unmarshal(got.Body, &e) != nil || e.Type != wire.ErrProtocol {
		t.Fatalf("answer to metrics_request without the feature: %s %x", got.Type, got.Body)
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the supervisor's peer check admits root only: run the tests as root")
	}
}
