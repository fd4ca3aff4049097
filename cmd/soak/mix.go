package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
)

// kind is one sort of request in the soak's mix, with the answers that
// count as right for it.
type kind struct {
	name    string
	hostile bool
	script  string
	extra   map[string]any // optional request fields
	// accept decides whether an answer (not busy, not internal) is right;
	// "" means right, anything else says what is wrong.
	accept func(a *answer) string
}

// answer is a decoded /execute reply.
type answer struct {
	Status int
	Body   struct {
		Result    json.RawMessage `json:"result"`
		Stdout    string          `json:"stdout"`
		Truncated struct {
			Stdout bool `json:"stdout"`
		} `json:"truncated"`
		Error *struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
}

func (a *answer) errType() string {
	if a.Body.Error == nil {
		return ""
	}
	return a.Body.Error.Type
}

// result accepts a 200 whose result equals want as JSON (numbers compared
// as float64, so 6 and 6.0 are the same) and, when stdout is not nil, whose
// stdout is exactly *stdout.
func result(want string, stdout *string) func(a *answer) string {
	return func(a *answer) string {
		if a.Status != http.StatusOK {
			return fmt.Sprintf("status %d (%s), want 200", a.Status, a.errType())
		}
		if !sameJSON(a.Body.Result, []byte(want)) {
			return fmt.Sprintf("result %s, want %s", clip(string(a.Body.Result)), want)
		}
		if stdout != nil && a.Body.Stdout != *stdout {
			return fmt.Sprintf("stdout %q, want %q", clip(a.Body.Stdout), clip(*stdout))
		}
		return ""
	}
}

// failsWith accepts a 500 with one of the given error types.
func failsWith(types ...string) func(a *answer) string {
	return func(a *answer) string {
		if a.Status == http.StatusInternalServerError && slices.Contains(types, a.errType()) {
			return ""
		}
		return fmt.Sprintf("status %d type %q, want 500 with one of %v", a.Status, a.errType(), types)
	}
}

func either(fs ...func(a *answer) string) func(a *answer) string {
	return func(a *answer) string {
		var why []string
		for _, f := range fs {
			w := f(a)
			if w == "" {
				return ""
			}
			why = append(why, w)
		}
		return strings.Join(why, "; or ")
	}
}

// printed is what the printing kind writes to stdout.
var printed = func() string {
	var b strings.Builder
	for i := range 200 {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	return b.String()
}()

// bigInt is 10**5000 as JSON.
var bigInt = "1" + strings.Repeat("0", 5000)

// kinds lists every kind of request the soak knows, benign first.
func kinds() []kind {
	return []kind{
		// Benign: the seed README's examples and some printing; exact answers.
		{name: "hello", script: `def main(): return {"message": "Hello World", "result": 42}`,
			accept: result(`{"message": "Hello World", "result": 42}`, nil)},
		{name: "pandas", script: `
import pandas as pd
import numpy as np

def main():
    df = pd.DataFrame({"A": [1, 2, 3], "B": [4, 5, 6]})
    return {"shape": df.shape, "sum": df.sum().to_dict(), "mean": df.mean().to_dict()}
`, accept: result(`{"shape": [3, 2], "sum": {"A": 6, "B": 15}, "mean": {"A": 2.0, "B": 5.0}}`, nil)},
		{name: "printing", script: `
def main():
    for i in range(200):
        print("line", i)
    return "printed"
`, accept: result(`"printed"`, &printed)},

		// Hostile.
		{name: "timeout", hostile: true, extra: map[string]any{"timeout": 1}, script: `
def main():
    while True:
        pass
`, accept: failsWith("timeout")},
		{name: "sleep_timeout", hostile: true, extra: map[string]any{"timeout": 1}, script: `
import time
def main():
    time.sleep(30)
`, accept: failsWith("timeout")},
		{name: "memory_bomb", hostile: true, script: `
def main():
    x = bytearray(2 << 30)
    return len(x)
`, accept: failsWith("memory_limit")},
		{name: "memory_creep", hostile: true, extra: map[string]any{"memory_mb": 128}, script: `
def main():
    hoard = []
    while True:
        hoard.append(b"x" * (4 << 20))
`, accept: failsWith("memory_limit")},
		{name: "fork_bomb", hostile: true, extra: map[string]any{"timeout": 5}, script: `
import os
def main():
    while True:
        os.fork()
`, accept: failsWith("resource_limit", "timeout")},
		{name: "cpu_hog", hostile: true, extra: map[string]any{"timeout": 2}, script: `
import os
def main():
    for _ in range(59):
        if os.fork() == 0:
            break
    while True:
        pass
`, accept: failsWith("timeout")},
		{name: "output_flood", hostile: true, script: `
import sys
def main():
    chunk = "A" * 65535 + "\n"
    for _ in range(512):
        sys.stdout.write(chunk)
    return "flooded"
`, accept: func(a *answer) string {
			if w := result(`"flooded"`, nil)(a); w != "" {
				return w
			}
			if !a.Body.Truncated.Stdout {
				return "32 MiB of stdout not flagged as truncated"
			}
			return ""
		}},
		{name: "exit", hostile: true, script: `
import os
def main():
    os._exit(3)
`, accept: failsWith("exited")},
		{name: "crash", hostile: true, script: `
import ctypes
def main():
    ctypes.string_at(0)
`, accept: failsWith("exited")},
		{name: "exception", hostile: true, script: `
def main():
    raise ValueError("no")
`, accept: failsWith("exception")},
		{name: "forged_bytes", hostile: true, script: `
import os
def main():
    for fd in range(3, 64):
        try:
            os.write(fd, b"\xff" * 64)
        except OSError:
            pass
    return "wrote"
`, accept: failsWith("result_corrupted")},
		{name: "forged_frame", hostile: true, script: `
import os, struct, msgpack
def main():
    body = msgpack.packb({"type": "internal", "message": "\x01" * 100000, "traceback": ""}, use_bin_type=True)
    for rid in (0, 1, 2):
        try:
            os.write(4, struct.pack(">IIBB", len(body), rid, 0x13, 1) + body)
        except OSError:
            pass
    return "forged"
`, accept: failsWith("result_corrupted")},
		{name: "monkeypatch", hostile: true, script: `
import json, builtins
json.dumps = None
json.loads = None
builtins.len = None
def main():
    return 7
`, accept: result(`7`, nil)},
		{name: "bigint", hostile: true, script: `
def main():
    return 10 ** 5000
`, accept: either(result(bigInt, nil), func(a *answer) string {
			if a.Status == http.StatusBadRequest && a.errType() == "invalid_result" {
				return ""
			}
			return fmt.Sprintf("status %d type %q, want 400 invalid_result", a.Status, a.errType())
		})},
	}
}

// selectKinds picks the kinds named in hostile (comma-separated, "all" for
// every hostile kind, "" or "none" for none) and every benign kind.
func selectKinds(all []kind, hostile string) ([]kind, error) {
	var out []kind
	want := map[string]bool{}
	switch hostile = strings.TrimSpace(hostile); hostile {
	case "all":
		for _, k := range all {
			want[k.name] = k.hostile
		}
	case "", "none":
	default:
		for n := range strings.SplitSeq(hostile, ",") {
			want[strings.TrimSpace(n)] = true
		}
	}
	for _, k := range all {
		if !k.hostile {
			out = append(out, k)
			continue
		}
		if want[k.name] {
			out = append(out, k)
			delete(want, k.name)
		}
	}
	for n, ok := range want {
		if ok {
			return nil, fmt.Errorf("unknown hostile kind %q", n)
		}
	}
	return out, nil
}

// sameJSON reports whether two JSON texts hold the same value, numbers
// compared as float64 when they fit one (so 6 and 6.0 are the same) and
// digit for digit when they do not (10**5000).
func sameJSON(a, b []byte) bool {
	x, err1 := decodeNumbers(a)
	y, err2 := decodeNumbers(b)
	if err1 != nil || err2 != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

func decodeNumbers(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return normalize(v), nil
}

func normalize(v any) any {
	switch v := v.(type) {
	case json.Number:
		if f, err := v.Float64(); err == nil && !math.IsInf(f, 0) {
			return f
		}
		return "number:" + v.String()
	case []any:
		for i := range v {
			v[i] = normalize(v[i])
		}
	case map[string]any:
		for k := range v {
			v[k] = normalize(v[k])
		}
	}
	return v
}

func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}

// percentile is the nearest-rank q-th percentile (0 < q <= 100) of sorted.
func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
