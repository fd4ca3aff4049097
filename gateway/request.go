package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"strconv"
	"strings"
	"time"

	"github.com/python-executor/python-executor/supervisor/wire"
)

// checkContentType accepts application/json with an optional charset
// parameter, which must then be UTF-8.
func checkContentType(ct string) *apiError {
	if ct == "" {
		return invalidRequest("Content-Type must be application/json")
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != contentTypeJSON {
		return invalidRequest("Content-Type must be application/json")
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return invalidRequest("Content-Type charset must be utf-8")
	}
	return nil
}

// limitField is one optional request field that lowers a wire.Limits field.
type limitField struct {
	name string
	// seconds: a JSON number of seconds, converted to milliseconds (rounded
	// up, so a tiny positive value never becomes 0 = "server default").
	// Otherwise a JSON integer, multiplied by scale.
	seconds bool
	scale   int64
	// max is the largest value accepted, in the field's own unit. For
	// "timeout" it is replaced by Config.MaxTimeout; for the rest it is a
	// sanity bound (the supervisor refuses anything above its own maximum).
	max float64
	set func(l *wire.Limits, v int64)
}

const mib = 1 << 20

// limitFields are the optional request fields, in the order they are checked.
var limitFields = []limitField{
	{name: "timeout", seconds: true, set: func(l *wire.Limits, v int64) { l.TimeoutMS = v }},
	{name: "cpu_seconds", seconds: true, max: 86400, set: func(l *wire.Limits, v int64) { l.CPUMS = v }},
	{name: "memory_mb", scale: mib, max: 1 << 20, set: func(l *wire.Limits, v int64) { l.MemoryBytes = v }},
	{name: "pids", scale: 1, max: 1 << 22, set: func(l *wire.Limits, v int64) { l.Pids = v }},
	{name: "open_files", scale: 1, max: 1 << 20, set: func(l *wire.Limits, v int64) { l.OpenFiles = v }},
	{name: "file_size_mb", scale: mib, max: 1 << 20, set: func(l *wire.Limits, v int64) { l.FileSizeBytes = v }},
	{name: "tmp_mb", scale: mib, max: 1 << 20, set: func(l *wire.Limits, v int64) { l.TmpBytes = v }},
	{name: "output_bytes", scale: 1, max: 1 << 40, set: func(l *wire.Limits, v int64) { l.OutputBytes = v }},
	{name: "result_bytes", scale: 1, max: 1 << 40, set: func(l *wire.Limits, v int64) { l.ResultBytes = v }},
}

// parseExecute decodes and validates a POST /execute body into a wire
// request. maxTimeout bounds the "timeout" field. The error names the field
// at fault; it never quotes the script.
func parseExecute(body []byte, maxTimeout time.Duration) (wire.Execute, *apiError) {
	var req wire.Execute
	fields, e := decodeObject(body)
	if e != nil {
		return req, e
	}
	known := map[string]bool{"script": true}
	for _, f := range limitFields {
		known[f.name] = true
	}
	for _, k := range fields.order {
		if !known[k] {
			return req, invalidRequest(fmt.Sprintf("unknown field %s", quoteName(k)))
		}
	}

	raw, ok := fields.values["script"]
	if !ok {
		return req, invalidRequest(`field "script" is required`)
	}
	if len(raw) == 0 || raw[0] != '"' {
		return req, invalidRequest(`field "script" must be a string`)
	}
	if err := json.Unmarshal(raw, &req.Script); err != nil {
		return req, invalidRequest(`field "script" must be a string`)
	}
	if req.Script == "" {
		return req, invalidRequest(`field "script" must not be empty`)
	}

	for _, f := range limitFields {
		raw, ok := fields.values[f.name]
		if !ok || string(raw) == "null" {
			continue
		}
		limit := f.max
		if f.name == "timeout" {
			limit = maxTimeout.Seconds()
		}
		v, e := f.parse(raw, limit)
		if e != nil {
			return req, e
		}
		f.set(&req.Limits, v)
	}
	return req, nil
}

func (f limitField) parse(raw json.RawMessage, limit float64) (int64, *apiError) {
	isNumber := len(raw) > 0 && (raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9'))
	if f.seconds {
		if !isNumber {
			return 0, invalidRequest(fmt.Sprintf("field %q must be a number of seconds", f.name))
		}
		v, err := strconv.ParseFloat(string(raw), 64)
		if err != nil || math.IsNaN(v) || v <= 0 || v > limit {
			return 0, invalidRequest(fmt.Sprintf("field %q must be greater than 0 and at most %s seconds",
				f.name, strconv.FormatFloat(limit, 'f', -1, 64)))
		}
		return int64(math.Ceil(v * 1000)), nil
	}
	if !isNumber {
		return 0, invalidRequest(fmt.Sprintf("field %q must be an integer", f.name))
	}
	v, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
			return 0, invalidRequest(fmt.Sprintf("field %q must be between 1 and %.0f", f.name, limit))
		}
		return 0, invalidRequest(fmt.Sprintf("field %q must be an integer", f.name))
	}
	if v < 1 || float64(v) > limit {
		return 0, invalidRequest(fmt.Sprintf("field %q must be between 1 and %.0f", f.name, limit))
	}
	return v * f.scale, nil
}

