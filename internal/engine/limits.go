package engine

import (
	"fmt"
	"time"

	"github.com/python-executor/python-executor/jail"
	"github.com/python-executor/python-executor/supervisor/wire"
)

// limitField ties one wire limit to its LimitSet field, so resolving, bounding
// and rendering walk a single table.
type limitField struct {
	name string // the wire key, for error messages
	unit int64  // wire units per LimitSet unit (ms fields: 1ms in ns)
	wire func(*wire.Limits) int64
}

var limitFields = []limitField{
	{"timeout_ms", int64(time.Millisecond), func(w *wire.Limits) int64 { return w.TimeoutMS }},
	{"memory_bytes", 1, func(w *wire.Limits) int64 { return w.MemoryBytes }},
	{"pids", 1, func(w *wire.Limits) int64 { return w.Pids }},
	{"cpu_ms", int64(time.Millisecond), func(w *wire.Limits) int64 { return w.CPUMS }},
	{"file_size_bytes", 1, func(w *wire.Limits) int64 { return w.FileSizeBytes }},
	{"open_files", 1, func(w *wire.Limits) int64 { return w.OpenFiles }},
	{"tmp_bytes", 1, func(w *wire.Limits) int64 { return w.TmpBytes }},
	{"tmp_inodes", 1, func(w *wire.Limits) int64 { return w.TmpInodes }},
	{"output_bytes", 1, func(w *wire.Limits) int64 { return w.OutputBytes }},
	{"result_bytes", 1, func(w *wire.Limits) int64 { return w.ResultBytes }},
}

// values flattens l into the order of limitFields, in LimitSet units.
func (l LimitSet) values() []int64 {
	return []int64{
		int64(l.Timeout), l.MemoryBytes, int64(l.Pids), int64(l.CPUTime),
		l.FileSizeBytes, int64(l.OpenFiles), l.TmpBytes, int64(l.TmpInodes),
		l.OutputBytes, l.ResultBytes,
	}
}

func limitSetFrom(v []int64) LimitSet {
	return LimitSet{
		Timeout: time.Duration(v[0]), MemoryBytes: v[1], Pids: int(v[2]), CPUTime: time.Duration(v[3]),
		FileSizeBytes: v[4], OpenFiles: int(v[5]), TmpBytes: v[6], TmpInodes: int(v[7]),
		OutputBytes: v[8], ResultBytes: v[9],
	}
}

// Within reports the first limit of l above max.
func (l LimitSet) Within(max LimitSet) error {
	lv, mv := l.values(), max.values()
	for i, f := range limitFields {
		if lv[i] > mv[i] {
			return fmt.Errorf("%s %d above %d", f.name, lv[i]/f.unit, mv[i]/f.unit)
		}
	}
	return nil
}

// ResolveLimits fills a request's zero limits from def and refuses negative
// values and values above max, naming the field.
func ResolveLimits(req wire.Limits, def, max LimitSet) (LimitSet, *wire.Error) {
	dv, mv := def.values(), max.values()
	out := make([]int64, len(limitFields))
	for i, f := range limitFields {
		w := f.wire(&req)
		switch {
		case w < 0:
			return LimitSet{}, &wire.Error{Type: wire.ErrInvalidRequest, Message: fmt.Sprintf("limit %s must not be negative", f.name)}
		case w == 0:
			out[i] = dv[i]
		case w > mv[i]/f.unit:
			return LimitSet{}, &wire.Error{Type: wire.ErrInvalidRequest, Message: fmt.Sprintf("limit %s=%d is above the server maximum %d", f.name, w, mv[i]/f.unit)}
		default:
			out[i] = w * f.unit
		}
	}
	return limitSetFrom(out), nil
}

// JailLimits is the part of l the jail enforces.
func (l LimitSet) JailLimits() jail.Limits {
	return jail.Limits{
		Wall:          l.Timeout,
		MemoryBytes:   l.MemoryBytes,
		Pids:          l.Pids,
		CPUTime:       l.CPUTime,
		FileSizeBytes: l.FileSizeBytes,
		OpenFiles:     l.OpenFiles,
		TmpBytes:      l.TmpBytes,
		TmpInodes:     l.TmpInodes,
	}
}
