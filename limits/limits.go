// Package limits is the one table of per-execution limits. Each limit is
// declared once, in Table: its field in Set, the wire key, the HTTP request
// field, the unit, the default and maximum, the supervisor's flag and
// environment variable, and where it is enforced. Everything else is derived
// from the table: the gateway's parsing of the optional request fields, the
// supervisor's resolution of a request against its defaults and maxima, the
// supervisor's flags, and the jail.Limits the jail enforces.
//
// Adding a limit is one entry here, a field of Set, wire.Limits and (when the
// jail enforces it) jail.Limits, plus its enforcement. The tests of this
// package and of the supervisor fail when a field has no entry or an entry
// no field, when a flag, variable or request field is missing or named
// twice, or when the README and API reference do not list it.
//
// The package is public and unprivileged: the gateway imports it.
package limits

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/python-executor/python-executor/wire"
)

// Unit is how a limit is counted.
type Unit int

const (
	// Duration: nanoseconds in a Set, milliseconds on the wire, seconds (a
	// JSON number) over HTTP, Go syntax ("30s") for flags.
	Duration Unit = iota + 1
	// Bytes: bytes in a Set and on the wire; HTTPScale and FlagScale say
	// the unit of the request field and of the flag (MiB, KiB).
	Bytes
	// Count: a number of things (processes, files, inodes).
	Count
)

// Limit is one entry of the table.
type Limit struct {
	// Field is the limit's field in Set.
	Field string
	// Unit is how it is counted.
	Unit Unit
	// Wire is its key in wire.Limits (the msgpack tag), also the name used
	// in the supervisor's error messages.
	Wire string
	// HTTP is the optional request field that may lower it; "" = not
	// settable per request.
	HTTP string
	// HTTPScale is how many wire units one unit of the request field is
	// (MiB fields: 1<<20). Duration fields are seconds and need none.
	HTTPScale int64
	// HTTPMax is the largest value the gateway accepts, in the request
	// field's unit: a sanity bound, the supervisor refuses anything above
	// its own maximum. The timeout's bound is the gateway's -max-timeout.
	HTTPMax float64
	// Default is what an execution gets when it asks for nothing, in Set
	// units.
	Default int64
	// Max is the largest value a request may ask for, in Set units; 0 =
	// the default (a request may only lower it). The supervisor's max flag
	// raises it.
	Max int64
	// Flag is the supervisor flag that sets the default; "max-"+Flag sets
	// the maximum. The environment variables are EnvPrefix plus the flag
	// name in upper case with '_' for '-' (PYEXEC_MEMORY_MB,
	// PYEXEC_MAX_MEMORY_MB).
	Flag string
	// FlagScale is how many Set units one unit of the flag is (-memory-mb:
	// 1<<20). Duration flags use Go syntax and need none.
	FlagScale int64
	// Jail is the jail.Limits field the jail enforces it through; "" = the
	// supervisor enforces it alone.
	Jail string
	// Doc says what is limited, as a noun phrase for the flag's usage
	// ("default "+Doc).
	Doc string
	// Enforced says how it is enforced.
	Enforced string
}

// EnvPrefix prefixes every environment variable of the service.
const EnvPrefix = "PYEXEC_"

const (
	kib = 1 << 10
	mib = 1 << 20
)

