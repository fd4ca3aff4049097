// Package config binds command-line flags to environment variables for both
// binaries (cmd/gateway and cmd/supervisor), so that the two read their
// settings the same way: a flag's default comes from its environment variable
// when that is set, else from the built-in default, so the precedence is flag,
// then environment, then default.
//
// A variable whose value does not parse is an error naming the variable and
// the value, never silently ignored: an operator who writes
// PYEXEC_TIMEOUT=30 (no unit) must learn it at start-up, not run with a
// different limit than the one they asked for.
package config

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Lookup reads one environment variable: its value and whether it is set
// (os.LookupEnv's shape).
type Lookup func(name string) (string, bool)

// Getenv adapts a getenv-style function (where "" means unset) to a Lookup.
func Getenv(getenv func(string) string) Lookup {
	return func(name string) (string, bool) {
		v := getenv(name)
		return v, v != ""
	}
}

// Binder registers flags on a FlagSet with their environment fallbacks and
// collects the environment values that do not parse.
type Binder struct {
	fs      *flag.FlagSet
	lookup  Lookup
	errs    []error
	fromEnv map[string]bool // flags whose variable gave their default
}

// New returns a Binder that registers on fs and reads the environment
// through lookup.
func New(fs *flag.FlagSet, lookup Lookup) *Binder {
	return &Binder{fs: fs, lookup: lookup, fromEnv: map[string]bool{}}
}

// Given reports whether the flag got its value from the command line or
// from its environment variable (not from the built-in default). Call it
// after the flag set is parsed.
func (b *Binder) Given(flagName string) bool {
	if b.fromEnv[flagName] {
		return true
	}
	given := false
	b.fs.Visit(func(f *flag.Flag) { given = given || f.Name == flagName })
	return given
}

// FlagSet is the set the Binder registers on.
func (b *Binder) FlagSet() *flag.FlagSet { return b.fs }

// Env returns the variable's value with surrounding space trimmed, and
// whether it is set to something other than blanks. A blank value counts as
// unset: "PYEXEC_X=" in a manifest means "no setting", as it did for the
// gateway.
func (b *Binder) Env(name string) (string, bool) {
	v, ok := b.lookup(name)
	if !ok {
		return "", false
	}
	v = strings.TrimSpace(v)
	return v, v != ""
}

// Err reports every environment value that did not parse, joined, or nil.
func (b *Binder) Err() error { return errors.Join(b.errs...) }

// Fail records an error about the variable name holding value v; what says
// what was wanted (e.g. "not a duration").
func (b *Binder) Fail(name, v, what string) {
	b.errs = append(b.errs, &EnvError{Name: name, Value: v, Problem: what})
}

// EnvError is an environment variable whose value is unusable.
type EnvError struct {
	Name, Value, Problem string
}

func (e *EnvError) Error() string {
	return fmt.Sprintf("environment variable %s=%q: %s", e.Name, e.Value, e.Problem)
}

func usage(text, env string) string {
	if env == "" {
		return text
	}
	return text + " (env " + env + ")"
}

// String binds a string flag; a blank variable leaves the default.
func (b *Binder) String(p *string, flagName, env, text string) {
	if v, ok := b.Env(env); ok {
		*p = v
		b.fromEnv[flagName] = true
	}
	b.fs.StringVar(p, flagName, *p, usage(text, env))
}

// StringAllowEmpty binds a string flag whose empty value means something
// (e.g. "no modules"): a variable that is set, even to "", wins over the
// default.
func (b *Binder) StringAllowEmpty(p *string, flagName, env, text string) {
	if v, ok := b.lookup(env); ok {
		*p = strings.TrimSpace(v)
		b.fromEnv[flagName] = true
	}
	b.fs.StringVar(p, flagName, *p, usage(text, env))
}

// Int binds an int flag.
func (b *Binder) Int(p *int, flagName, env, text string) {
	if v, ok := b.Env(env); ok {
		if n, err := strconv.Atoi(v); err != nil {
			b.Fail(env, v, "not an integer")
		} else {
			*p = n
			b.fromEnv[flagName] = true
		}
	}
	b.fs.IntVar(p, flagName, *p, usage(text, env))
}

// Int64 binds an int64 flag.
func (b *Binder) Int64(p *int64, flagName, env, text string) {
	if v, ok := b.Env(env); ok {
		if n, err := strconv.ParseInt(v, 10, 64); err != nil {
			b.Fail(env, v, "not an integer")
		} else {
			*p = n
			b.fromEnv[flagName] = true
		}
	}
	b.fs.Int64Var(p, flagName, *p, usage(text, env))
}

// Duration binds a duration flag in Go syntax ("30s", "500ms").
func (b *Binder) Duration(p *time.Duration, flagName, env, text string) {
	if v, ok := b.Env(env); ok {
		if d, err := time.ParseDuration(v); err != nil {
			b.Fail(env, v, "not a duration (want Go syntax with a unit, e.g. 30s or 500ms)")
		} else {
			*p = d
			b.fromEnv[flagName] = true
		}
	}
	b.fs.DurationVar(p, flagName, *p, usage(text, env))
}

// Bool binds a boolean flag. The variable takes 1/0, true/false (what
// strconv.ParseBool reads); anything else is an error rather than "off".
func (b *Binder) Bool(p *bool, flagName, env, text string) {
	if v, ok := b.Env(env); ok {
		if x, err := strconv.ParseBool(v); err != nil {
			b.Fail(env, v, "not a boolean (want 1 or 0, true or false)")
		} else {
			*p = x
			b.fromEnv[flagName] = true
		}
	}
	b.fs.BoolVar(p, flagName, *p, usage(text, env))
}
