package client

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/python-executor/python-executor/wire"
)

// Metrics asks on request id 0 and hands answers out in order; without the
// feature agreed it sends nothing and says why; a metrics frame on a
// connection without the feature is a protocol violation.
func TestMetrics(t *testing.T) {
	path := socketPath(t)
	fs := startFake(t, path)
	c, _ := newClient(t, path, Config{Features: []string{wire.FeatureMetrics}})
	const n = 3
	type res struct {
		m   *wire.Metrics
		err error
	}
	got := make(chan res, n)
	for range n {
		go func() {
			m, err := c.Metrics(t.Context())
			got <- res{m, err}
		}()
	}
	fc := fs.accept()
	var h wire.Hello
	fc.expect(wire.TypeHello, &h)
	if !wire.NewFeatureSet(h.Features...).Has(wire.FeatureMetrics) {
		t.Fatalf("hello features %v lack metrics", h.Features)
	}
	fc.send(0, wire.TypeHello, wire.Hello{Version: int(wire.Version), Software: "fake", Features: []string{wire.FeatureMetrics}})
	for i := range n {
		if f := fc.expect(wire.TypeMetricsRequest, &wire.Empty{}); f.RequestID != 0 {
			t.Fatalf("metrics_request on request %d, want 0", f.RequestID)
		}
		fc.send(0, wire.TypeMetrics, wire.Metrics{Format: wire.MetricsFormat, Text: []byte(strings.Repeat("x", i+1))})
	}
	seen := map[int]bool{}
	for range n {
		select {
		case r := <-got:
			if r.err != nil || r.m.Format != wire.MetricsFormat {
				t.Fatalf("Metrics() = %+v, %v", r.m, r.err)
			}
			seen[len(r.m.Text)] = true
		case <-time.After(patience):
			t.Fatal("Metrics() did not return")
		}
	}
	if len(seen) != n {
		t.Errorf("answers %v, want %d distinct", seen, n)
	}
}

func TestMetricsNotAgreed(t *testing.T) {
	path := socketPath(t)
	fs := startFake(t, path)
	c, _ := newClient(t, path, Config{Features: []string{wire.FeatureMetrics}})
	errc := make(chan error, 1)
	go func() {
		_, err := c.Metrics(t.Context())
		errc <- err
	}()
	fc := fs.accept()
	fc.greet() // agrees to nothing
	select {
	case err := <-errc:
		if !errors.Is(err, ErrFeatureNotAgreed) {
			t.Fatalf("Metrics() = %v, want ErrFeatureNotAgreed", err)
		}
	case <-time.After(patience):
		t.Fatal("Metrics() did not return")
	}
	// An unasked-for metrics frame on that connection breaks it.
	fc.send(0, wire.TypeMetrics, wire.Metrics{Format: wire.MetricsFormat})
	fc.expectClosed()
}
