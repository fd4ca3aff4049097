package limits

import (
	"encoding/json"
	"flag"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/python-executor/python-executor/config"
	"github.com/python-executor/python-executor/wire"
)

// notPerRequest are the limits a request cannot set, and why. Every other
// entry must have a request field: a limit the API cannot lower is a
// decision, not an omission.
var notPerRequest = map[string]string{
	"tmp_inodes": "the seed API has no field for it; it guards the /tmp tmpfs beside tmp_mb",
}

// Adding a limit is one entry of Table plus its enforcement: this test fails
// when an entry lacks a part (wire key, request field, flag, environment
// variable, unit, default, documentation) or repeats another's, when the
// default is above the maximum or unusable, or when a field of Set or
// wire.Limits has no entry (or two).
func TestTableEntriesAreComplete(t *testing.T) {
	seen := map[string]string{}
	unique := func(kind, name, owner string) {
		t.Helper()
		if name == "" {
			t.Errorf("limit %s has no %s", owner, kind)
			return
		}
		if prev, dup := seen[kind+" "+name]; dup {
			t.Errorf("%s %q is used by limits %s and %s", kind, name, prev, owner)
		}
		seen[kind+" "+name] = owner
	}
	for i, l := range Table {
		unique("Set field", l.Field, l.Wire)
		unique("wire key", l.Wire, l.Field)
		unique("flag", l.Flag, l.Wire)
		unique("flag", l.MaxFlag(), l.Wire)
		unique("environment variable", Env(l.Flag), l.Wire)
		unique("environment variable", Env(l.MaxFlag()), l.Wire)
		if l.Doc == "" || l.Enforced == "" {
			t.Errorf("limit %s: Doc and Enforced say what it limits and how it is enforced", l.Wire)
		}
		if _, exempt := notPerRequest[l.Wire]; l.HTTP == "" && !exempt {
			t.Errorf("limit %s has no request field (or list it in notPerRequest with the reason)", l.Wire)
		}
		if l.HTTP != "" {
			unique("request field", l.HTTP, l.Wire)
			// The timeout's bound is the gateway's -max-timeout.
			if (i != timeoutIndex && l.HTTPMax <= 0) || (l.Unit != Duration && l.HTTPScale <= 0) {
				t.Errorf("limit %s: request field %s needs HTTPMax and HTTPScale", l.Wire, l.HTTP)
			}
		}
		switch l.Unit {
		case Duration:
			if l.FlagScale != 0 || l.HTTPScale != 0 {
				t.Errorf("limit %s: a duration's flag and request units are fixed (Go syntax, seconds); scales are unused", l.Wire)
			}
			if !strings.HasSuffix(l.Wire, "_ms") {
				t.Errorf("limit %s: a duration is milliseconds on the wire; its key says so (_ms)", l.Wire)
			}
		case Bytes, Count:
			if l.FlagScale <= 0 || l.Default%l.FlagScale != 0 {
				t.Errorf("limit %s: default %d is not a whole number of flag units (%d)", l.Wire, l.Default, l.FlagScale)
			}
		default:
			t.Errorf("limit %s has no unit", l.Wire)
		}
		if l.Default <= 0 {
			t.Errorf("limit %s: default %d must be positive", l.Wire, l.Default)
		}
		if l.Max != 0 && l.Max < l.Default {
			t.Errorf("limit %s: default %d above maximum %d", l.Wire, l.Default, l.Max)
		}
		// A request may always ask for the default itself.
		if l.HTTP != "" && l.Unit != Duration && float64(l.Default/l.HTTPScale) > l.HTTPMax {
			t.Errorf("limit %s: the default is above the request field's bound %v", l.Wire, l.HTTPMax)
		}
		if got := Lookup(l.Field); got != i {
			t.Errorf("Lookup(%q) = %d, want %d", l.Field, got, i)
		}
	}
	if err := Defaults().Validate(); err != nil {
		t.Errorf("the table's defaults: %v", err)
	}
	if err := Defaults().Within(Maxima(Defaults())); err != nil {
		t.Errorf("the table's defaults are above its maxima: %v", err)
	}

	// Every field of Set and of wire.Limits belongs to exactly one entry.
	covered := func(typ reflect.Type, key func(reflect.StructField) string, keys func(Limit) string) {
		t.Helper()
		entries := map[string]int{}
		for _, l := range Table {
			entries[keys(l)]++
		}
		for f := range typ.Fields() {
			if entries[key(f)] != 1 {
				t.Errorf("%s.%s (%s) has %d entries in Table, want 1", typ.Name(), f.Name, key(f), entries[key(f)])
			}
		}
		if typ.NumField() != len(Table) {
			t.Errorf("%s has %d fields for %d limits", typ.Name(), typ.NumField(), len(Table))
		}
	}
	covered(reflect.TypeFor[Set](), func(f reflect.StructField) string { return f.Name }, func(l Limit) string { return l.Field })
	covered(reflect.TypeFor[wire.Limits](), func(f reflect.StructField) string {
		tag, _, _ := strings.Cut(f.Tag.Get("msgpack"), ",")
		return tag
	}, func(l Limit) string { return l.Wire })
}

