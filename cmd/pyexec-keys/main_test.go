package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"

	"github.com/python-executor/python-executor/gateway/keyline"
)

// new prints a fresh key and a keys-file line holding that key's SHA-256;
// hash gives the same digits from the key (as sha256sum would).
func TestNewAndHash(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"new", "alice", "rate=10/s", "concurrency=2"}, nil, &out, &errOut); code != 0 {
		t.Fatalf("new: exit %d: %s", code, errOut.String())
	}
	key := strings.TrimSpace(out.String())
	if !regexp.MustCompile(`^pyx_[A-Za-z0-9_-]{43}$`).MatchString(key) {
		t.Fatalf("key %q", key)
	}
	d := sha256.Sum256([]byte(key))
	want := "alice:" + hex.EncodeToString(d[:]) + " rate=10/s concurrency=2"
	if !strings.Contains(errOut.String(), "\n"+want+"\n") {
		t.Fatalf("stderr %q lacks the line %q", errOut.String(), want)
	}
	if _, err := keyline.Parse(want, keyline.Policy{}); err != nil {
		t.Fatalf("the printed line %q does not load: %v", want, err)
	}
	var again bytes.Buffer
	run([]string{"new", "alice"}, nil, &again, &errOut)
	if strings.TrimSpace(again.String()) == key {
		t.Fatal("two new keys are the same")
	}

	out.Reset()
	if code := run([]string{"hash", "alice"}, strings.NewReader(key+"\n"), &out, &errOut); code != 0 || out.String() != "alice:"+hex.EncodeToString(d[:])+"\n" {
		t.Fatalf("hash alice: exit %d %q", code, out.String())
	}
	out.Reset()
	if code := run([]string{"hash"}, strings.NewReader(key), &out, &errOut); code != 0 || out.String() != hex.EncodeToString(d[:])+"\n" {
		t.Fatalf("hash: exit %d %q", code, out.String())
	}
	for _, args := range [][]string{nil, {"new"}, {"new", "-x"}, {"new", "a", "burst=2"}, {"hash", "a", "b"}, {"frob"}} {
		if code := run(args, strings.NewReader("k\n"), &out, &errOut); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if code := run([]string{"hash"}, strings.NewReader("\n"), &out, &errOut); code != 2 {
		t.Errorf("hash of nothing: exit %d, want 2", code)
	}
}

// A setting the gateway would refuse is refused here, with no key printed:
// the printed line would otherwise stop the gateway's next reload of the
// keys file.
func TestNewRefusesBadSettings(t *testing.T) {
	for _, tc := range []struct{ opt, msg string }{
		{"rate=abc", "QUOTA/WINDOW"},
		{"rate=10/ms", "whole seconds"},
		{"rate=-1/s", "positive integer"},
		{"concurrency=x", "non-negative integer"},
		{"concurrency=-2", "non-negative integer"},
		{"burst=2", "unknown setting"},
	} {
		var out, errOut bytes.Buffer
		if code := run([]string{"new", "alice", tc.opt}, nil, &out, &errOut); code != 2 {
			t.Errorf("%s: exit %d, want 2", tc.opt, code)
		}
		if out.Len() != 0 {
			t.Errorf("%s: a key was printed: %q", tc.opt, out.String())
		}
		if !strings.Contains(errOut.String(), tc.msg) {
			t.Errorf("%s: stderr %q lacks %q", tc.opt, errOut.String(), tc.msg)
		}
	}
}
