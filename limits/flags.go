package limits

import (
	"fmt"
	"math"
	"time"

	"github.com/python-executor/python-executor/config"
)

// Flags are the supervisor's limit flags once bound: per limit, one for the
// default and one for the maximum.
type Flags struct {
	b        *config.Binder
	def, max []flagValue
}

// flagValue is one limit flag's value in the flag's unit.
type flagValue struct {
	dur time.Duration
	n   int64
}

// Bind registers, for every limit of the table, -<flag> and -max-<flag> with
// their environment variables (Env) on b.
func Bind(b *config.Binder) *Flags {
	f := &Flags{b: b, def: make([]flagValue, len(Table)), max: make([]flagValue, len(Table))}
	def := Defaults()
	mx := Maxima(def)
	for i, l := range Table {
		bindOne(b, &f.def[i], l, l.Flag, def.Get(i), "default "+l.Doc)
		bindOne(b, &f.max[i], l, l.MaxFlag(), mx.Get(i), "maximum of -"+l.Flag+": the largest value a request may ask for (never below the default)")
	}
	return f
}

func bindOne(b *config.Binder, v *flagValue, l Limit, name string, start int64, usage string) {
	if l.Unit == Duration {
		v.dur = time.Duration(start)
		b.Duration(&v.dur, name, Env(name), usage)
		return
	}
	v.n = start / l.FlagScale
	b.Int64(&v.n, name, Env(name), usage)
}

func (v flagValue) value(l Limit, name string) (int64, error) {
	if l.Unit == Duration {
		return int64(v.dur), nil
	}
	if v.n > math.MaxInt64/l.FlagScale || v.n < math.MinInt64/l.FlagScale {
		return 0, fmt.Errorf("-%s %d is too large", name, v.n)
	}
	return v.n * l.FlagScale, nil
}

// Sets are the defaults and maxima the flags ask for; call it after the flag
// set is parsed. A maximum given by neither its flag nor its variable is the
// table's maximum for the default given (see Maxima); a given maximum below
// the default is raised to it, so the default is always allowed.
func (f *Flags) Sets() (def, maxima Set, err error) {
	for i, l := range Table {
		v, err := f.def[i].value(l, l.Flag)
		if err != nil {
			return Set{}, Set{}, err
		}
		def.Put(i, v)
	}
	maxima = Maxima(def)
	for i, l := range Table {
		if !f.b.Given(l.MaxFlag()) {
			continue
		}
		v, err := f.max[i].value(l, l.MaxFlag())
		if err != nil {
			return Set{}, Set{}, err
		}
		maxima.Put(i, max(v, def.Get(i)))
	}
	return def, maxima, nil
}
