package wire

import (
	"fmt"
	"path"
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

// mediaTypes are the media types of output files by extension: a fixed
// table, so an answer does not depend on the host's mime database.
var mediaTypes = map[string]string{
	".csv": "text/csv", ".tsv": "text/tab-separated-values", ".txt": "text/plain",
	".json": "application/json", ".ndjson": "application/x-ndjson", ".html": "text/html",
	".md": "text/markdown", ".xml": "application/xml", ".svg": "image/svg+xml",
	".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
	".webp": "image/webp", ".pdf": "application/pdf", ".zip": "application/zip",
	".gz": "application/gzip", ".parquet": "application/vnd.apache.parquet",
	".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}

// MediaType is the media type an output file is answered with (the HTTP
// answer's "media_type"), by its name's extension; application/octet-stream
// when the table has none.
func MediaType(name string) string {
	if t, ok := mediaTypes[strings.ToLower(path.Ext(name))]; ok {
		return t
	}
	return "application/octet-stream"
}
