package wire

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// File name rules, shared by the gateway, the supervisor and (as a copy)
// the runner: a name is a relative path of at most MaxFileNameBytes bytes
// and MaxFileDepth components, each a sane name of its own.
const (
	MaxFileNameBytes = 255
	MaxFileDepth     = 8
)

// CheckFileName reports why name is not acceptable as the name of an input
// file, or nil. Names are relative paths with '/' separators: no absolute
// path, no empty, "." or ".." component, no backslash, no control
// character, valid UTF-8. The error never quotes the name whole.
func CheckFileName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("a file name must not be empty")
	case len(name) > MaxFileNameBytes:
		return fmt.Errorf("file name %s is longer than %d bytes", QuoteName(name), MaxFileNameBytes)
	case !utf8.ValidString(name):
		return fmt.Errorf("file name %s is not valid UTF-8", QuoteName(name))
	case strings.HasPrefix(name, "/"):
		return fmt.Errorf("file name %s is absolute; names are relative to the working directory", QuoteName(name))
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return fmt.Errorf("file name %s holds a control character or a backslash", QuoteName(name))
		}
	}
	parts := strings.Split(name, "/")
	if len(parts) > MaxFileDepth {
		return fmt.Errorf("file name %s is more than %d levels deep", QuoteName(name), MaxFileDepth)
	}
	for _, p := range parts {
		switch p {
		case "":
			return fmt.Errorf("file name %s has an empty path component", QuoteName(name))
		case ".", "..":
			return fmt.Errorf("file name %s has a %q component", QuoteName(name), p)
		}
	}
	return nil
}

// CheckFiles checks every name and that no name repeats or is both a file
// and the directory of another; count and size caps are the caller's.
func CheckFiles(files []File) error {
	seen := make(map[string]bool, len(files))
	for _, f := range files {
		if err := CheckFileName(f.Name); err != nil {
			return err
		}
		if seen[f.Name] {
			return fmt.Errorf("file name %s is given twice", QuoteName(f.Name))
		}
		seen[f.Name] = true
	}
	for _, f := range files {
		for i := strings.IndexByte(f.Name, '/'); i >= 0; i = nextSlash(f.Name, i) {
			if seen[f.Name[:i]] {
				return fmt.Errorf("file name %s is also a directory of %s", QuoteName(f.Name[:i]), QuoteName(f.Name))
			}
		}
	}
	return nil
}

func nextSlash(s string, i int) int {
	j := strings.IndexByte(s[i+1:], '/')
	if j < 0 {
		return -1
	}
	return i + 1 + j
}

// QuoteName quotes a client-supplied name for an error message, shortened
// so a huge name is not echoed back whole.
func QuoteName(s string) string {
	const keep = 64
	if len(s) > keep {
		cut := keep
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return fmt.Sprintf("%q...", s[:cut])
	}
	return fmt.Sprintf("%q", s)
}
