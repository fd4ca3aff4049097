package jail

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenLimits are the defaults of the limit table (docs/ARCHITECTURE.md#limits).
var goldenLimits = Limits{
	Wall:          30 * time.Second,
	MemoryBytes:   512 << 20,
	Pids:          64,
	CPUTime:       30 * time.Second,
	FileSizeBytes: 64 << 20,
	OpenFiles:     256,
	TmpBytes:      64 << 20,
	TmpInodes:     4096,
}

// goldenPolicy is a typical policy with made-up but plausible paths.
func goldenPolicy() Policy {
	return Policy{
		Python: "/opt/app/.venv/bin/python3",
		Args:   []string{"/opt/app/runner/runner.py", "--fd", "4"},
		Mounts: []Mount{
			{Kind: Bind, Src: "/opt/app/.venv", Dst: "/opt/app/.venv"},
			{Kind: Bind, Src: "/run/python-executor/stage/0", Dst: "/root/.pyenv/versions/3.11.7"},
			{Kind: Bind, Src: "/usr/lib/x86_64-linux-gnu/libc.so.6", Dst: "/lib/x86_64-linux-gnu/libc.so.6"},
			{Kind: Bind, Src: "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", Dst: "/lib64/ld-linux-x86-64.so.2"},
			{Kind: Bind, Src: "/opt/app/runner", Dst: "/opt/app/runner"},
		},
		OutsideUID: 995,
		OutsideGID: 994,
		Env:        []string{"HOME=/tmp", "LANG=C.UTF-8", "OPENBLAS_NUM_THREADS=1", "PYTHONUNBUFFERED=1"},
		PassFDs:    []int{5, 4},
		LogFD:      3,
		Limits:     goldenLimits,
	}
}

func TestRenderGolden(t *testing.T) {
	tests := []struct {
		name   string
		policy func() Policy
	}{
		{"no_cgroup", goldenPolicy},
		{"cgroup_v1_seccomp", func() Policy {
			p := goldenPolicy()
			p.Seccomp = true
			p.Cgroup = &Placement{
				Mode:        CgroupV1,
				MemoryMount: "/sys/fs/cgroup/memory",
				PidsMount:   "/sys/fs/cgroup/pids",
				Parent:      "python-executor/e-42",
				MemoryMax:   513 << 20,
				PidsMax:     65,
			}
			return p
		}},
		{"cgroup_v2", func() Policy {
			p := goldenPolicy()
			p.Cgroup = &Placement{Mode: CgroupV2, Dir: "/sys/fs/cgroup/python-executor/e-42", MemoryMax: 513 << 20, PidsMax: 65}
			return p
		}},
		{"zygote_cgroup_v1_seccomp", func() Policy {
			p := goldenPolicy()
			p.Zygote = true
			p.Seccomp = true
			p.Cgroup = &Placement{
				Mode:        CgroupV1,
				MemoryMount: "/sys/fs/cgroup/memory",
				PidsMount:   "/sys/fs/cgroup/pids",
				Parent:      "python-executor/zygote-0",
				MemoryMax:   1025 << 20,
				PidsMax:     65,
			}
			return p
		}},
		{"venv_under_tmp_no_logfd", func() Policy {
			// On CI the checkout (and venv) may live under /tmp: the venv
			// must be mounted after, i.e. on top of, the jail's /tmp.
			p := goldenPolicy()
			p.Python = "/tmp/ci/app/.venv/bin/python3"
			p.Mounts[0] = Mount{Kind: Bind, Src: "/tmp/ci/app/.venv", Dst: "/tmp/ci/app/.venv"}
			p.LogFD = 0
			p.PassFDs = nil
			return p
		}},
		{"quoting", func() Policy {
			p := goldenPolicy()
			p.Args = []string{`-c`, "print(\"a\\b\")\nx = 'é'\t# \x01"}
			p.Env = []string{`Q="}` + "\n" + `mount { src: "/" dst: "/" rw: true }`}
			p.Limits.Wall = 1500 * time.Millisecond
			p.Limits.CPUTime = time.Millisecond
			p.Limits.FileSizeBytes = 1
			p.Limits.MemoryBytes = mib + 1
			return p
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Render(tt.policy())
			if err != nil {
				t.Fatalf("Render(%s) error: %v", tt.name, err)
			}
			golden := filepath.Join("testdata", tt.name+".cfg")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("read golden (run go test ./jail -run TestRenderGolden -update): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Render(%s) differs from %s:\n%s", tt.name, golden, lineDiff(string(want), string(got)))
			}
		})
	}
}

