package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"strconv"
	"strings"
	"time"

	"github.com/python-executor/python-executor/limits"
	"github.com/python-executor/python-executor/wire"
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

// parseExecute decodes and validates a POST /execute body into a wire
// request. maxTimeout bounds the "timeout" field; maxBody is the body limit
// (-max-body-bytes), which the args and files fields do not count against
// (their room is ioBodyRoom, on top). The error names the field at fault; it
// never quotes the script.
func parseExecute(body []byte, maxTimeout time.Duration, maxBody int) (wire.Execute, *apiError) {
	var req wire.Execute
	fields, e := decodeObject(body)
	if e != nil {
		if len(body) > maxBody {
			// Too large is the first thing wrong with it, and the one
			// the client must fix first.
			return req, bodyTooLarge(maxBody)
		}
		return req, e
	}
	if len(body)-len(fields.values["args"])-len(fields.values["files"]) > maxBody {
		return req, bodyTooLarge(maxBody)
	}
	known := map[string]bool{"script": true, "args": true, "files": true}
	for _, f := range limits.HTTPFields() {
		known[f] = true
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

	// The optional limit fields come from the limit table; each may only
	// lower a server limit (the supervisor refuses more than its maximum).
	lim, le := limits.ParseRequest(fields.values, maxTimeout)
	if le != nil {
		return req, invalidRequest(le.Message)
	}
	req.Limits = lim
	if raw, ok := fields.values["args"]; ok {
		if req.Args, e = parseArgs(raw); e != nil {
			return req, e
		}
	}
	if raw, ok := fields.values["files"]; ok {
		if req.Files, e = parseFiles(raw); e != nil {
			return req, e
		}
	}
	return req, nil
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
