package config

import (
	"flag"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"
)

type vals struct {
	s, e string
	i    int
	i64  int64
	d    time.Duration
	b    bool
	fs   *flag.FlagSet
	b2   *Binder
}

func bind(env map[string]string) (*vals, error) {
	v := &vals{s: "def", e: "empty-def", i: 1, i64: 2, d: time.Second}
	v.fs = flag.NewFlagSet("t", flag.ContinueOnError)
	v.fs.SetOutput(io.Discard)
	b := New(v.fs, func(k string) (string, bool) { x, ok := env[k]; return x, ok })
	b.String(&v.s, "s", "X_S", "a string")
	b.StringAllowEmpty(&v.e, "e", "X_E", "a string that may be empty")
	b.Int(&v.i, "i", "X_I", "an int")
	b.Int64(&v.i64, "i64", "X_I64", "an int64")
	b.Duration(&v.d, "d", "X_D", "a duration")
	b.Bool(&v.b, "b", "X_B", "a bool")
	v.b2 = b
	return v, b.Err()
}

// The variable is the flag's default; the flag wins; unset or blank
// variables leave the built-in default.
func TestPrecedence(t *testing.T) {
	v, err := bind(nil)
	if err != nil || v.s != "def" || v.e != "empty-def" || v.i != 1 || v.i64 != 2 || v.d != time.Second || v.b {
		t.Fatalf("defaults: %+v %v", v, err)
	}
	v, err = bind(map[string]string{"X_S": " env ", "X_E": "", "X_I": "7", "X_I64": "-8", "X_D": "1m", "X_B": "1"})
	if err != nil || v.s != "env" || v.e != "" || v.i != 7 || v.i64 != -8 || v.d != time.Minute || !v.b {
		t.Fatalf("environment: %+v %v", v, err)
	}
	if !v.b2.Given("i") || v.b2.Given("nope") {
		t.Error("Given does not report the variables that were used")
	}
	if err := v.fs.Parse([]string{"-s", "flag", "-i", "9", "-d", "2s", "-b=false"}); err != nil {
		t.Fatal(err)
	}
	if v.s != "flag" || v.i != 9 || v.d != 2*time.Second || v.b {
		t.Fatalf("flags: %+v", v)
	}
	v, _ = bind(map[string]string{"X_S": "  ", "X_I": ""})
	if v.s != "def" || v.i != 1 || v.b2.Given("s") {
		t.Errorf("blank variables: %+v, want the defaults", v)
	}
	_ = v.fs.Parse([]string{"-s", "x"})
	if !v.b2.Given("s") {
		t.Error("Given does not report a flag on the command line")
	}
}

// A value that does not parse is an error naming the variable and the value
// (never silently the default), one per bad variable.
func TestBadValuesFailLoudly(t *testing.T) {
	bad := map[string]string{"X_I": "ten", "X_I64": "1e3", "X_D": "30", "X_B": "yes"}
	_, err := bind(bad)
	if err == nil {
		t.Fatal("bad values accepted")
	}
	for k, val := range bad {
		if !strings.Contains(err.Error(), k+"="+strconv.Quote(val)) {
			t.Errorf("error %q does not name %s=%q", err, k, val)
		}
	}
	for k, val := range bad {
		_, err := bind(map[string]string{k: val})
		if err == nil || strings.Count(err.Error(), "environment variable") != 1 {
			t.Errorf("%s=%q alone: %v", k, val, err)
		}
	}
}
