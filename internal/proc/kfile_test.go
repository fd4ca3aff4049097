package proc

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestReadKernelFileReadsProcToTheEnd(t *testing.T) {
	// /proc/self/status is longer than one small read and generated per read.
	want, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadKernelFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	// Counters in it move between the two reads; the lines do not.
	if g, w := strings.Count(string(got), "\n"), strings.Count(string(want), "\n"); g != w || !strings.HasPrefix(string(got), "Name:") {
		t.Fatalf("read %d lines, want %d:\n%s", g, w, got)
	}
}

func TestReadKernelFileBounds(t *testing.T) {
	dir := t.TempDir()
	at, over := filepath.Join(dir, "at"), filepath.Join(dir, "over")
	if err := os.WriteFile(at, []byte(strings.Repeat("x", MaxKernelFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(over, []byte(strings.Repeat("x", MaxKernelFile+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadKernelFile(at); err != nil || len(b) != MaxKernelFile {
		t.Fatalf("at the bound: %d bytes, %v", len(b), err)
	}
	if _, err := ReadKernelFile(over); !errors.Is(err, unix.EFBIG) {
		t.Fatalf("over the bound: %v, want EFBIG", err)
	}
	_, err := ReadKernelFile(filepath.Join(dir, "none"))
	var pe *fs.PathError
	if !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &pe) || pe.Op != "open" {
		t.Fatalf("missing file: %v", err)
	}
}

func TestWriteKernelFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := WriteKernelFile(p, []byte("64"), 0); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("without O_CREAT: %v", err)
	}
	if err := WriteKernelFile(p, []byte("1024"), unix.O_CREAT|unix.O_TRUNC); err != nil {
		t.Fatal(err)
	}
	if err := WriteKernelFile(p, []byte("64"), unix.O_TRUNC); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "64" {
		t.Fatalf("file holds %q, want 64", b)
	}
	// The kernel's refusal comes back as the write's error.
	err := WriteKernelFile("/proc/self/oom_score_adj", []byte("not a number"), 0)
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe.Op != "write" || !errors.Is(err, unix.EINVAL) {
		t.Fatalf("refused write: %v, want a write error EINVAL", err)
	}
	// The descriptor is closed: none of this test's files stays open.
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		if target, _ := os.Readlink("/proc/self/fd/" + fd.Name()); strings.HasPrefix(target, dir) {
			t.Fatalf("fd %s still open on %s", fd.Name(), target)
		}
	}
}
