package bench

import (
	"os"
	"testing"
)

// smapsRollupSample is /proc/<pid>/smaps_rollup of a jailed python that has
// imported pandas (Linux 6.x).
const smapsRollupSample = `55f0cae57000-7ffed4255000 ---p 00000000 00:00 0                          [rollup]
Rss:               71236 kB
Pss:               60312 kB
Pss_Dirty:         52100 kB
Pss_Anon:          52004 kB
Pss_File:           8308 kB
Pss_Shmem:             0 kB
Shared_Clean:      12968 kB
Shared_Dirty:          0 kB
Private_Clean:      6168 kB
Private_Dirty:     52100 kB
Referenced:        71236 kB
Anonymous:         52004 kB
KSM:                   0 kB
LazyFree:              0 kB
AnonHugePages:         0 kB
ShmemPmdMapped:        0 kB
FilePmdMapped:         0 kB
Shared_Hugetlb:        0 kB
Private_Hugetlb:       0 kB
Swap:                  0 kB
SwapPss:               0 kB
Locked:                0 kB
`

func TestParseSmapsRollup(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    memUsage
		wantErr bool
	}{
		{"sample", smapsRollupSample, memUsage{Pss: 60312 << 10, Private: (6168 + 52100) << 10, Rss: 71236 << 10}, false},
		{"minimal", "Rss: 8 kB\nPss: 4 kB\n", memUsage{Pss: 4 << 10, Rss: 8 << 10}, false},
		{"kernel thread (empty)", "", memUsage{}, true},
		{"no pss", "Rss: 8 kB\nPrivate_Dirty: 4 kB\n", memUsage{}, true},
		{"other unit", "Rss: 8 MB\nPss: 4 kB\n", memUsage{}, true},
		{"not a number", "Rss: 8 kB\nPss: x kB\n", memUsage{}, true},
		{"negative", "Rss: 8 kB\nPss: -4 kB\n", memUsage{}, true},
		{"unused keys are ignored even when odd", "Rss: 8 kB\nPss: 4 kB\nVmFlags: rd wr mr\n", memUsage{Pss: 4 << 10, Rss: 8 << 10}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSmapsRollup([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseSmapsRollup(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("parseSmapsRollup(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseSmapsRollupOfThisProcess(t *testing.T) {
	b, err := os.ReadFile("/proc/self/smaps_rollup")
	if err != nil {
		// The benchmark's memory figures come from it: a kernel without it
		// (before 4.14) cannot run the benchmark either.
		t.Fatalf("no smaps_rollup here: %v", err)
	}
	m, err := parseSmapsRollup(b)
	if err != nil {
		t.Fatalf("parseSmapsRollup(/proc/self/smaps_rollup) error: %v\n%s", err, b)
	}
	if m.Rss <= 0 || m.Pss <= 0 || m.Pss > m.Rss || m.Private > m.Rss {
		t.Errorf("parseSmapsRollup(/proc/self/smaps_rollup) = %+v: implausible", m)
	}
}

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    procStat
		wantErr bool
	}{
		{
			"python",
			"4242 (python3) S 4240 4242 4242 0 -1 4194560 9051 0 0 0 31 7 0 0 20 0 1 0 123456 99999999 17000 18446744073709551615 1 1 0 0 0 0 0 16781312 2 0 0 0 17 1 0 0 0 0 0",
			procStat{PPid: 4240, State: 'S', CPUTicks: 38}, false,
		},
		{
			"comm with spaces and parentheses",
			"17 (a) b (c) R 1 17 17 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1 1 1",
			procStat{PPid: 1, State: 'R', CPUTicks: 11}, false,
		},
		{"zombie", "9 (x) Z 3 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0", procStat{PPid: 3, State: 'Z'}, false},
		{"truncated", "9 (x) S 3 9", procStat{}, true},
		{"no comm", "9 x S 3", procStat{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcStat([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseProcStat(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("parseProcStat(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseRealUID(t *testing.T) {
	status := "Name:\tpython3\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\nPid:\t4242\nPPid:\t4240\nUid:\t995\t995\t995\t995\nGid:\t994\t994\t994\t994\n"
	if got, err := parseRealUID([]byte(status)); err != nil || got != 995 {
		t.Errorf("parseRealUID(status) = %d, %v, want 995, nil", got, err)
	}
	if got, err := parseRealUID([]byte("Name:\tx\n")); err == nil {
		t.Errorf("parseRealUID(no Uid) = %d, nil, want an error", got)
	}
}

func TestQuietSince(t *testing.T) {
	a := sandboxSample{Pids: []int{1, 2}, CPUTicks: 10}
	tests := []struct {
		name string
		b    sandboxSample
		want bool
	}{
		{"same", sandboxSample{Pids: []int{1, 2}, CPUTicks: 10}, true},
		{"cpu used", sandboxSample{Pids: []int{1, 2}, CPUTicks: 11}, false},
		{"new process", sandboxSample{Pids: []int{1, 2, 3}, CPUTicks: 10}, false},
		{"process gone", sandboxSample{Pids: []int{1}, CPUTicks: 10}, false},
	}
	for _, tt := range tests {
		if got := tt.b.quietSince(a); got != tt.want {
			t.Errorf("%s: quietSince = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestSampleSandboxFindsOwnChildrenOnly(t *testing.T) {
	if _, err := os.Stat("/proc/self/smaps_rollup"); err != nil {
		// The benchmark's memory figures come from it: a kernel without it
		// (before 4.14) cannot run the benchmark either.
		t.Fatalf("no smaps_rollup here: %v", err)
	}
	// Our parent's descendants include this process; it runs as our uid.
	s, err := sampleSandbox("/proc", os.Getppid(), os.Getuid())
	if err != nil {
		t.Fatalf("sampleSandbox: %v", err)
	}
	found := false
	for _, pid := range s.Pids {
		found = found || pid == os.Getpid()
	}
	if !found || s.Mem.Pss <= 0 || s.PerPid[os.Getpid()].Rss <= 0 {
		t.Errorf("sampleSandbox(parent, uid) = %d processes, %+v: want this process (%d) counted", len(s.Pids), s.Mem, os.Getpid())
	}
	// This process's children (the Go runtime starts none) cannot run as a
	// uid nobody has.
	if s, err := sampleSandbox("/proc", os.Getpid(), 1<<30); err != nil || len(s.Pids) != 0 {
		t.Errorf("sampleSandbox(self, unused uid) = %v, %v, want nothing", s.Pids, err)
	}
}

// A zygote that maps numpy's files is of the preloaded kind; one that maps
// only the interpreter is slim.
func TestKindFromMaps(t *testing.T) {
	preloaded := "7f00-7f10 r-xp 00000000 08:01 12 /opt/python-executor/venv/lib/python3.11/site-packages/numpy/_core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so\n"
	slim := "5500-5510 r-xp 00000000 08:01 11 /usr/lib/libpython3.11.so.1.0\n"
	if got := kindFromMaps([]byte(slim + preloaded)); got != defaultKind {
		t.Errorf("kind of a zygote mapping numpy = %q, want %q", got, defaultKind)
	}
	if got := kindFromMaps([]byte(slim)); got != slimKind {
		t.Errorf("kind of a zygote mapping no numpy = %q, want %q", got, slimKind)
	}
}