// Every limit is written where operators and clients read about it: the
// wire key in the protocol spec, the request field in the README's table of
// optional fields and in the API reference, the flags and variables in the
// README's configuration table.
func TestTableIsDocumented(t *testing.T) {
	readme := readDoc(t, "../README.md")
	api := readDoc(t, "../gateway/API.md")
	proto := []byte(readDoc(t, "../wire/PROTOCOL.md"))
	for _, l := range Table {
		if !strings.Contains(string(proto), "`"+l.Wire+"`") {
			t.Errorf("PROTOCOL.md does not list the limits key %s", l.Wire)
		}
		if l.HTTP != "" {
			row := "| `" + l.HTTP + "` |"
			if !strings.Contains(readme, row) {
				t.Errorf("README.md has no row %q for limit %s", row, l.Wire)
			}
			if !strings.Contains(api, row) {
				t.Errorf("gateway/API.md has no row %q for limit %s", row, l.Wire)
			}
		}
		for _, name := range []string{"-" + l.Flag + "`", "-" + l.MaxFlag() + "`", "`" + Env(l.Flag) + "`", "`" + Env(l.MaxFlag()) + "`"} {
			if !strings.Contains(readme, name) {
				t.Errorf("README.md does not mention %s (limit %s)", strings.Trim(name, "`"), l.Wire)
			}
		}
	}
}

