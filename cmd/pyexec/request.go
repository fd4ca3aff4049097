package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/python-executor/python-executor/limits"
	"github.com/python-executor/python-executor/wire"
)

// request is one execution as the command line describes it, in the shape
// of POST /execute; the socket mode converts it to a wire.Execute.
type request struct {
	Script string
	// Args is the JSON text of the args object, nil when no --arg.
	Args  []byte
	Files []wire.File
	// Limits are the optional limit fields by their HTTP name (timeout,
	// memory_mb, ...), each a JSON number.
	Limits map[string]json.RawMessage
}

// usageError is a bad command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// multiFlag collects a repeatable flag's values in order.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// parseArgs builds the args object from k=v pairs. v is taken as JSON when
// it is a JSON text (3, true, null, [1,2], {"a":1}, "quoted") and as a
// string otherwise (Ada, 1.2.3), so the common cases need no shell quoting
// of JSON; a string that looks like JSON is passed quoted: --arg 'v="3"'.
func parseArgs(pairs []string) ([]byte, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	var b bytes.Buffer
	b.WriteByte('{')
	seen := map[string]bool{}
	for i, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, usagef("--arg %q: want name=value", p)
		}
		if seen[k] {
			return nil, usagef("--arg %s given twice", k)
		}
		seen[k] = true
		if i > 0 {
			b.WriteByte(',')
		}
		name, _ := json.Marshal(k)
		b.Write(name)
		b.WriteByte(':')
		if json.Valid([]byte(v)) {
			if err := json.Compact(&b, []byte(v)); err != nil {
				return nil, usagef("--arg %s: %v", k, err)
			}
		} else {
			s, _ := json.Marshal(v)
			b.Write(s)
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// readFiles reads the --file paths; each goes to the execution's working
// directory under its base name.
func readFiles(paths []string) ([]wire.File, error) {
	var files []wire.File
	seen := map[string]string{}
	for _, p := range paths {
		name := filepath.Base(p)
		if prev, dup := seen[name]; dup {
			return nil, usagef("--file %s and --file %s would both be %s in the sandbox", prev, p, name)
		}
		seen[name] = p
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, usagef("--file: %v", err)
		}
		files = append(files, wire.File{Name: name, Data: data})
	}
	return files, nil
}

// parseTimeout reads --timeout: seconds (2, 0.5) or a Go duration (1m30s).
func parseTimeout(s string) (json.RawMessage, error) {
	secs, err := strconv.ParseFloat(s, 64)
	if err != nil {
		d, derr := time.ParseDuration(s)
		if derr != nil {
			return nil, usagef("--timeout %q: want seconds (2.5) or a duration (1m)", s)
		}
		secs = d.Seconds()
	}
	if !(secs > 0) {
		return nil, usagef("--timeout %q: must be more than 0", s)
	}
	return json.RawMessage(strconv.FormatFloat(secs, 'f', -1, 64)), nil
}

// parseLimits reads the --limit name=value pairs: the request's optional
// limit fields, named as in the HTTP API, each a JSON number.
func parseLimits(pairs []string, timeout string) (map[string]json.RawMessage, error) {
	out := map[string]json.RawMessage{}
	known := limits.HTTPFields()
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || !slices.Contains(known, k) {
			return nil, usagef("--limit %q: want name=value, name one of %s", p, strings.Join(known, ", "))
		}
		if _, dup := out[k]; dup {
			return nil, usagef("--limit %s given twice", k)
		}
		if _, err := strconv.ParseFloat(v, 64); err != nil {
			return nil, usagef("--limit %s=%q: want a number", k, v)
		}
		out[k] = json.RawMessage(v)
	}
	if timeout != "" {
		if _, dup := out["timeout"]; dup {
			return nil, usagef("--timeout and --limit timeout=... both given")
		}
		t, err := parseTimeout(timeout)
		if err != nil {
			return nil, err
		}
		out["timeout"] = t
	}
	return out, nil
}

// httpBody is the POST /execute body for r.
func (r *request) httpBody() ([]byte, error) {
	body := map[string]any{"script": r.Script}
	for k, v := range r.Limits {
		body[k] = v
	}
	if r.Args != nil {
		body["args"] = json.RawMessage(r.Args)
	}
	if len(r.Files) > 0 {
		type file struct {
			Name     string `json:"name"`
			Content  string `json:"content"`
			Encoding string `json:"encoding"`
		}
		files := make([]file, len(r.Files))
		for i, f := range r.Files {
			files[i] = file{Name: f.Name, Content: base64.StdEncoding.EncodeToString(f.Data), Encoding: "base64"}
		}
		body["files"] = files
	}
	return json.Marshal(body)
}

// wireExecute is r for the supervisor. The limits are converted by the
// same table the gateway uses; the supervisor checks them against its own
// maxima (a local caller is not bound by the gateway's -max-timeout, so
// the timeout is only checked to be positive here).
func (r *request) wireExecute(traceID string) (wire.Execute, error) {
	lim, e := limits.ParseRequest(r.Limits, 1<<62)
	if e != nil {
		return wire.Execute{}, errors.New(e.Message)
	}
	return wire.Execute{Script: r.Script, TraceID: traceID, Limits: lim, Args: r.Args, Files: r.Files}, nil
}
