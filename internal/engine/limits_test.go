package engine

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/python-executor/python-executor/limits"
	"github.com/python-executor/python-executor/wire"
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

// jail.Limits is filled from the limit table: each of its fields is named by
// exactly one entry (Limit.Jail) and carries that limit's value, so a limit
// the jail enforces cannot be added to the table and forgotten here.
func TestLimitTableFillsJailLimits(t *testing.T) {
	var l LimitSet
	for i := range limits.Table {
		l.Put(i, int64(1000+i)) // distinct values: a swapped field shows
	}
	j := reflect.ValueOf(l.JailLimits())
	named := map[string]int{}
	for i, e := range limits.Table {
		if e.Jail == "" {
			continue
		}
		named[e.Jail]++
		if got := j.FieldByName(e.Jail).Int(); got != int64(1000+i) {
			t.Errorf("jail.Limits.%s = %d, want %d (limit %s)", e.Jail, got, 1000+i, e.Wire)
		}
	}
	for f := range j.Type().Fields() {
		if named[f.Name] != 1 {
			t.Errorf("jail.Limits.%s is filled by %d entries of the limit table, want 1", f.Name, named[f.Name])
		}
	}
}

// A request's limits resolve through the table, with the supervisor's
// messages.
func TestResolveLimits(t *testing.T) {
	def := DefaultLimits()
	got, err := ResolveLimits(wire.Limits{TimeoutMS: 1500, Pids: 8}, def, def)
	if err != nil || got.Timeout != 1500*time.Millisecond || got.Pids != 8 || got.MemoryBytes != def.MemoryBytes {
		t.Errorf("resolve: %+v %v", got, err)
	}
	if _, err := ResolveLimits(wire.Limits{MemoryBytes: def.MemoryBytes + 1}, def, def); err == nil || err.Type != wire.ErrInvalidRequest ||
		err.Message != "limit memory_bytes=536870913 is above the server maximum 536870912" {
		t.Errorf("above max: %v", err)
	}
	if _, err := ResolveLimits(wire.Limits{CPUMS: -1}, def, def); err == nil || err.Message != "limit cpu_ms must not be negative" {
		t.Errorf("negative: %v", err)
	}
}
