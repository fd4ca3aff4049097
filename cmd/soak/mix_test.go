package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func TestSameJSON(t *testing.T) {
	cases := []struct {
		a, b string
		same bool
	}{
		{`{"A": 6, "B": 2.0}`, `{"B": 2, "A": 6.0}`, true},
		{`[3, 2]`, `[2, 3]`, false},
		{bigInt, bigInt, true},
		{bigInt, bigInt + "0", false},
		{`"x"`, `"y"`, false},
		{`{`, `{`, false},
	}
	for _, c := range cases {
		if got := sameJSON([]byte(c.a), []byte(c.b)); got != c.same {
			t.Errorf("sameJSON(%.40s, %.40s) = %v, want %v", c.a, c.b, got, c.same)
		}
	}
}

func TestSelectKinds(t *testing.T) {
	all := kinds()
	names := func(ks []kind) string {
		var n []string
		for _, k := range ks {
			n = append(n, k.name)
		}
		return strings.Join(n, ",")
	}
	got, err := selectKinds(all, "none")
	if err != nil || names(got) != "hello,pandas,printing" {
		t.Errorf("none: %s, %v", names(got), err)
	}
	got, err = selectKinds(all, "exit, timeout")
	if err != nil || names(got) != "hello,pandas,printing,timeout,exit" {
		t.Errorf("exit,timeout: %s, %v", names(got), err)
	}
	got, err = selectKinds(all, "all")
	if err != nil || len(got) != len(all) {
		t.Errorf("all: %d kinds, %v; want %d", len(got), err, len(all))
	}
	if _, err := selectKinds(all, "exit,nope"); err == nil {
		t.Error("an unknown kind was accepted")
	}
}

func TestAccept(t *testing.T) {
	byName := map[string]kind{}
	for _, k := range kinds() {
		byName[k.name] = k
	}
	ans := func(status int, body string) *answer {
		a := &answer{Status: status}
		if err := json.Unmarshal([]byte(body), &a.Body); err != nil {
			t.Fatal(err)
		}
		return a
	}
	cases := []struct {
		kind string
		a    *answer
		ok   bool
	}{
		{"hello", ans(200, `{"result": {"message": "Hello World", "result": 42}, "stdout": ""}`), true},
		{"hello", ans(200, `{"result": {"message": "Hello World", "result": 41}}`), false},
		{"printing", ans(200, `{"result": "printed", "stdout": `+mustQuote(printed)+`}`), true},
		{"printing", ans(200, `{"result": "printed", "stdout": "line 0\n"}`), false},
		{"timeout", ans(500, `{"error": {"type": "timeout"}}`), true},
		{"timeout", ans(500, `{"error": {"type": "exited"}}`), false},
		{"output_flood", ans(200, `{"result": "flooded", "truncated": {"stdout": true}}`), true},
		{"output_flood", ans(200, `{"result": "flooded", "truncated": {"stdout": false}}`), false},
		{"forged_bytes", ans(500, `{"error": {"type": "result_corrupted"}}`), true},
		{"forged_bytes", ans(500, `{"error": {"type": "exited"}}`), false},
		{"forged_frame", ans(500, `{"error": {"type": "internal"}}`), false},
		{"forged_bytes", ans(500, `{"error": {"type": "cancelled"}}`), false},
		{"bigint", ans(200, `{"result": `+bigInt+`}`), true},
		{"bigint", ans(400, `{"error": {"type": "invalid_result"}}`), true},
		{"bigint", ans(200, `{"result": 1e5000}`), false},
	}
	for _, c := range cases {
		why := byName[c.kind].accept(c.a)
		if (why == "") != c.ok {
			t.Errorf("%s: accept = %q, want ok %v", c.kind, why, c.ok)
		}
	}
	if (&answer{Status: http.StatusOK}).errType() != "" {
		t.Error("errType of a 200")
	}
}

func mustQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestPercentile(t *testing.T) {
	s := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if p := percentile(s, 50); p != 5 {
		t.Errorf("p50 = %v, want 5", p)
	}
	if p := percentile(s, 99); p != 10 {
		t.Errorf("p99 = %v, want 10", p)
	}
	if p := percentile(nil, 50); p != 0 {
		t.Errorf("p50 of nothing = %v", p)
	}
}
