package jail

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
)

func TestNeedsStaging(t *testing.T) {
	base := reachableTempDir(t)
	mk := func(rel string, mode os.FileMode, dir bool) string {
		p := filepath.Join(base, rel)
		if dir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		} else {
			write(t, p, "x")
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	open := mk("open", 0o755, true)
	openFile := mk("open/file", 0o644, false)
	mk("closed", 0o755, true)
	inClosed := mk("closed/lib", 0o755, true)
	inClosedFile := mk("closed/lib.so", 0o644, false)
	mk("closed", 0o700, true)
	privFile := mk("open/secret", 0o600, false)
	privDir := mk("open/private", 0o700, true)
	tests := []struct {
		path string
		want bool
	}{
		{"/usr/lib", false},
		{open, false},
		{openFile, false},
		{inClosed, true},
		{inClosedFile, true},
		{privFile, true},
		{privDir, true},
		{filepath.Join(base, "missing"), true},
	}
	for _, tt := range tests {
		if got := NeedsStaging(tt.path); got != tt.want {
			t.Errorf("NeedsStaging(%s) = %v, want %v", tt.path, got, tt.want)
		}
	}
}

func TestStageRefusesSharedNamespace(t *testing.T) {
	requireRoot(t)
	dir := reachableTempDir(t)
	_, err := Stage(dir, []Mount{{Kind: Bind, Src: "/usr", Dst: "/usr"}})
	if err == nil {
		Unstage(dir)
		t.Fatal("Stage in the test's mount namespace = nil error, want a refusal")
	}
	if !strings.Contains(err.Error(), "refusing") {
		t.Errorf("Stage in the test's mount namespace: %v, want a refusal", err)
	}
	if mountedUnder(t, dir) {
		t.Errorf("Stage refused but mounted under %s", dir)
	}
}

func TestStage(t *testing.T) {
	requireRoot(t)
	if !inPrivateMountNS(t) {
		return
	}
	dir := reachableTempDir(t)
	base := t.TempDir()
	hidden := filepath.Join(base, "hidden")
	if err := os.Mkdir(hidden, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(hidden, "lib.so"), "elf")
	if err := os.Chmod(base, 0o700); err != nil { // like /root
		t.Fatal(err)
	}
	in := []Mount{
		{Kind: Bind, Src: hidden, Dst: "/opt/hidden"},
		{Kind: Bind, Src: "/usr/lib", Dst: "/usr/lib"},
		{Kind: Bind, Src: filepath.Join(hidden, "lib.so"), Dst: "/lib/lib.so"},
		{Kind: Bind, Src: hidden, Dst: "/again"},
		{Kind: Tmpfs, Dst: "/dev/shm", Options: "size=1"},
	}
	out, err := Stage(dir, in)
	if err != nil {
		t.Fatalf("Stage: %v", err)
	}
	defer func() {
		if err := Unstage(dir); err != nil {
			t.Errorf("Unstage: %v", err)
		}
		if mountedUnder(t, dir) {
			t.Errorf("after Unstage, mounts remain under %s", dir)
		}
		if err := Unstage(dir); err != nil {
			t.Errorf("second Unstage: %v, want nil", err)
		}
	}()
	want := []string{dir + "/0", "/usr/lib", dir + "/1", dir + "/0", ""}
	for i, m := range out {
		if m.Src != want[i] || m.Dst != in[i].Dst || m.Kind != in[i].Kind {
			t.Errorf("Stage()[%d] = %+v, want Src %q and the rest of %+v", i, m, want[i], in[i])
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "0", "lib.so")); err != nil || string(b) != "elf" {
		t.Errorf("staged directory shows lib.so = %q, %v; want the file", b, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "0", "new"), nil, 0o644); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("writing into a staged bind: %v, want read-only file system", err)
	}
	for _, p := range []string{dir, dir + "/0", dir + "/1"} {
		if NeedsStaging(p) {
			t.Errorf("NeedsStaging(%s) = true after staging, want false", p)
		}
	}
}

// mountedUnder reports whether this process's mount table has a mount at
// or below dir.
func mountedUnder(t *testing.T, dir string) bool {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ms, err := mountinfo.GetMountsFromReader(f, func(m *mountinfo.Info) (skip, stop bool) {
		return !within(m.Mountpoint, dir), false
	})
	if err != nil {
		t.Fatal(err)
	}
	return len(ms) > 0
}

func TestUnstageNotMounted(t *testing.T) {
	requireRoot(t)
	if err := Unstage(t.TempDir()); err != nil {
		t.Errorf("Unstage(not a mount point) = %v, want nil", err)
	}
}

// Neutral mounts reach the jail without their host paths: a file is copied,
// a directory is an overlay whose layers are in the staging directory, with
// replaced files on top.
func TestStageNeutral(t *testing.T) {
	requireRoot(t)
	if !inPrivateMountNS(t) {
		return
	}
	dir := reachableTempDir(t)
	checkout := filepath.Join(t.TempDir(), "my-checkout")
	venv := filepath.Join(checkout, ".venv")
	if err := os.MkdirAll(filepath.Join(venv, "lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(venv, "lib", "mod.py"), "x = 1")
	write(t, filepath.Join(venv, "pyvenv.cfg"), "home = /usr/bin\ncommand = python -m venv "+venv+"\n")
	write(t, filepath.Join(checkout, "runner.py"), "print('runner')")
	in := []Mount{
		{Kind: Bind, Src: venv, Dst: "/opt/venv"},
		{Kind: Bind, Src: filepath.Join(checkout, "runner.py"), Dst: "/opt/runner.py"},
		{Kind: Bind, Src: "/usr/lib", Dst: "/usr/lib"},
	}
	out, err := StageNeutral(dir, in, []Neutral{
		{Dst: "/opt/venv", Replace: map[string][]byte{"pyvenv.cfg": []byte("home = /usr/bin\n")}},
		{Dst: "/opt/runner.py"},
	})
	if err != nil {
		t.Fatalf("StageNeutral: %v", err)
	}
	defer Unstage(dir)
	if out[0].Src != dir+"/n0" || out[1].Src != dir+"/n1" || out[2].Src != "/usr/lib" {
		t.Fatalf("sources %q %q %q", out[0].Src, out[1].Src, out[2].Src)
	}
	for path, want := range map[string]string{
		out[0].Src + "/lib/mod.py": "x = 1",
		out[0].Src + "/pyvenv.cfg": "home = /usr/bin\n",
		out[1].Src:                 "print('runner')",
	} {
		if b, err := os.ReadFile(path); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", path, b, err, want)
		}
	}
	if err := os.WriteFile(out[0].Src+"/lib/new", nil, 0o644); err == nil {
		t.Error("the overlay is writable")
	}
	// What a jail that binds these would see of them in its mountinfo.
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(info), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 4 && (fields[4] == out[0].Src || fields[4] == out[1].Src) && strings.Contains(line, checkout) {
			t.Errorf("a neutral mount names the checkout: %s", line)
		}
	}
}