// lineDiff shows the first differing lines; enough to see what changed.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return "line " + strconv.Itoa(i+1) + ":\n  want: " + wl + "\n  got:  " + gl
		}
	}
	return "(identical lines)"
}

func TestRenderDeterministic(t *testing.T) {
	p := goldenPolicy()
	a, err := Render(p)
	if err != nil {
		t.Fatal(err)
	}
	// The order of the policy's mounts does not matter.
	for i, j := 0, len(p.Mounts)-1; i < j; i, j = i+1, j-1 {
		p.Mounts[i], p.Mounts[j] = p.Mounts[j], p.Mounts[i]
	}
	b, err := Render(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("Render(reversed mounts) differs:\n%s", lineDiff(string(a), string(b)))
	}
}

func TestRenderMountOrder(t *testing.T) {
	p := goldenPolicy()
	p.Mounts = append(p.Mounts,
		Mount{Kind: Bind, Src: "/tmp/ci/.venv", Dst: "/tmp/ci/.venv"},
		Mount{Kind: Tmpfs, Dst: "/dev/shm", RW: true, Options: "size=1048576"},
	)
	var dsts []string
	for _, m := range jailMounts(p) {
		dsts = append(dsts, m.Dst)
	}
	pos := func(d string) int {
		for i, x := range dsts {
			if x == d {
				return i
			}
		}
		t.Fatalf("jailMounts: %s missing from %q", d, dsts)
		return -1
	}
	for _, pair := range [][2]string{
		{"/", "/tmp"}, {"/tmp", "/tmp/ci/.venv"}, {"/", "/dev/null"},
		{"/lib64/ld-linux-x86-64.so.2", "/opt/app/.venv"}, {"/opt/app/.venv", "/root/.pyenv/versions/3.11.7"},
	} {
		if pos(pair[0]) > pos(pair[1]) {
			t.Errorf("jailMounts order %q: %s after %s, want before", dsts, pair[0], pair[1])
		}
	}
	if dsts[0] != "/" {
		t.Errorf("jailMounts()[0] = %s, want /", dsts[0])
	}
}

