package keyline

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	sum := sha256.Sum256([]byte("k"))
	d := hex.EncodeToString(sum[:])
	def := Policy{Quota: 60, Window: time.Minute, Concurrency: 4}
	l, err := Parse("a.b@c-d_e:"+strings.ToUpper(d)+"  rate=100/10s concurrency=0", def)
	if err != nil {
		t.Fatal(err)
	}
	want := Line{Name: "a.b@c-d_e", Digest: sum, Policy: Policy{Quota: 100, Window: 10 * time.Second, Concurrency: 0}}
	if l != want {
		t.Fatalf("got %+v, want %+v", l, want)
	}
	if l, err := Parse("a:"+d, def); err != nil || l.Policy != def {
		t.Fatalf("a line without settings: %+v %v, want the default policy", l, err)
	}
	for _, tc := range []struct{ line, msg string }{
		{"", "name:sha256hex"},
		{"a" + d, "name:sha256hex"},
		{"-a:" + d, "name \"-a\""},
		{strings.Repeat("a", 65) + ":" + d, "at most 64"},
		{"a:pyx_secret", "not the key"},
		{"a:" + d[:62], "64 hex digits"},
		{"a:" + d + " rate=10", "QUOTA/WINDOW"},
		{"a:" + d + " rate=1/500ms", "whole seconds"},
		{"a:" + d + " concurrency=-1", "non-negative"},
		{"a:" + d + " burst=3", "unknown setting"},
	} {
		_, err := Parse(tc.line, def)
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q: error %v, want one saying %q", tc.line, err, tc.msg)
		}
		if err != nil && strings.Contains(err.Error(), "pyx_secret") {
			t.Errorf("%q: the error echoes the key: %v", tc.line, err)
		}
	}
}

func TestParseRate(t *testing.T) {
	for s, want := range map[string][2]int64{"off": {0, 0}, "0": {0, 0}, "60/m": {60, 60}, "5/h": {5, 3600}, " 100/10s ": {100, 10}} {
		q, w, err := ParseRate(s)
		if err != nil || int64(q) != want[0] || int64(w/time.Second) != want[1] {
			t.Errorf("%q: %d %v %v, want %v", s, q, w, err, want)
		}
	}
	for _, s := range []string{"", "abc", "x/s", "0/s", "1/0s", "1/1500ms", "1/ms"} {
		if _, _, err := ParseRate(s); err == nil {
			t.Errorf("%q: no error", s)
		}
	}
}