// Table is every limit, in the order the supervisor checks them (the order
// of wire.Limits).
var Table = []Limit{
	{
		Field: "Timeout", Unit: Duration, Wire: "timeout_ms", HTTP: "timeout",
		Default: int64(30 * time.Second), Max: int64(30 * time.Second),
		Flag: "timeout", Jail: "Wall",
		Doc:      "wall-clock limit of an execution",
		Enforced: "the supervisor's deadline (millisecond precision); nsjail's time_limit as a backstop",
	},
	{
		Field: "MemoryBytes", Unit: Bytes, Wire: "memory_bytes", HTTP: "memory_mb", HTTPScale: mib, HTTPMax: 1 << 20,
		Default: 512 * mib, Flag: "memory-mb", FlagScale: mib, Jail: "MemoryBytes",
		Doc:      "memory limit, in MiB",
		Enforced: "the memory cgroup; without cgroups RLIMIT_AS and the supervisor's memory watch",
	},
	{
		Field: "Pids", Unit: Count, Wire: "pids", HTTP: "pids", HTTPScale: 1, HTTPMax: 1 << 22,
		Default: 64, Flag: "pids", FlagScale: 1, Jail: "Pids",
		Doc:      "limit of processes and threads",
		Enforced: "the pids cgroup; without cgroups RLIMIT_NPROC of a uid per execution",
	},
	{
		Field: "CPUTime", Unit: Duration, Wire: "cpu_ms", HTTP: "cpu_seconds", HTTPMax: 86400,
		Default: int64(60 * time.Second), Flag: "cpu-time", Jail: "CPUTime",
		Doc:      "CPU-time limit",
		Enforced: "RLIMIT_CPU, whole seconds",
	},
	{
		Field: "FileSizeBytes", Unit: Bytes, Wire: "file_size_bytes", HTTP: "file_size_mb", HTTPScale: mib, HTTPMax: 1 << 20,
		Default: 64 * mib, Flag: "file-size-mb", FlagScale: mib, Jail: "FileSizeBytes",
		Doc:      "limit of the largest file an execution may write, in MiB",
		Enforced: "RLIMIT_FSIZE, whole MiB",
	},
	{
		Field: "OpenFiles", Unit: Count, Wire: "open_files", HTTP: "open_files", HTTPScale: 1, HTTPMax: 1 << 20,
		Default: 256, Flag: "open-files", FlagScale: 1, Jail: "OpenFiles",
		Doc:      "limit of open file descriptors",
		Enforced: "RLIMIT_NOFILE",
	},
	{
		Field: "TmpBytes", Unit: Bytes, Wire: "tmp_bytes", HTTP: "tmp_mb", HTTPScale: mib, HTTPMax: 1 << 20,
		Default: 64 * mib, Flag: "tmp-mb", FlagScale: mib, Jail: "TmpBytes",
		Doc:      "size of the private /tmp, in MiB",
		Enforced: "the size of the /tmp tmpfs; in the container tier the supervisor's watch of the uid's files",
	},
	{
		Field: "TmpInodes", Unit: Count, Wire: "tmp_inodes",
		Default: 4096, Flag: "tmp-inodes", FlagScale: 1, Jail: "TmpInodes",
		Doc:      "number of files (inodes) of the private /tmp",
		Enforced: "the inodes of the /tmp tmpfs; in the container tier the supervisor's watch of the uid's files",
	},
	{
		Field: "OutputBytes", Unit: Bytes, Wire: "output_bytes", HTTP: "output_bytes", HTTPScale: 1, HTTPMax: 1 << 40,
		Default: 1 * mib, Flag: "output-kb", FlagScale: kib,
		Doc:      "output kept per stream (stdout and stderr, each), in KiB",
		Enforced: "the supervisor keeps that much of each stream and drops the rest",
	},
	{
		Field: "ResultBytes", Unit: Bytes, Wire: "result_bytes", HTTP: "result_bytes", HTTPScale: 1, HTTPMax: 1 << 40,
		Default: 8 * mib, Flag: "result-kb", FlagScale: kib,
		Doc:      "limit of the encoded result, in KiB",
		Enforced: "the runner refuses a larger result; the supervisor caps what it reads",
	},
	// The caps of args and files. The output files' with the result limit
	// and the images' cap must fit one frame (wire.DefaultMaxFrame, 16 MiB): the supervisor checks it at
	// start-up, and the gateway's body limit grows by what args and files
	// may take.
	{
		Field: "ArgsBytes", Unit: Bytes, Wire: "args_bytes", HTTP: "args_bytes", HTTPScale: 1, HTTPMax: 1 << 40,
		Default: 1 * mib, Flag: "args-kb", FlagScale: kib,
		Doc:      "limit of the JSON text of args, in KiB",
		Enforced: "the supervisor refuses larger args (invalid_request)",
	},
	{
		Field: "FilesInCount", Unit: Count, Wire: "files_in_count", HTTP: "files_count", HTTPScale: 1, HTTPMax: 1 << 20,
		Default: 64, Flag: "files-in-count", FlagScale: 1,
		Doc:      "limit of the number of input files",
		Enforced: "the supervisor refuses more files (invalid_request)",
	},
	{
		Field: "FilesInBytes", Unit: Bytes, Wire: "files_in_bytes", HTTP: "files_bytes", HTTPScale: 1, HTTPMax: 1 << 40,
		Default: 8 * mib, Flag: "files-in-kb", FlagScale: kib,
		Doc:      "limit of the total size of the input files (decoded), in KiB",
		Enforced: "the supervisor refuses larger files (invalid_request); they are written to /tmp, inside its size limit",
	},
	{
		Field: "FilesOutCount", Unit: Count, Wire: "files_out_count", HTTP: "output_files_count", HTTPScale: 1, HTTPMax: 1 << 20,
		Default: 64, Flag: "files-out-count", FlagScale: 1,
		Doc:      "limit of the number of output files returned",
		Enforced: "the runner stops collecting (truncated.files); the supervisor refuses more",
	},
	{
		Field: "FilesOutBytes", Unit: Bytes, Wire: "files_out_bytes", HTTP: "output_files_bytes", HTTPScale: 1, HTTPMax: 1 << 40,
		// 3 MiB: with the result's 8 MiB, the names and the images' 4 MiB
		// it fits the clients' 16 MiB frame (supervisor Config.Validate).
		Default: 3 * mib, Flag: "files-out-kb", FlagScale: kib,
		Doc:      "limit of the total size of the output files returned, in KiB",
		Enforced: "the runner skips files past it by their size, unread (truncated.files); the supervisor caps what it reads",
	},
}