func TestRenderRejects(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Policy)
		want   string
	}{
		{"relative python", func(p *Policy) { p.Python = "python3" }, "clean absolute path"},
		{"unclean python", func(p *Policy) { p.Python = "/opt/../bin/python3" }, "clean absolute path"},
		{"NUL in arg", func(p *Policy) { p.Args = []string{"a\x00b"} }, "NUL"},
		{"invalid UTF-8 arg", func(p *Policy) { p.Args = []string{"\xff"} }, "UTF-8"},
		{"mount kind zero", func(p *Policy) { p.Mounts = []Mount{{Src: "/a", Dst: "/a"}} }, "invalid kind"},
		{"bind without src", func(p *Policy) { p.Mounts = []Mount{{Kind: Bind, Dst: "/a"}} }, "source"},
		{"bind with options", func(p *Policy) { p.Mounts = []Mount{{Kind: Bind, Src: "/a", Dst: "/a", Options: "ro"}} }, "binds take none"},
		{"tmpfs with src", func(p *Policy) { p.Mounts = []Mount{{Kind: Tmpfs, Src: "/a", Dst: "/a"}} }, "want none"},
		{"tmpfs options newline", func(p *Policy) { p.Mounts = []Mount{{Kind: Tmpfs, Dst: "/a", Options: "size=1\nx"}} }, "white space"},
		{"proc mount", func(p *Policy) { p.Mounts = []Mount{{Kind: Proc, Dst: "/proc2"}} }, "mounts /proc itself"},
		{"replaces /tmp", func(p *Policy) { p.Mounts = []Mount{{Kind: Bind, Src: "/var/tmp", Dst: "/tmp"}} }, "mounted by the jail"},
		{"replaces root", func(p *Policy) { p.Mounts = []Mount{{Kind: Bind, Src: "/", Dst: "/"}} }, "mounted by the jail"},
		{"under /proc", func(p *Policy) { p.Mounts = []Mount{{Kind: Bind, Src: "/x", Dst: "/proc/sys"}} }, "inside the jail's /proc"},
		{"relative dst", func(p *Policy) { p.Mounts = []Mount{{Kind: Bind, Src: "/x", Dst: "x"}} }, "clean absolute path"},
		{"dst newline", func(p *Policy) { p.Mounts = []Mount{{Kind: Bind, Src: "/x", Dst: "/x\ny"}} }, "line break"},
		{"duplicate dst", func(p *Policy) {
			p.Mounts = []Mount{{Kind: Bind, Src: "/x", Dst: "/x"}, {Kind: Bind, Src: "/y", Dst: "/x"}}
		}, "mounted twice"},
		{"root uid", func(p *Policy) { p.OutsideUID = 0 }, "non-root uid"},
		{"root gid", func(p *Policy) { p.OutsideGID = 0 }, "non-root gid"},
		{"negative uid", func(p *Policy) { p.OutsideUID = -1 }, "non-root uid"},
		{"env without =", func(p *Policy) { p.Env = []string{"PATH"} }, "want NAME=value"},
		{"env bad name", func(p *Policy) { p.Env = []string{"1X=a"} }, "want NAME=value"},
		{"env empty name", func(p *Policy) { p.Env = []string{"=a"} }, "want NAME=value"},
		{"env twice", func(p *Policy) { p.Env = []string{"A=1", "A=2"} }, "set twice"},
		{"env NUL", func(p *Policy) { p.Env = []string{"A=\x00"} }, "NUL"},
		{"pass fd 1", func(p *Policy) { p.PassFDs = []int{1} }, "want >= 3"},
		{"pass fd twice", func(p *Policy) { p.PassFDs = []int{4, 4} }, "listed twice"},
		{"log fd 2", func(p *Policy) { p.LogFD = 2 }, "want 0 (none) or >= 3"},
		{"log fd passed", func(p *Policy) { p.LogFD = 4 }, "also passed"},
		{"zero wall", func(p *Policy) { p.Limits.Wall = 0 }, "wall"},
		{"huge wall", func(p *Policy) { p.Limits.Wall = 1 << 62 }, "wall"},
		{"zero memory", func(p *Policy) { p.Limits.MemoryBytes = 0 }, "memory"},
		{"zero pids", func(p *Policy) { p.Limits.Pids = 0 }, "pids"},
		{"zero cpu", func(p *Policy) { p.Limits.CPUTime = 0 }, "cpu"},
		{"zero fsize", func(p *Policy) { p.Limits.FileSizeBytes = 0 }, "file size"},
		{"zero nofile", func(p *Policy) { p.Limits.OpenFiles = 0 }, "open files"},
		{"zero tmp", func(p *Policy) { p.Limits.TmpBytes = 0 }, "tmp size"},
		{"zero inodes", func(p *Policy) { p.Limits.TmpInodes = 0 }, "tmp inodes"},
		{"placement zero", func(p *Policy) { p.Cgroup = &Placement{} }, "want positive"},
		{"placement mode", func(p *Policy) { p.Cgroup = &Placement{MemoryMax: 1, PidsMax: 1} }, "want v1 or v2"},
		{"v1 placement parent", func(p *Policy) {
			p.Cgroup = &Placement{Mode: CgroupV1, MemoryMount: "/m", PidsMount: "/p", Parent: "../x", MemoryMax: 1, PidsMax: 1}
		}, "clean relative path"},
		{"v2 placement dir", func(p *Policy) {
			p.Cgroup = &Placement{Mode: CgroupV2, Dir: "rel", MemoryMax: 1, PidsMax: 1}
		}, "clean absolute path"},
		{"v2 placement with v1 fields", func(p *Policy) {
			p.Cgroup = &Placement{Mode: CgroupV2, Dir: "/d", Parent: "x", MemoryMax: 1, PidsMax: 1}
		}, "v1 fields"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := goldenPolicy()
			tt.modify(&p)
			got, err := Render(p)
			if err == nil {
				t.Fatalf("Render(%s) = %d bytes, nil error; want error containing %q", tt.name, len(got), tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Render(%s) error = %q, want it to contain %q", tt.name, err, tt.want)
			}
		})
	}
}

func TestQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `""`},
		{"/usr/lib", `"/usr/lib"`},
		{`a"b`, `"a\"b"`},
		{`a\b`, `"a\\b"`},
		{"a\nb", `"a\nb"`},
		{"\t\x01\x7f", `"\011\001\177"`},
		{"é", `"é"`},
		{`" } mount { dst: "/`, `"\" } mount { dst: \"/"`},
	}
	for _, tt := range tests {
		if got := quote(tt.in); got != tt.want {
			t.Errorf("quote(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestArgv(t *testing.T) {
	got := Argv("/usr/bin/nsjail", "/run/px/1.cfg")
	want := []string{"/usr/bin/nsjail", "--config", "/run/px/1.cfg"}
	if strings.Join(got, " ") != strings.Join(want, " ") || len(got) != len(want) {
		t.Errorf("Argv() = %q, want %q", got, want)
	}
}

func TestRoundingHelpers(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want int64
	}{{time.Nanosecond, 1}, {time.Second, 1}, {time.Second + 1, 2}, {30 * time.Second, 30}} {
		if got := ceilSeconds(tt.d); got != tt.want {
			t.Errorf("ceilSeconds(%v) = %d, want %d", tt.d, got, tt.want)
		}
	}
	for _, tt := range []struct {
		n    int64
		want uint64
	}{{1, 1}, {mib, 1}, {mib + 1, 2}, {64 << 20, 64}} {
		if got := ceilMiB(tt.n); got != tt.want {
			t.Errorf("ceilMiB(%d) = %d, want %d", tt.n, got, tt.want)
		}
	}
}

func TestEnumStrings(t *testing.T) {
	for _, tt := range []struct {
		got, want string
	}{
		{Bind.String(), "bind"}, {Tmpfs.String(), "tmpfs"}, {Proc.String(), "proc"},
		{MountKind(0).String(), "MountKind(0)"},
		{CgroupNone.String(), "none"}, {CgroupV1.String(), "v1"}, {CgroupV2.String(), "v2"},
		{CgroupMode(0).String(), "CgroupMode(0)"},
	} {
		if tt.got != tt.want {
			t.Errorf("String() = %q, want %q", tt.got, tt.want)
		}
	}
}

// FuzzRenderQuoting checks that no argument or environment value can add a
// line (and so a field) to the config: quote must escape everything that
// could end a string.
func FuzzRenderQuoting(f *testing.F) {
	for _, s := range []string{"", `"`, `\`, "\n", "a\"\nmount { src: \"/\" }", "é\x01\x7f", `\"`} {
		f.Add(s)
	}
	base, err := Render(goldenPolicy())
	if err != nil {
		f.Fatal(err)
	}
	baseLines := bytes.Count(base, []byte("\n"))
	f.Fuzz(func(t *testing.T, s string) {
		p := goldenPolicy()
		p.Args = []string{s}
		p.Env = []string{"X=" + s}
		got, err := Render(p)
		if err != nil {
			if strings.IndexByte(s, 0) < 0 && utf8.ValidString(s) {
				t.Fatalf("Render(arg %q) error: %v", s, err)
			}
			return
		}
		// goldenPolicy has 3 args and 4 env entries; this one 1 and 1.
		if n := bytes.Count(got, []byte("\n")); n != baseLines-5 {
			t.Fatalf("Render(arg %q) has %d lines, want %d", s, n, baseLines-5)
		}
		for _, line := range strings.Split(string(got), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "arg: ") && line != "  arg: "+quote(s) {
				t.Fatalf("Render(arg %q): line %q, want %q", s, line, "  arg: "+quote(s))
			}
		}
	})
}