func readDoc(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// httpUnit is one unit of l's request field, in Set units.
func httpUnit(l Limit) int64 {
	if l.Unit == Duration {
		return int64(time.Second)
	}
	return l.HTTPScale
}

// Each request field travels as the gateway parses it, through a real
// execute frame, to the supervisor's resolution, and arrives as the value it
// asked for in its own Set field; a value above the maximum is refused by
// the gateway (timeout) or by the supervisor, naming the limit.
func TestRoundTripGatewayWireSupervisor(t *testing.T) {
	def := Defaults()
	mx := Maxima(def)
	maxTimeout := time.Duration(mx.Timeout)
	for i, l := range Table {
		if l.HTTP == "" {
			continue
		}
		t.Run(l.HTTP, func(t *testing.T) {
			// Half the default (rounded down to request units, at least
			// one): a lowered limit.
			ask := max(def.Get(i)/httpUnit(l)/2, 1)
			got := roundTrip(t, map[string]json.RawMessage{l.HTTP: json.RawMessage(strconv.FormatInt(ask, 10))}, maxTimeout, def, mx)
			want := def
			want.Put(i, ask*httpUnit(l))
			if got != want {
				t.Errorf("asked %s=%d, got %+v\nwant %+v", l.HTTP, ask, got, want)
			}

			over := mx.Get(i)/httpUnit(l) + 1
			fields := map[string]json.RawMessage{l.HTTP: json.RawMessage(strconv.FormatInt(over, 10))}
			w, e := ParseRequest(fields, maxTimeout)
			if e != nil {
				if i != timeoutIndex || !strings.Contains(e.Message, `"timeout"`) {
					t.Errorf("gateway refused %s=%d: %v", l.HTTP, over, e)
				}
				return
			}
			if _, err := Resolve(wireTrip(t, w), def, mx); err == nil || !strings.Contains(err.Error(), l.Wire) {
				t.Errorf("%s=%d above the maximum: %v, want a refusal naming %s", l.HTTP, over, err, l.Wire)
			}
		})
	}
	// Nothing asked: the defaults.
	if got := roundTrip(t, nil, maxTimeout, def, mx); got != def {
		t.Errorf("no fields: %+v, want the defaults %+v", got, def)
	}
}

func roundTrip(t *testing.T, fields map[string]json.RawMessage, maxTimeout time.Duration, def, mx Set) Set {
	t.Helper()
	w, e := ParseRequest(fields, maxTimeout)
	if e != nil {
		t.Fatalf("gateway: %v", e)
	}
	s, err := Resolve(wireTrip(t, w), def, mx)
	if err != nil {
		t.Fatalf("supervisor: %v", err)
	}
	return s
}

// wireTrip sends w through an execute frame, encoded and decoded as the
// gateway's client and the supervisor's server do.
func wireTrip(t *testing.T, w wire.Limits) wire.Limits {
	t.Helper()
	f, err := wire.NewFrame(1, wire.TypeExecute, wire.Execute{Script: "x", Limits: w})
	if err != nil {
		t.Fatal(err)
	}
	var out wire.Execute
	if err := wire.Unmarshal(f.Body, &out); err != nil {
		t.Fatal(err)
	}
	return out.Limits
}

// The request parser keeps the gateway's messages (the API reference and the
// gateway's tests quote them).
func TestParseRequestMessages(t *testing.T) {
	for _, tc := range []struct{ field, raw, want string }{
		{"timeout", `"5"`, `field "timeout" must be a number of seconds`},
		{"timeout", `31`, `field "timeout" must be greater than 0 and at most 30 seconds`},
		{"timeout", `0`, `field "timeout" must be greater than 0 and at most 30 seconds`},
		{"cpu_seconds", `86401`, `field "cpu_seconds" must be greater than 0 and at most 86400 seconds`},
		{"memory_mb", `1.5`, `field "memory_mb" must be an integer`},
		{"memory_mb", `0`, `field "memory_mb" must be between 1 and 1048576`},
		{"pids", `99999999999999999999`, `field "pids" must be between 1 and 4194304`},
		{"output_bytes", `true`, `field "output_bytes" must be an integer`},
	} {
		_, e := ParseRequest(map[string]json.RawMessage{tc.field: json.RawMessage(tc.raw)}, 30*time.Second)
		if e == nil || e.Message != tc.want {
			t.Errorf("%s=%s: %v, want %q", tc.field, tc.raw, e, tc.want)
		}
	}
	// A tiny positive duration never becomes 0 ("the default").
	w, e := ParseRequest(map[string]json.RawMessage{"timeout": json.RawMessage(`0.0001`)}, 30*time.Second)
	if e != nil || w.TimeoutMS != 1 {
		t.Errorf("timeout 0.0001: %+v %v, want 1 ms", w, e)
	}
}

// Every limit has a default flag and a maximum flag with their variables;
// the flag wins over the variable, a maximum below the default is raised to
// it, an unset maximum follows the table, and a bad value names itself.
func TestFlags(t *testing.T) {
	bind := func(env map[string]string, args ...string) (Set, Set, error) {
		fs := flag.NewFlagSet("supervisor", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		b := config.New(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		f := Bind(b)
		if err := b.Err(); err != nil {
			return Set{}, Set{}, err
		}
		if err := fs.Parse(args); err != nil {
			return Set{}, Set{}, err
		}
		return f.Sets()
	}
	def, mx, err := bind(nil)
	if err != nil || def != Defaults() || mx != Maxima(Defaults()) {
		t.Fatalf("no flags: %+v %+v %v, want the table's defaults and maxima", def, mx, err)
	}
	// Every entry's flags, from the environment and from the command line.
	for i, l := range Table {
		for _, viaEnv := range []bool{true, false} {
			base := Defaults().Get(i)
			step := l.FlagScale
			text := func(v int64) string { return strconv.FormatInt(v/l.FlagScale, 10) }
			if l.Unit == Duration {
				step = int64(time.Second)
				text = func(v int64) string { return time.Duration(v).String() }
			}
			lower, higher := base-step, base+2*step
			env, args := map[string]string{}, []string{}
			if viaEnv {
				env[Env(l.Flag)], env[Env(l.MaxFlag())] = text(lower), text(higher)
			} else {
				args = []string{"-" + l.Flag, text(lower), "-" + l.MaxFlag(), text(higher)}
			}
			def, mx, err := bind(env, args...)
			if err != nil {
				t.Fatalf("%s: %v", l.Flag, err)
			}
			if def.Get(i) != lower || mx.Get(i) != higher {
				t.Errorf("-%s/-%s (env %v): default %d max %d, want %d and %d", l.Flag, l.MaxFlag(), viaEnv, def.Get(i), mx.Get(i), lower, higher)
			}
			// The others keep the table's values.
			for j := range Table {
				if j != i && (def.Get(j) != Defaults().Get(j) || mx.Get(j) != Maxima(Defaults()).Get(j)) {
					t.Errorf("-%s changed limit %s", l.Flag, Table[j].Wire)
				}
			}
		}
	}
	// The flag beats the variable.
	def, _, err = bind(map[string]string{"PYEXEC_MEMORY_MB": "100"}, "-memory-mb", "200")
	if err != nil || def.MemoryBytes != 200<<20 {
		t.Errorf("flag vs env: %d %v, want 200 MiB", def.MemoryBytes, err)
	}
	// Today's rules: -memory-mb alone is the default and the largest; the
	// timeout's maximum stays 30s unless the default is above it; a maximum
	// below the default is raised to it.
	def, mx, _ = bind(nil, "-memory-mb", "256", "-timeout", "10s")
	if def.MemoryBytes != 256<<20 || mx.MemoryBytes != 256<<20 || def.Timeout != 10*time.Second || mx.Timeout != 30*time.Second {
		t.Errorf("-memory-mb 256 -timeout 10s: default %+v max %+v", def, mx)
	}
	_, mx, _ = bind(nil, "-timeout", "60s", "-max-timeout", "10s")
	if mx.Timeout != 60*time.Second {
		t.Errorf("-timeout 60s -max-timeout 10s: max %v, want 60s", mx.Timeout)
	}
	// Bad values name the variable and its value.
	for _, tc := range []struct{ env, value string }{
		{"PYEXEC_TIMEOUT", "30"},
		{"PYEXEC_MAX_MEMORY_MB", "1GiB"},
		{"PYEXEC_PIDS", "many"},
	} {
		_, _, err := bind(map[string]string{tc.env: tc.value})
		if err == nil || !strings.Contains(err.Error(), tc.env) || !strings.Contains(err.Error(), strconv.Quote(tc.value)) {
			t.Errorf("%s=%q: %v, want an error naming both", tc.env, tc.value, err)
		}
	}
	if _, _, err := bind(nil, "-memory-mb", "99999999999999999"); err == nil {
		t.Error("a memory limit that overflows bytes is accepted")
	}
}
