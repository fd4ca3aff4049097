package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestParseArgs(t *testing.T) {
	got, err := parseArgs([]string{"n=3", "name=Ada", "v=1.2.3", `q="3"`, "e=", "l=[1, 2]", "b=true", "z=null", "eq=a=b"})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"n":3,"name":"Ada","v":"1.2.3","q":"3","e":"","l":[1,2],"b":true,"z":null,"eq":"a=b"}`
	if string(got) != want {
		t.Errorf("parseArgs = %s, want %s", got, want)
	}
	for _, bad := range [][]string{{"noequals"}, {"=1"}, {"a=1", "a=2"}} {
		var ue *usageError
		if _, err := parseArgs(bad); !errors.As(err, &ue) {
			t.Errorf("parseArgs(%q) = %v, want a usage error", bad, err)
		}
	}
	if got, _ := parseArgs(nil); got != nil {
		t.Errorf("no --arg gave %s, want no args at all", got)
	}
}

func TestParseLimits(t *testing.T) {
	got, err := parseLimits([]string{"memory_mb=64"}, "1m30s")
	if err != nil || string(got["memory_mb"]) != "64" || string(got["timeout"]) != "90" {
		t.Errorf("parseLimits = %v, %v", got, err)
	}
	for _, c := range []struct {
		pairs   []string
		timeout string
	}{{[]string{"nope=1"}, ""}, {[]string{"memory_mb=x"}, ""}, {nil, "0"}, {nil, "soon"}, {[]string{"timeout=1"}, "2"}} {
		if _, err := parseLimits(c.pairs, c.timeout); err == nil {
			t.Errorf("parseLimits(%q, %q) succeeded, want an error", c.pairs, c.timeout)
		}
	}
}

func TestParseInterleaved(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	var a multiFlag
	fs.Var(&a, "arg", "")
	v := fs.Bool("v", false, "")
	pos, err := parseInterleaved(fs, []string{"--arg", "x=1", "s.py", "-v", "--arg", "y=2", "--", "--arg"})
	if err != nil || strings.Join(pos, " ") != "s.py --arg" || a.String() != "x=1,y=2" || !*v {
		t.Errorf("pos %q, args %q, v %v, err %v", pos, a.String(), *v, err)
	}
}

func TestExitStatusesAreDistinct(t *testing.T) {
	seen := map[int]string{}
	for _, e := range exitTable() {
		if prev, dup := seen[e.Code]; dup {
			t.Errorf("exit %d is both %s and %s", e.Code, prev, e.Type)
		}
		seen[e.Code] = e.Type
	}
	if exitCode("exception") != 1 || exitCode("no_such_type") != exitUnknownType {
		t.Error("exception must be 1 and an unknown type exitUnknownType")
	}
	// The README's table lists every status.
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range exitTable() {
		row := "| " + strconv.Itoa(e.Code) + " | "
		if !bytes.Contains(readme, []byte(row)) || (!strings.HasPrefix(e.Type, "(") && !bytes.Contains(readme, []byte(row+"`"+e.Type+"`"))) {
			t.Errorf("README's exit status table lacks %q (%s)", row, e.Type)
		}
	}
}

// TestSaveStaysInOut: names from the sandbox that would leave --out are
// refused, the others written.
func TestSaveStaysInOut(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	var stderr bytes.Buffer
	p := &printer{stdout: io.Discard, stderr: &stderr, outDir: out}
	err := p.save(&response{Files: []outFile{
		{Name: "ok/a.txt", Content: []byte("a")},
		{Name: "../../escape.txt", Content: []byte("x")},
		{Name: "/etc/abs", Content: []byte("x")},
	}})
	if err == nil {
		t.Error("save of escaping names succeeded")
	}
	if b, _ := os.ReadFile(filepath.Join(out, "files", "ok", "a.txt")); string(b) != "a" {
		t.Errorf("the local file was not saved: %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "escape.txt")); err == nil {
		t.Error("a file escaped --out")
	}
	// A symlink planted in --out does not lead out either.
	os.Symlink(dir, filepath.Join(out, "files", "link"))
	if err := p.save(&response{Files: []outFile{{Name: "link/evil.txt", Content: []byte("x")}}}); err == nil {
		t.Error("save through a symlink succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "evil.txt")); err == nil {
		t.Error("a file escaped --out through a symlink")
	}
}

// TestStreamCutOff: a stream without its done line is internal; unknown
// events are skipped; the done line's answer is returned.
func TestStreamCutOff(t *testing.T) {
	var out bytes.Buffer
	p := &printer{stdout: &out, stderr: io.Discard}
	r, err := readStream(context.Background(), strings.NewReader(`{"event":"stdout","data":"hi\n"}`+"\n"), p)
	if err != nil || r.Error == nil || r.Error.Type != "internal" || out.String() != "hi\n" {
		t.Errorf("cut-off stream: %+v, %v, out %q", r, err, out.String())
	}
	r, err = readStream(context.Background(), strings.NewReader(`{"event":"future"}`+"\n"+`{"event":"done","status":500,"response":{"error":{"type":"timeout","message":"m"},"stdout":"","stderr":""}}`+"\n"), p)
	if err != nil || r.Error == nil || r.Error.Type != "timeout" {
		t.Errorf("done line: %+v, %v", r, err)
	}
}

// TestUsageErrors: a bad command line exits 2 with a message, before
// anything is sent (the URL here is never dialled).
func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "s.py")
	os.WriteFile(script, []byte("def main():\n    return 1\n"), 0o644)
	env := func(string) (string, bool) { return "", false }
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"run"},
		{"run", script, script},
		{"run", filepath.Join(dir, "missing.py")},
		{"run", script, "--no-such-flag"},
		{"run", script, "--url", "http://127.0.0.1:1", "--socket", "/x"},
		{"run", script, "--url", "ftp://x"},
		{"run", script, "--arg", "novalue"},
		{"run", script, "--file", filepath.Join(dir, "missing.csv")},
		{"run", script, "--timeout", "-1"},
		{"run", script, "--limit", "bogus=1"},
		{"health", "extra"},
	} {
		var stderr bytes.Buffer
		if code := run(context.Background(), args, io.Discard, &stderr, env); code != exitUsage {
			t.Errorf("pyexec %q: exit %d, want %d (usage)", args, code, exitUsage)
		}
		if stderr.Len() == 0 {
			t.Errorf("pyexec %q: nothing on stderr", args)
		}
	}
	// help prints the exit status table.
	var out bytes.Buffer
	if code := run(context.Background(), []string{"help"}, &out, io.Discard, env); code != 0 || !strings.Contains(out.String(), "130  (interrupted)") {
		t.Errorf("help: exit %d, %q", code, out.String())
	}
}
