package bench

import (
	"math"
	"testing"
	"time"
)

func durations(ms ...int) []time.Duration {
	d := make([]time.Duration, len(ms))
	for i, m := range ms {
		d[i] = time.Duration(m) * time.Millisecond
	}
	return d
}

func TestPercentile(t *testing.T) {
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1 // 1..100 ms
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one sample p50", durations(7), 50, 7 * time.Millisecond},
		{"one sample p99", durations(7), 99, 7 * time.Millisecond},
		{"two samples p50 is the lower", durations(1, 2), 50, 1 * time.Millisecond},
		{"two samples p51 is the upper", durations(1, 2), 51, 2 * time.Millisecond},
		{"odd count p50 is the middle", durations(1, 2, 3, 4, 5), 50, 3 * time.Millisecond},
		{"1..100 p50", durations(hundred...), 50, 50 * time.Millisecond},
		{"1..100 p90", durations(hundred...), 90, 90 * time.Millisecond},
		{"1..100 p99", durations(hundred...), 99, 99 * time.Millisecond},
		{"1..100 p100", durations(hundred...), 100, 100 * time.Millisecond},
		{"ten samples p99 is the maximum", durations(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
		{"tiny p is the minimum", durations(4, 5, 6), 0.001, 4 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tt.sorted, tt.p, got, tt.want)
			}
		})
	}
}

func TestSummarizeSortsACopy(t *testing.T) {
	in := durations(30, 10, 20, 50, 40)
	got := summarize(in)
	want := Percentiles{P50: 30 * time.Millisecond, P90: 50 * time.Millisecond, P99: 50 * time.Millisecond}
	if got != want {
		t.Errorf("summarize(%v) = %+v, want %+v", in, got, want)
	}
	if in[0] != 30*time.Millisecond || in[1] != 10*time.Millisecond {
		t.Errorf("summarize reordered its input: %v", in)
	}
}

func TestRatio(t *testing.T) {
	tests := []struct {
		a, b   float64
		want   float64
		wantOK bool
	}{
		{1, 4, 0.25, true},
		{10, 2, 5, true},
		{0, 2, 0, false},
		{2, 0, 0, false},
		{-1, 2, 0, false},
		{math.NaN(), 2, 0, false},
		{math.Inf(1), 2, 0, false},
	}
	for _, tt := range tests {
		got, ok := ratio(tt.a, tt.b)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("ratio(%v, %v) = %v, %v, want %v, %v", tt.a, tt.b, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestFormatRatio(t *testing.T) {
	tests := []struct {
		r    float64
		want string
	}{
		{0, "—"},
		{-0.5, "—"},
		{math.NaN(), "—"},
		{math.Inf(1), "—"},
		{0.0042, "0.0042"},
		{0.031, "0.031"},
		{0.0999, "0.100"},
		{0.1, "0.10"},
		{0.123, "0.12"},
		{1, "1.00"},
		{3.456, "3.46"},
		{12.34, "12.3"},
		{456.7, "457"},
	}
	for _, tt := range tests {
		if got := formatRatio(tt.r); got != tt.want {
			t.Errorf("formatRatio(%v) = %q, want %q", tt.r, got, tt.want)
		}
	}
}

func TestFmtMs(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{31234 * time.Microsecond, "31.2"},
		{950 * time.Microsecond, "0.9"},
		{345600 * time.Microsecond, "346"},
	}
	for _, tt := range tests {
		if got := fmtMs(tt.d); got != tt.want {
			t.Errorf("fmtMs(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}