// Set is one full set of per-execution limits, in their natural Go units.
// Every field has exactly one entry in Table.
type Set struct {
	Timeout       time.Duration
	MemoryBytes   int64
	Pids          int
	CPUTime       time.Duration
	FileSizeBytes int64
	OpenFiles     int
	TmpBytes      int64
	TmpInodes     int
	OutputBytes   int64 // kept per stream (stdout, stderr); the rest is dropped
	ResultBytes   int64
	ArgsBytes     int64 // the JSON text of args
	FilesInCount  int
	FilesInBytes  int64 // decoded, summed over the input files
	FilesOutCount int
	FilesOutBytes int64 // summed over the output files
}

// index holds, per Table entry, the field indexes in Set and wire.Limits,
// resolved once so that reading and writing a field costs no name lookup.
var index = func() []struct{ set, wire int } {
	out := make([]struct{ set, wire int }, len(Table))
	st, wt := reflect.TypeFor[Set](), reflect.TypeFor[wire.Limits]()
	for i, l := range Table {
		f, ok := st.FieldByName(l.Field)
		if !ok {
			panic("limits: Set has no field " + l.Field)
		}
		out[i].set, out[i].wire = f.Index[0], -1
		for j := range wt.NumField() {
			if tag, _, _ := strings.Cut(wt.Field(j).Tag.Get("msgpack"), ","); tag == l.Wire {
				out[i].wire = j
			}
		}
		if out[i].wire < 0 {
			panic("limits: wire.Limits has no key " + l.Wire)
		}
	}
	return out
}()

// Get returns limit i of Table from s, in Set units.
func (s Set) Get(i int) int64 { return reflect.ValueOf(s).Field(index[i].set).Int() }

// Put stores v (Set units) as limit i of Table in s.
func (s *Set) Put(i int, v int64) { reflect.ValueOf(s).Elem().Field(index[i].set).SetInt(v) }

// WireValue returns limit i of Table from w, in wire units.
func WireValue(w wire.Limits, i int) int64 { return reflect.ValueOf(w).Field(index[i].wire).Int() }

// SetWire stores v (wire units) as limit i of Table in w.
func SetWire(w *wire.Limits, i int, v int64) {
	reflect.ValueOf(w).Elem().Field(index[i].wire).SetInt(v)
}

// Lookup returns the index in Table of the limit whose Set field is field;
// it panics on an unknown name (a programming error).
func Lookup(field string) int {
	for i, l := range Table {
		if l.Field == field {
			return i
		}
	}
	panic("limits: no limit " + field)
}

// WireUnit is how many Set units one wire unit is.
func (l Limit) WireUnit() int64 {
	if l.Unit == Duration {
		return int64(time.Millisecond)
	}
	return 1
}

// Env is the environment variable of a flag name.
func Env(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// MaxFlag is the name of the flag that sets l's maximum.
func (l Limit) MaxFlag() string { return "max-" + l.Flag }

// Defaults are the limits an execution gets when it asks for nothing.
func Defaults() Set {
	var s Set
	for i, l := range Table {
		s.Put(i, l.Default)
	}
	return s
}

// Maxima are the table's maxima for the defaults def: an entry's Max where
// it has one and it is not below the default, else the default.
func Maxima(def Set) Set {
	m := def
	for i, l := range Table {
		m.Put(i, max(l.Max, def.Get(i)))
	}
	return m
}

// Validate reports a limit that is not positive.
func (s Set) Validate() error {
	for i, l := range Table {
		if v := s.Get(i); v <= 0 {
			return fmt.Errorf("limit %s must be positive, got %d", l.Wire, v)
		}
	}
	if s.Timeout < time.Millisecond {
		return fmt.Errorf("limit timeout must be at least 1ms")
	}
	return nil
}

// Within reports the first limit of s above max, in wire units.
func (s Set) Within(max Set) error {
	for i, l := range Table {
		if v, m := s.Get(i), max.Get(i); v > m {
			return fmt.Errorf("%s %d above %d", l.Wire, v/l.WireUnit(), m/l.WireUnit())
		}
	}
	return nil
}

// Resolve fills a request's zero limits from def and refuses negative values
// and values above max, naming the wire key. The error is the request's
// fault (the supervisor answers invalid_request with its text).
func Resolve(req wire.Limits, def, max Set) (Set, error) {
	var out Set
	for i, l := range Table {
		w, unit := WireValue(req, i), l.WireUnit()
		switch {
		case w < 0:
			return Set{}, fmt.Errorf("limit %s must not be negative", l.Wire)
		case w == 0:
			out.Put(i, def.Get(i))
		case w > max.Get(i)/unit:
			return Set{}, fmt.Errorf("limit %s=%d is above the server maximum %d", l.Wire, w, max.Get(i)/unit)
		default:
			out.Put(i, w*unit)
		}
	}
	return out, nil
}

// ToWire is s as a request asking for exactly s (durations rounded down to
// whole milliseconds).
func (s Set) ToWire() wire.Limits {
	var w wire.Limits
	for i, l := range Table {
		SetWire(&w, i, s.Get(i)/l.WireUnit())
	}
	return w
}
