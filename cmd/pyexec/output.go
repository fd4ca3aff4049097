package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
)

// response is POST /execute's answer (gateway/API.md), whichever way it
// came: decoded from the gateway's JSON, or built from the supervisor's
// outcome in the socket mode. Field order and omissions follow the API, so
// --json prints the same object either way.
type response struct {
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *apiError       `json:"error,omitempty"`
	Stdout    string          `json:"stdout"`
	Stderr    string          `json:"stderr"`
	Stats     *stats          `json:"stats,omitempty"`
	Truncated *truncated      `json:"truncated,omitempty"`
	Files     []outFile       `json:"files,omitempty"`
	Images    []image         `json:"images,omitempty"`
}

type apiError struct {
	Type      string `json:"type"`
	Message   string `json:"message"`
	Traceback string `json:"traceback,omitempty"`
}

type stats struct {
	WallMS          int64 `json:"wall_ms"`
	CPUMS           int64 `json:"cpu_ms"`
	PeakMemoryBytes int64 `json:"peak_memory_bytes"`
	QueueMS         int64 `json:"queue_ms,omitempty"`
}

type truncated struct {
	Stdout bool `json:"stdout"`
	Stderr bool `json:"stderr"`
	Files  bool `json:"files,omitempty"`
	Images bool `json:"images,omitempty"`
}

// outFile and image carry their bytes base64-encoded in JSON, which is what
// encoding/json does with a []byte.
type outFile struct {
	Name      string `json:"name"`
	Size      int64  `json:"size"`
	MediaType string `json:"media_type"`
	Content   []byte `json:"content"`
}

type image struct {
	MediaType string `json:"media_type"`
	Data      []byte `json:"data"`
}

// failure is an answer that is an error; its exit status comes from the
// type.
func failure(errType, format string, a ...any) *response {
	return &response{Error: &apiError{Type: errType, Message: fmt.Sprintf(format, a...)}}
}

// printer writes the streamed output and the final answer, and remembers
// whether stdout ends mid-line so the result starts on a line of its own.
type printer struct {
	stdout, stderr io.Writer
	json           bool // print the whole answer, not just the result
	verbose        bool
	outDir         string
	// midLine: the last byte written to stdout was not a newline.
	midLine bool
	// streamed: the script's output was already written as it came.
	streamed bool
}

func (p *printer) out(b []byte) {
	if len(b) == 0 {
		return
	}
	p.streamed = true
	p.stdout.Write(b)
	p.midLine = b[len(b)-1] != '\n'
}

func (p *printer) err(b []byte) {
	p.streamed = true
	p.stderr.Write(b)
}

// finish prints the answer, saves its files and images, and returns the
// exit status.
func (p *printer) finish(r *response) int {
	if !p.streamed {
		// The answer came whole (no stream): its output first, as a
		// stream would have shown it.
		p.out([]byte(r.Stdout))
		p.err([]byte(r.Stderr))
	}
	code := exitOK
	if r.Error != nil {
		code = exitCode(r.Error.Type)
	}
	saveErr := p.save(r)
	if p.midLine {
		fmt.Fprintln(p.stdout)
	}
	if p.json {
		enc := json.NewEncoder(p.stdout)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		enc.Encode(r)
	} else if r.Error == nil {
		var b bytes.Buffer
		if json.Indent(&b, r.Result, "", "  ") != nil {
			b.Reset()
			b.Write(r.Result)
		}
		b.WriteByte('\n')
		p.stdout.Write(b.Bytes())
	}
	if r.Error != nil {
		if r.Error.Traceback != "" {
			tb := r.Error.Traceback
			if tb[len(tb)-1] != '\n' {
				tb += "\n"
			}
			io.WriteString(p.stderr, tb)
		}
		fmt.Fprintf(p.stderr, "pyexec: %s: %s (exit %d)\n", r.Error.Type, r.Error.Message, code)
	}
	if r.Truncated != nil {
		t := r.Truncated
		for _, c := range []struct {
			name string
			cut  bool
		}{{"stdout", t.Stdout}, {"stderr", t.Stderr}, {"output files", t.Files}, {"images", t.Images}} {
			if c.cut {
				fmt.Fprintf(p.stderr, "pyexec: %s truncated by the service's caps\n", c.name)
			}
		}
	}
	if p.verbose && r.Stats != nil {
		fmt.Fprintf(p.stderr, "pyexec: wall %d ms, cpu %d ms, peak memory %d bytes, queued %d ms\n",
			r.Stats.WallMS, r.Stats.CPUMS, r.Stats.PeakMemoryBytes, r.Stats.QueueMS)
	}
	if saveErr != nil {
		fmt.Fprintf(p.stderr, "pyexec: saving output: %v\n", saveErr)
		if code == exitOK {
			code = exitSave
		}
	}
	return code
}

// save writes the answer's files to <out>/files/<name> and its images to
// <out>/images/figure-<n>.png. The names come from the sandbox, so they are
// written through an os.Root: a name that would leave the directory
// ("../x", an absolute path, a symlink planted earlier) fails instead.
func (p *printer) save(r *response) error {
	if len(r.Files) == 0 && len(r.Images) == 0 {
		return nil
	}
	if err := os.MkdirAll(p.outDir, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(p.outDir)
	if err != nil {
		return err
	}
	defer root.Close()
	var errs []error
	put := func(name string, data []byte) {
		if !filepath.IsLocal(name) {
			errs = append(errs, fmt.Errorf("%q: not a local file name", name))
			return
		}
		if dir := filepath.Dir(name); dir != "." {
			if err := root.MkdirAll(dir, 0o755); err != nil {
				errs = append(errs, err)
				return
			}
		}
		if err := root.WriteFile(name, data, 0o644); err != nil {
			errs = append(errs, err)
			return
		}
		// Quoted: the name comes from the sandbox and may hold control
		// characters (a newline, a terminal escape sequence).
		fmt.Fprintf(p.stderr, "pyexec: saved %q (%d bytes)\n", filepath.Join(p.outDir, name), len(data))
	}
	for _, f := range r.Files {
		put(filepath.Join("files", filepath.FromSlash(f.Name)), f.Content)
	}
	for i, im := range r.Images {
		ext := ".png"
		if im.MediaType != "image/png" {
			ext = ".bin"
		}
		put(filepath.Join("images", "figure-"+strconv.Itoa(i+1)+ext), im.Data)
	}
	return errors.Join(errs...)
}
