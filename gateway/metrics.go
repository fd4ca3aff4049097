package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fasthttp/router"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/sirupsen/logrus"
	"github.com/valyala/fasthttp"

	"github.com/python-executor/python-executor/wire"
)

// The gateway's metrics, and the supervisor's, on a listener of their own
// (Config.MetricsAddr, loopback by default) so the public port never
// exposes them. The supervisor opens no TCP port: its metrics come over the
// socket (wire feature "metrics") at each scrape and are served beside the
// gateway's. The README's "Metrics" section lists every name.

// metricsPrefix starts every gateway metric; the supervisor's start with
// supervisorMetricsPrefix.
const (
	metricsPrefix           = "pyexec_gateway_"
	supervisorMetricsPrefix = "pyexec_supervisor_"
)

// MetricsSource is what an Executor implements to have the supervisor's
// metrics served with the gateway's (*client.Client does, on a connection
// that agreed to wire.FeatureMetrics).
type MetricsSource interface {
	Metrics(ctx context.Context) (*wire.Metrics, error)
}

// Bounds of one fetch of the supervisor's metrics: a scrape must not hang on
// a supervisor that does not answer, nor hold an unbounded answer in
// memory.
const (
	supervisorMetricsTimeout  = 2 * time.Second
	maxSupervisorMetricsBytes = 4 << 20
)

// routeUnmatched labels requests no route matched (404, 405, OPTIONS), so
// a scan of random paths cannot grow the label set.
const routeUnmatched = "unmatched"

var httpDurationBuckets = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

type gatewayMetrics struct {
	reg *prometheus.Registry

	requests *prometheus.CounterVec   // route, method, code
	duration *prometheus.HistogramVec // route
	inFlight prometheus.Gauge

	supervisorUp     prometheus.Gauge
	supervisorErrors prometheus.Counter
}

func newGatewayMetrics(g *Gateway) *gatewayMetrics {
	reg := prometheus.NewRegistry()
	f := prometheus.WrapRegistererWithPrefix(metricsPrefix, reg)
	m := &gatewayMetrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total",
			Help: "HTTP requests answered, by route (the matched route pattern, or unmatched), method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_request_duration_seconds",
			Help:    "Time to handle an HTTP request, by route; a streamed answer counts until its stream is set up.",
			Buckets: httpDurationBuckets,
		}, []string{"route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "http_requests_in_flight",
			Help: "HTTP requests being handled now.",
		}),
		supervisorUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "supervisor_metrics_up",
			Help: "1 when the last scrape got the supervisor's metrics over the socket, 0 when it did not (they are then missing from that scrape).",
		}),
		supervisorErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "supervisor_metrics_errors_total",
			Help: "Scrapes that could not get or parse the supervisor's metrics.",
		}),
	}
	f.MustRegister(m.requests, m.duration, m.inFlight, m.supervisorUp, m.supervisorErrors,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "executions_in_flight",
			Help: "Executions the gateway is waiting on now.",
		}, func() float64 { return float64(g.running.Load()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// observe counts one answered request.
func (m *gatewayMetrics) observe(ctx *fasthttp.RequestCtx, start time.Time) {
	route := routeUnmatched
	if p, ok := ctx.UserValue(router.MatchedRoutePathParam).(string); ok && p != "" {
		route = p
	}
	m.requests.WithLabelValues(route, methodLabel(ctx.Method()), strconv.Itoa(ctx.Response.StatusCode())).Inc()
	m.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
}

// methodLabel keeps the method label's values few: anything but the
// standard methods is "other".
func methodLabel(m []byte) string {
	switch s := string(m); s {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS":
		return s
	}
	return "other"
}

// gatherers is what /metrics serves: the supervisor's metrics first (so
// supervisor_metrics_up describes this scrape), then the gateway's.
func (g *Gateway) gatherers() prometheus.Gatherers {
	return prometheus.Gatherers{prometheus.GathererFunc(g.gatherSupervisor), g.metrics.reg}
}

// gatherSupervisor fetches and parses the supervisor's metrics. A failure
// is logged and counted, and the scrape goes on without them: the gateway's
// own metrics (supervisor_metrics_up among them) still say what is wrong.
func (g *Gateway) gatherSupervisor() ([]*dto.MetricFamily, error) {
	mfs, err := g.fetchSupervisorMetrics()
	if err != nil {
		g.metrics.supervisorUp.Set(0)
		g.metrics.supervisorErrors.Inc()
		g.log.WithError(err).Warn("supervisor metrics unavailable")
		return nil, nil
	}
	g.metrics.supervisorUp.Set(1)
	return mfs, nil
}

var errNoMetricsSource = errors.New("the executor cannot fetch the supervisor's metrics")

func (g *Gateway) fetchSupervisorMetrics() ([]*dto.MetricFamily, error) {
	src, ok := g.exec.(MetricsSource)
	if !ok {
		return nil, errNoMetricsSource
	}
	ctx, cancel := context.WithTimeout(context.Background(), supervisorMetricsTimeout)
	defer cancel()
	m, err := src.Metrics(ctx)
	if err != nil {
		return nil, err
	}
	return parseSupervisorMetrics(m)
}

// parseSupervisorMetrics checks and parses the supervisor's answer: the
// text format only, at most maxSupervisorMetricsBytes, every family named
// pyexec_supervisor_* (so it cannot shadow a gateway metric).
func parseSupervisorMetrics(m *wire.Metrics) ([]*dto.MetricFamily, error) {
	if mt, _, _ := strings.Cut(m.Format, ";"); strings.TrimSpace(mt) != "text/plain" {
		return nil, fmt.Errorf("supervisor metrics: format %q, want the text format", m.Format)
	}
	if len(m.Text) > maxSupervisorMetricsBytes {
		return nil, fmt.Errorf("supervisor metrics: %d bytes, over the cap of %d", len(m.Text), maxSupervisorMetricsBytes)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(m.Text))
	if err != nil {
		return nil, fmt.Errorf("supervisor metrics: %w", err)
	}
	names := make([]string, 0, len(fams))
	for n := range fams {
		if !strings.HasPrefix(n, supervisorMetricsPrefix) {
			return nil, fmt.Errorf("supervisor metrics: family %q outside %s*", n, supervisorMetricsPrefix)
		}
		names = append(names, n)
	}
	slices.Sort(names)
	out := make([]*dto.MetricFamily, 0, len(names))
	for _, n := range names {
		out = append(out, fams[n])
	}
	return out, nil
}

// MetricsEnabled reports whether Config.MetricsAddr asks for a metrics
// listener ("" and "off" do not).
func (c Config) MetricsEnabled() bool {
	return c.MetricsAddr != "" && c.MetricsAddr != "off"
}

// ServeMetrics serves GET /metrics on ln (plain net/http: the listener is
// private, low-traffic and outside the public server's limits) until ctx
// ends.
func (g *Gateway) ServeMetrics(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.gatherers(), promhttp.HandlerOpts{
		ErrorLog:            promLogger{g.log},
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             2 * supervisorMetricsTimeout,
	}))
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       30 * time.Second,
	}
	g.log.WithField("addr", ln.Addr().String()).Info("metrics listening")
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownLinger)
	defer cancel()
	srv.Shutdown(sctx)
	return nil
}

// promLogger sends promhttp's errors to the gateway log.
type promLogger struct{ log *logrus.Entry }

func (l promLogger) Println(v ...any) {
	l.log.WithField("component", "metrics").Warn(fmt.Sprint(v...))
}
