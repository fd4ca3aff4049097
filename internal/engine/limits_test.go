package engine

import (
	"strings"
	"testing"
	"time"
)

// Every limit of a LimitSet must be positive; the error names the one that
// is not by its wire key.
func TestLimitSetValidate(t *testing.T) {
	if err := DefaultLimits().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	l := DefaultLimits()
	l.ResultBytes = 0
	if err := l.Validate(); err == nil || !strings.Contains(err.Error(), "result_bytes") {
		t.Errorf("zero result limit: %v, want an error naming result_bytes", err)
	}
	l = DefaultLimits()
	l.Timeout = time.Microsecond
	if err := l.Validate(); err == nil {
		t.Error("a 1µs timeout is accepted")
	}
}
