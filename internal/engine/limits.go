package engine

import (
	"reflect"

	"github.com/python-executor/python-executor/internal/jail"
	"github.com/python-executor/python-executor/limits"
	"github.com/python-executor/python-executor/wire"
)

// ResolveLimits fills a request's zero limits from def and refuses negative
// values and values above max, naming the field (see limits.Resolve).
func ResolveLimits(req wire.Limits, def, max LimitSet) (LimitSet, *wire.Error) {
	l, err := limits.Resolve(req, def.Set, max.Set)
	if err != nil {
		return LimitSet{}, &wire.Error{Type: wire.ErrInvalidRequest, Message: err.Error()}
	}
	return LimitSet{l}, nil
}

// jailFields maps each entry of the limit table that the jail enforces
// (Limit.Jail) to its field of jail.Limits, resolved once; an entry naming a
// field jail.Limits lacks is a programming error caught at start-up (and by
// TestLimitTableFillsJailLimits).
var jailFields = func() map[int]int {
	t := reflect.TypeFor[jail.Limits]()
	out := map[int]int{}
	for i, l := range limits.Table {
		if l.Jail == "" {
			continue
		}
		f, ok := t.FieldByName(l.Jail)
		if !ok {
			panic("supervisor: jail.Limits has no field " + l.Jail + " for limit " + l.Wire)
		}
		out[i] = f.Index[0]
	}
	return out
}()

// JailLimits is the part of l the jail enforces, filled from the limit
// table.
func (l LimitSet) JailLimits() jail.Limits {
	var j jail.Limits
	v := reflect.ValueOf(&j).Elem()
	for i, f := range jailFields {
		v.Field(f).SetInt(l.Get(i))
	}
	return j
}
