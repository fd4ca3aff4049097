package stack

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
)

// Tail keeps the last 64 KiB written to it, and apart from that the last 20
// lines logged at error level or above, which a busy log would push out.
// Safe for concurrent use.
type Tail struct {
	mu      sync.Mutex // guards the rest
	b       []byte
	partial []byte   // an unfinished line
	errs    []string // the last error lines
}

const (
	tailBytes      = 64 << 10
	tailErrorLines = 20
)

func (t *Tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - tailBytes; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	t.partial = append(t.partial, p...)
	for {
		i := bytes.IndexByte(t.partial, '\n')
		if i < 0 {
			break
		}
		if line := string(t.partial[:i]); errorLine(line) != "" {
			t.errs = append(t.errs, line)
			if len(t.errs) > tailErrorLines {
				t.errs = t.errs[1:]
			}
		}
		t.partial = t.partial[i+1:]
	}
	if len(t.partial) > tailBytes {
		t.partial = t.partial[:0] // a line that long is no log line
	}
	return len(p), nil
}

// String is the kept tail.
func (t *Tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// ErrorLines returns the last lines logged at error level or above, one a
// line, or "(none)".
func (t *Tail) ErrorLines() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.errs) == 0 {
		return "(none)"
	}
	return strings.Join(t.errs, "\n")
}

// LastError is the most telling line of the log: the last one logged at
// error level or above (as "msg: error" for a JSON log), else the last line
// of the tail.
func (t *Tail) LastError() string {
	t.mu.Lock()
	var last string
	if len(t.errs) > 0 {
		last = t.errs[len(t.errs)-1]
	}
	b := string(t.b)
	t.mu.Unlock()
	if last != "" {
		return errorLine(last)
	}
	lines := strings.Split(strings.TrimSpace(b), "\n")
	if l := strings.TrimSpace(lines[len(lines)-1]); l != "" {
		return l
	}
	return "(no log)"
}

// errorLine is a JSON log line logged at error level or above, as "msg:
// error" (or msg alone); "" for any other line.
func errorLine(line string) string {
	// The binaries log Cloud Logging's severity and message (package
	// cloudlog).
	var e struct {
		Severity string `json:"severity"`
		Msg      string `json:"message"`
		Error    string `json:"error"`
	}
	if json.Unmarshal([]byte(line), &e) != nil || (e.Severity != "ERROR" && e.Severity != "CRITICAL" && e.Severity != "ALERT" && e.Severity != "EMERGENCY") {
		return ""
	}
	if e.Error != "" {
		return e.Msg + ": " + e.Error
	}
	return e.Msg
}
