package supervisor

import (
	"bytes"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"

	"github.com/python-executor/python-executor/internal/engine"
	"github.com/python-executor/python-executor/wire"
)

// The supervisor's metrics. It opens no TCP listener (it is the privileged
// process): a client that agreed to the wire feature "metrics" (the
// gateway) fetches the text exposition of this registry over the socket
// and serves it with its own. Every name starts with metricsPrefix; the
// README's "Metrics" section lists them.
const metricsPrefix = "pyexec_supervisor_"

// Buckets of the histograms, in seconds. Executions run from a few
// milliseconds (warm, trivial) to the maximum timeout; queue waits are
// bounded by -max-queue-wait (5 s by default).
var (
	durationBuckets  = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}
	queueWaitBuckets = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
)

// Output streams counted by pyexec_supervisor_output_bytes_total.
const (
	outStdout = "stdout"
	outStderr = "stderr"
	outResult = "result"
	outFiles  = "files"
	outImages = "images"
)

// Reasons of pyexec_supervisor_busy_total.
const (
	busyNotReady  = "not_ready"
	busyQueueFull = "queue_full"
	busyQueueWait = "queue_wait"
	busyDraining  = "draining"
	// busyClientShare: the client already has its share of the queue waiting.
	busyClientShare = "client_share"
)

type metrics struct {
	reg *prometheus.Registry

	executions  *prometheus.CounterVec   // client, engine, outcome
	duration    *prometheus.HistogramVec // engine, outcome
	queueWait   *prometheus.HistogramVec // client
	busy        *prometheus.CounterVec   // client, reason
	outputBytes *prometheus.CounterVec   // client, stream
	connections *prometheus.GaugeVec     // client
}

// newMetrics registers the supervisor's metrics for s on a registry of
// their own (never the global one, so tests can run several servers).
func newMetrics(s *Server) *metrics {
	reg := prometheus.NewRegistry()
	f := prometheus.WrapRegistererWithPrefix(metricsPrefix, reg)
	m := &metrics{
		reg: reg,
		executions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "executions_total",
			Help: "Execute requests answered, by client, engine and outcome (ok or the error type, refusals included).",
		}, []string{"client", "engine", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "execution_duration_seconds",
			Help:    "Wall time of the executions that ran (queue wait excluded), by engine and outcome.",
			Buckets: durationBuckets,
		}, []string{"engine", "outcome"}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "queue_wait_seconds",
			Help:    "Time executions waited for a slot (0 for those admitted at once), by client; refusals at the door are not observed.",
			Buckets: queueWaitBuckets,
		}, []string{"client"}),
		busy: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "busy_total",
			Help: "Busy answers, by client and reason (not_ready, queue_full, queue_wait, draining).",
		}, []string{"client", "reason"}),
		outputBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "output_bytes_total",
			Help: "Bytes of output sent to clients, by client and stream (stdout, stderr, result, files, images).",
		}, []string{"client", "stream"}),
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "connections",
			Help: "Client connections open now, by client.",
		}, []string{"client"}),
	}
	f.MustRegister(m.executions, m.duration, m.queueWait, m.busy, m.outputBytes, m.connections)
	f.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "running", Help: "Executions running now."},
			func() float64 { r, _ := s.admit.counts(); return float64(r) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "queued", Help: "Executions waiting for a slot now."},
			func() float64 { _, q := s.admit.counts(); return float64(q) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "slots", Help: "Executions that may run at once."},
			func() float64 { return float64(s.cfg.Slots) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "queue_size", Help: "Executions that may wait for a slot."},
			func() float64 { return float64(s.cfg.QueueSize) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ready", Help: "1 while executions can run, 0 while the status says why not (not_ready)."},
			func() float64 {
				if s.notReady() != "" {
					return 0
				}
				return 1
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "zygote_restarts_total", Help: "Warm-engine zygotes that died and were replaced."},
			func() float64 { return float64(engine.ReadStats().ZygoteRestarts) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "spare_hits_total", Help: "Warm executions that took a spare child ready in advance."},
			func() float64 { return float64(engine.ReadStats().SpareHits) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "spare_misses_total", Help: "Warm executions that launched a child of their own: no spare was ready, or not one with their limits."},
			func() float64 { return float64(engine.ReadStats().SpareMisses) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "cgroups_kept_total", Help: "Execution or spare cgroups kept after use for a later execution with the same limits instead of removed (cgroup v1 only)."},
			func() float64 { return float64(engine.ReadStats().CgroupsKept) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "cgroup_cleanup_failures_total", Help: "Execution, spare or zygote cgroups that could not be killed or removed after use."},
			func() float64 { return float64(engine.ReadStats().CgroupCleanupFailures) }),
		// The runtime's and the process's own metrics, under the same prefix
		// (pyexec_supervisor_go_*, pyexec_supervisor_process_*).
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// exposition renders the registry in the text format (wire.MetricsFormat).
func (m *metrics) exposition() ([]byte, error) {
	mfs, err := m.reg.Gather()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return nil, fmt.Errorf("encode %s: %w", mf.GetName(), err)
		}
	}
	return b.Bytes(), nil
}

// outcomeLabel is an execution's outcome as a label value: "ok" or its
// error type.
func outcomeLabel(out Outcome) string {
	if out.Err != nil {
		return string(out.Err.Type)
	}
	return "ok"
}

// countOutput adds what an answer carried besides the streamed chunks.
func (m *metrics) countOutput(client string, out Outcome) {
	if out.Err != nil {
		return
	}
	m.outputBytes.WithLabelValues(client, outResult).Add(float64(len(out.Result)))
	var files, images int
	for _, f := range out.Files {
		files += len(f.Data)
	}
	for _, im := range out.Images {
		images += len(im.Data)
	}
	m.outputBytes.WithLabelValues(client, outFiles).Add(float64(files))
	m.outputBytes.WithLabelValues(client, outImages).Add(float64(images))
}

// metricsAnswer is the metrics frame's body.
func (s *Server) metricsAnswer() (wire.Metrics, error) {
	text, err := s.metrics.exposition()
	if err != nil {
		return wire.Metrics{}, err
	}
	return wire.Metrics{Format: wire.MetricsFormat, Text: text}, nil
}
