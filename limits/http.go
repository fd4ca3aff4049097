package limits

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/python-executor/python-executor/wire"
)

// RequestError is a request field the gateway refuses; its text names the
// field and is the invalid_request message.
type RequestError struct{ Message string }

func (e *RequestError) Error() string { return e.Message }

func refuse(format string, args ...any) *RequestError {
	return &RequestError{Message: fmt.Sprintf(format, args...)}
}

// HTTPFields are the request fields of the table, in table order.
func HTTPFields() []string {
	var out []string
	for _, l := range Table {
		if l.HTTP != "" {
			out = append(out, l.HTTP)
		}
	}
	return out
}

// ParseRequest reads the optional limit fields of a request, given as raw
// JSON values by field name (absent and null fields are "not given", left
// zero: the server's default), into wire limits. maxTimeout bounds "timeout"
// (the gateway's -max-timeout); the other fields are only sanity-checked
// here, the supervisor refuses values above its own maxima. Only lowering is
// the contract: each field may lower a server limit, never raise it past the
// maximum.
func ParseRequest(fields map[string]json.RawMessage, maxTimeout time.Duration) (wire.Limits, *RequestError) {
	var w wire.Limits
	for i, l := range Table {
		if l.HTTP == "" {
			continue
		}
		raw, ok := fields[l.HTTP]
		if !ok || string(raw) == "null" {
			continue
		}
		bound := l.HTTPMax
		if i == timeoutIndex {
			bound = maxTimeout.Seconds()
		}
		v, e := l.parseHTTP(raw, bound)
		if e != nil {
			return wire.Limits{}, e
		}
		SetWire(&w, i, v)
	}
	return w, nil
}

var timeoutIndex = Lookup("Timeout")

// parseHTTP converts one request value to wire units. A duration is a JSON
// number of seconds, converted to milliseconds rounded up (so a tiny positive
// value never becomes 0 = "server default"); anything else a JSON integer,
// multiplied by HTTPScale.
func (l Limit) parseHTTP(raw json.RawMessage, bound float64) (int64, *RequestError) {
	isNumber := len(raw) > 0 && (raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9'))
	if l.Unit == Duration {
		if !isNumber {
			return 0, refuse("field %q must be a number of seconds", l.HTTP)
		}
		v, err := strconv.ParseFloat(string(raw), 64)
		if err != nil || math.IsNaN(v) || v <= 0 || v > bound {
			return 0, refuse("field %q must be greater than 0 and at most %s seconds",
				l.HTTP, strconv.FormatFloat(bound, 'f', -1, 64))
		}
		return int64(math.Ceil(v * 1000)), nil
	}
	if !isNumber {
		return 0, refuse("field %q must be an integer", l.HTTP)
	}
	v, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
			return 0, refuse("field %q must be between 1 and %.0f", l.HTTP, bound)
		}
		return 0, refuse("field %q must be an integer", l.HTTP)
	}
	if v < 1 || float64(v) > bound {
		return 0, refuse("field %q must be between 1 and %.0f", l.HTTP, bound)
	}
	return v * l.HTTPScale, nil
}
