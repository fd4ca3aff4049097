// Package keyline reads one line of the gateway's API keys (README "API keys
// and quotas"):
//
//	name:sha256hex [rate=Q/W] [concurrency=N]
//
// It is its own small package so that the gateway, which loads the lines,
// and the pyexec-keys command, which prints them, apply one rule: a line the
// command prints is a line the gateway accepts.
package keyline

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// DigestLen is the length of a key's digest: SHA-256.
const DigestLen = sha256.Size

// NameRule says in words what ValidName accepts, for error messages.
const NameRule = "letters, digits, '.', '_', '@', '-', at most 64, starting with a letter or digit"

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// ValidName reports whether s may name a key's client (NameRule). Names go
// into logs, metrics labels and headers, hence the narrow alphabet.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// Policy is one name's quotas. Zero means no limit.
type Policy struct {
	// Quota requests are allowed per Window, refilled continuously (a token
	// bucket of Quota tokens refilled at Quota/Window).
	Quota  int
	Window time.Duration
	// Concurrency caps the requests of the name in progress at once (a
	// streamed execution counts until its stream ends).
	Concurrency int
}

// Line is one parsed line.
type Line struct {
	Name   string
	Digest [DigestLen]byte
	Policy Policy
}

// ParseRate reads a rate as the keys file and -key-rate write it: "Q/W" with
// W a Go duration or one of s, m, h (for 1s, 1m, 1h), e.g. "60/m" or
// "100/10s"; "off" or "0" is no limit. The window is whole seconds, as the
// RateLimit-Policy header can only say that.
func ParseRate(s string) (quota int, window time.Duration, err error) {
	s = strings.TrimSpace(s)
	if s == "off" || s == "0" {
		return 0, 0, nil
	}
	qs, ws, ok := strings.Cut(s, "/")
	if !ok {
		return 0, 0, fmt.Errorf("rate %q: want QUOTA/WINDOW, e.g. 60/m, or off", s)
	}
	q, err := strconv.Atoi(qs)
	if err != nil || q <= 0 {
		return 0, 0, fmt.Errorf("rate %q: quota must be a positive integer", s)
	}
	switch ws {
	case "s", "m", "h":
		ws = "1" + ws
	}
	w, err := time.ParseDuration(ws)
	if err != nil || w < time.Second || w%time.Second != 0 {
		return 0, 0, fmt.Errorf("rate %q: window must be whole seconds (s, m, h, or a duration like 10s)", s)
	}
	return q, w, nil
}

// ApplySetting sets the one setting f ("rate=Q/W" or "concurrency=N") in p.
func ApplySetting(p *Policy, f string) error {
	k, v, _ := strings.Cut(f, "=")
	switch k {
	case "rate":
		q, w, err := ParseRate(v)
		if err != nil {
			return err
		}
		p.Quota, p.Window = q, w
	case "concurrency":
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("concurrency %q: want a non-negative integer (0 = no cap)", v)
		}
		p.Concurrency = n
	default:
		return fmt.Errorf("unknown setting %q (want rate=Q/W or concurrency=N)", f)
	}
	return nil
}

// Parse reads one non-blank, non-comment line; def is the policy of a line
// that sets none. Errors say what is wrong but not where: the caller knows
// the file and line.
func Parse(line string, def Policy) (Line, error) {
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return Line{}, fmt.Errorf("want name:sha256hex")
	}
	name, hexDigest, ok := strings.Cut(fields[0], ":")
	if !ok {
		return Line{}, fmt.Errorf("want name:sha256hex")
	}
	if !ValidName(name) {
		return Line{}, fmt.Errorf("name %q: %s", name, NameRule)
	}
	l := Line{Name: name, Policy: def}
	b, err := hex.DecodeString(hexDigest)
	if err != nil || len(b) != DigestLen {
		// Not the key itself: an operator who pasted the key here learns
		// it at once, and the key is not echoed to the log.
		return Line{}, fmt.Errorf("the part after %q must be the key's SHA-256 as 64 hex digits (pyexec-keys hash), not the key", name+":")
	}
	copy(l.Digest[:], b)
	for _, f := range fields[1:] {
		if err := ApplySetting(&l.Policy, f); err != nil {
			return Line{}, err
		}
	}
	return l, nil
}