// object is a decoded top-level JSON object: raw values by key, and the keys
// in the order they appeared.
type object struct {
	values map[string]json.RawMessage
	order  []string
}

// decodeObject decodes body as exactly one JSON object. It rejects anything
// else at the top level, duplicate keys and trailing data. Literal tab,
// newline and carriage return characters inside strings are accepted as if
// escaped (see escapeRawControls).
func decodeObject(body []byte) (object, *apiError) {
	obj := object{values: map[string]json.RawMessage{}}
	body = escapeRawControls(body)
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return obj, notJSON(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return obj, invalidRequest("request body must be a JSON object")
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return obj, notJSON(err)
		}
		key, ok := tok.(string)
		if !ok {
			return obj, notJSON(errors.New("object key is not a string"))
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return obj, notJSON(err)
		}
		if _, dup := obj.values[key]; dup {
			return obj, invalidRequest(fmt.Sprintf("duplicate field %s", quoteName(key)))
		}
		obj.values[key] = v
		obj.order = append(obj.order, key)
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return obj, notJSON(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return obj, invalidRequest("request body has data after the JSON object")
	}
	return obj, nil
}

func notJSON(err error) *apiError {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return invalidRequest("request body is not valid JSON: unexpected end of input")
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return invalidRequest("request body is not valid JSON: " + se.Error())
	}
	return invalidRequest("request body is not valid JSON")
}

// quoteName quotes a client-supplied field name for an error message,
// shortened so a huge key is not echoed back whole.
func quoteName(k string) string {
	const keep = 64
	if len(k) > keep {
		return strconv.Quote(k[:keep]) + "..."
	}
	return strconv.Quote(k)
}

// escapeRawControls rewrites literal tab, newline and carriage return bytes
// that sit inside JSON strings into their escapes, leaving everything else
// alone. Strict JSON forbids them there, but the API's documented curl
// examples send multi-line scripts that way. It is a small scanner over
// string boundaries, not a rewrite of the JSON: outside strings nothing
// changes, so invalid JSON stays invalid. It returns body itself when there
// is nothing to rewrite.
func escapeRawControls(body []byte) []byte {
	var out []byte // nil until the first rewrite
	inString, escaped := false, false
	for i, c := range body {
		var esc byte
		switch {
		case !inString:
			inString = c == '"'
		case escaped:
			escaped = false
		case c == '\\':
			escaped = true
		case c == '"':
			inString = false
		case c == '\n':
			esc = 'n'
		case c == '\r':
			esc = 'r'
		case c == '\t':
			esc = 't'
		}
		if esc != 0 {
			if out == nil {
				out = make([]byte, i, len(body)+64)
				copy(out, body[:i])
			}
			out = append(out, '\\', esc)
			continue
		}
		if out != nil {
			out = append(out, c)
		}
	}
	if out == nil {
		return body
	}
	return out
}
