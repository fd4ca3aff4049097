package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// memUsage is what the kernel's smaps_rollup says about one process, or the
// sum over several, in bytes.
type memUsage struct {
	// Pss is the proportional set size: each page divided by the number of
	// processes mapping it. Summed over a set of processes it is the
	// physical memory they hold, pages shared between them counted once.
	Pss int64
	// Private is Private_Clean + Private_Dirty: pages only this process
	// maps. A page a forked child still shares with its parent is private to
	// neither, so this undercounts a zygote and its children.
	Private int64
	// Rss counts every mapped page in full, shared or not.
	Rss int64
}

// MarshalJSON writes the sizes in MiB.
func (m memUsage) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]float64{"pss_mib": mib(m.Pss), "private_mib": mib(m.Private), "rss_mib": mib(m.Rss)})
}

func (m memUsage) add(o memUsage) memUsage {
	return memUsage{Pss: m.Pss + o.Pss, Private: m.Private + o.Private, Rss: m.Rss + o.Rss}
}

func (m memUsage) sub(o memUsage) memUsage {
	return memUsage{Pss: m.Pss - o.Pss, Private: m.Private - o.Private, Rss: m.Rss - o.Rss}
}

// parseSmapsRollup reads /proc/<pid>/smaps_rollup: a header line naming the
// rolled-up range, then "Key:   <n> kB" lines. Rss and Pss must be present;
// keys it does not use are ignored.
func parseSmapsRollup(b []byte) (memUsage, error) {
	var m memUsage
	var seen int
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, rest, ok := bytes.Cut(sc.Bytes(), []byte(":"))
		if !ok {
			continue
		}
		var dst *int64
		switch string(key) {
		case "Rss":
			dst, seen = &m.Rss, seen|1
		case "Pss":
			dst, seen = &m.Pss, seen|2
		case "Private_Clean", "Private_Dirty":
			dst = &m.Private
		default:
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return memUsage{}, fmt.Errorf("smaps_rollup: bad %s line %q", key, sc.Bytes())
		}
		n, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil || n < 0 {
			return memUsage{}, fmt.Errorf("smaps_rollup: bad %s value %q", key, f[0])
		}
		*dst += n << 10
	}
	if err := sc.Err(); err != nil {
		return memUsage{}, fmt.Errorf("smaps_rollup: %w", err)
	}
	if seen != 3 {
		return memUsage{}, errors.New("smaps_rollup: no Rss or Pss line")
	}
	return m, nil
}

// procStat is what the benchmark needs from /proc/<pid>/stat.
type procStat struct {
	PPid     int
	State    byte
	CPUTicks uint64 // utime + stime, in clock ticks
}

// parseProcStat parses /proc/<pid>/stat: "pid (comm) state ppid ...", where
// comm may hold spaces and parentheses, so the fields are counted from the
// last ')'. utime and stime are fields 14 and 15.
func parseProcStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("stat: no comm")
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); field n is f[n-3].
	if len(f) < 13 || len(f[0]) != 1 {
		return procStat{}, errors.New("stat: too few fields")
	}
	ppid, err1 := strconv.Atoi(string(f[1]))
	ut, err2 := strconv.ParseUint(string(f[11]), 10, 64)
	st, err3 := strconv.ParseUint(string(f[12]), 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return procStat{}, fmt.Errorf("stat: %w", err)
	}
	return procStat{PPid: ppid, State: f[0][0], CPUTicks: ut + st}, nil
}

// parseRealUID returns the real uid from /proc/<pid>/status ("Uid: r e s f").
// The owner of /proc/<pid> is not used: it is root for any process that is
// not dumpable, which a sandboxed process may well be.
func parseRealUID(status []byte) (int, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("Uid:")); ok {
			f := bytes.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.Atoi(string(f[0]))
		}
	}
	return 0, errors.New("status: no Uid line")
}

// sandboxSample is the state of a supervisor's sandboxed processes at one
// instant.
type sandboxSample struct {
	Pids     []int // sorted
	CPUTicks uint64
	Mem      memUsage // the sum of PerPid
	PerPid   map[int]memUsage
	Parent   map[int]int // of each of Pids
}

// quietSince reports whether s shows the same processes as prev and none of
// them used any CPU in between: every sandboxed process is asleep.
func (s sandboxSample) quietSince(prev sandboxSample) bool {
	return slices.Equal(s.Pids, prev.Pids) && s.CPUTicks == prev.CPUTicks
}

// sampleSandbox sums smaps_rollup over every live, non-zombie descendant of
// the process root that runs as uid. Counting descendants rather than every
// process of the uid keeps other supervisors on the same host (a test run,
// say) out of the numbers; the supervisor is a subreaper, so a jail that
// double-forks stays its descendant. A process that exits while it is being
// read is skipped.
func sampleSandbox(procDir string, root, uid int) (sandboxSample, error) {
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return sandboxSample{}, fmt.Errorf("list processes: %w", err)
	}
	stats := make(map[int]procStat, len(entries))
	children := make(map[int][]int)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(procDir, e.Name(), "stat"))
		if err != nil {
			continue // gone
		}
		st, err := parseProcStat(b)
		if err != nil {
			return sandboxSample{}, fmt.Errorf("process %d: %w", pid, err)
		}
		stats[pid] = st
		children[st.PPid] = append(children[st.PPid], pid)
	}
	s := sandboxSample{PerPid: make(map[int]memUsage), Parent: make(map[int]int)}
	queue := slices.Clone(children[root])
	for len(queue) > 0 {
		pid := queue[0]
		queue = append(queue[1:], children[pid]...)
		st := stats[pid]
		if st.State == 'Z' || st.State == 'X' {
			continue
		}
		status, err := os.ReadFile(filepath.Join(procDir, strconv.Itoa(pid), "status"))
		if err != nil {
			continue
		}
		if u, err := parseRealUID(status); err != nil || u != uid {
			continue
		}
		b, err := os.ReadFile(filepath.Join(procDir, strconv.Itoa(pid), "smaps_rollup"))
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) || (err == nil && len(b) == 0) {
			continue // exited meanwhile
		}
		if err != nil {
			return sandboxSample{}, fmt.Errorf("read memory of process %d: %w", pid, err)
		}
		m, err := parseSmapsRollup(b)
		if err != nil {
			return sandboxSample{}, fmt.Errorf("process %d: %w", pid, err)
		}
		s.Pids = append(s.Pids, pid)
		s.CPUTicks += st.CPUTicks
		s.Mem = s.Mem.add(m)
		s.PerPid[pid] = m
		s.Parent[pid] = st.PPid
	}
	slices.Sort(s.Pids)
	return s, nil
}

// MemoryCell is the memory the sandboxed processes of one engine hold.
type MemoryCell struct {
	Tally
	// InFlight is how many executions ran at once while measured.
	InFlight int `json:"in_flight"`
	// IdleProcesses and BusyProcesses count the sandboxed processes idle and
	// with InFlight executions.
	IdleProcesses int `json:"idle_processes"`
	BusyProcesses int `json:"busy_processes"`
	// Idle is held by the sandboxed processes with nothing in flight (a warm
	// engine's zygotes; nothing for cold).
	Idle memUsage `json:"idle"`
	// Added is what the sandboxed processes held with InFlight executions
	// sleeping, minus Idle, divided by InFlight. Its Pss is the physical
	// memory each execution adds, shared pages split among their users.
	Added memUsage `json:"added_per_execution"`
	// Own is what the processes that were not there when idle held, divided
	// by InFlight: Own.Private is the private memory of one execution's
	// processes.
	Own memUsage `json:"own_per_execution"`
	// IdleKinds splits Idle by zygote kind: each zygote with its spares.
	IdleKinds []IdleKind `json:"idle_per_kind,omitempty"`
}

// IdleKind is the idle footprint of one kind of zygote: its zygotes and
// the spares they forked, summed.
type IdleKind struct {
	// Kind names what the zygotes preload.
	Kind    string   `json:"kind"`
	Zygotes int      `json:"zygotes"`
	Spares  int      `json:"spares"`
	Mem     memUsage `json:"memory"`
}

// The kinds of zygote the bench's supervisors run: they pass no -preload,
// so the preloaded zygotes import the supervisor's default modules, and
// the slim ones (as many, by default) import nothing.
const (
	defaultKind = "numpy,pandas,matplotlib.pyplot"
	slimKind    = "slim (nothing preloaded)"
)

// zygoteKind tells a zygote's kind by whether it maps numpy's files.
func zygoteKind(pid int) string {
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return defaultKind // gone meanwhile: counted as the common kind
	}
	return kindFromMaps(maps)
}

// kindFromMaps is zygoteKind on the text of /proc/<pid>/maps.
func kindFromMaps(maps []byte) string {
	if bytes.Contains(maps, []byte("/numpy/")) {
		return defaultKind
	}
	return slimKind
}

// idleKinds groups an idle sample's processes by zygote: a zygote is a
// sandboxed process whose parent is not one (an nsjail, which runs as
// root, started it); every other process is a spare of the zygote it
// descends from. kindOf names a zygote's kind. Kinds come in the order of
// their first zygote's pid.
func idleKinds(s sandboxSample, kindOf func(pid int) string) []IdleKind {
	sandboxed := make(map[int]bool, len(s.Pids))
	for _, pid := range s.Pids {
		sandboxed[pid] = true
	}
	zygoteOf := func(pid int) int {
		for sandboxed[s.Parent[pid]] {
			pid = s.Parent[pid]
		}
		return pid
	}
	var kinds []IdleKind
	index := map[string]int{}
	for _, pid := range s.Pids {
		z := zygoteOf(pid)
		k := kindOf(z)
		i, ok := index[k]
		if !ok {
			i = len(kinds)
			index[k] = i
			kinds = append(kinds, IdleKind{Kind: k})
		}
		if z == pid {
			kinds[i].Zygotes++
		} else {
			kinds[i].Spares++
		}
		kinds[i].Mem = kinds[i].Mem.add(s.PerPid[pid])
	}
	return kinds
}

// memoryPoll is how often the sandboxed processes are sampled, and
// memoryQuiet how long none of them may use CPU before a sample counts.
const (
	memoryPoll  = 100 * time.Millisecond
	memoryQuiet = 300 * time.Millisecond
)

// measureMemory runs k copies of hold (a script that imports pandas and
// sleeps) at once on st, whose supervisor must have at least k slots, and
// samples its sandboxed processes while all k are asleep in main(). The
// baseline is taken after warm-up, with nothing in flight and every
// sandboxed process idle.
func measureMemory(ctx context.Context, st *service, warm, hold script, k int) (MemoryCell, error) {
	cell := MemoryCell{InFlight: k}
	root := st.Supervisor.Pid()
	for range 3 {
		cell.add(execute(ctx, st.http, st.URL, warm))
	}
	base, err := waitQuiet(ctx, root, st.SandboxUID, 0, 10*time.Second, func() bool { return false })
	if err != nil {
		return cell, fmt.Errorf("idle baseline: %w", err)
	}
	cell.Idle, cell.IdleProcesses = base.Mem, len(base.Pids)
	cell.IdleKinds = idleKinds(base, zygoteKind)

	answers := make(chan answer, k)
	reqCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range k {
		go func() { answers <- execute(reqCtx, st.http, st.URL, hold) }()
	}
	var done int
	anyDone := func() bool {
		for {
			select {
			case a := <-answers:
				cell.add(a)
				done++
			default:
				return done > 0
			}
		}
	}
	busy, err := waitQuiet(ctx, root, st.SandboxUID, len(base.Pids)+k, 60*time.Second, anyDone)
	if err != nil {
		cancel()
	}
	for ; done < k; done++ {
		cell.add(<-answers)
	}
	if err != nil {
		return cell, fmt.Errorf("%d executions in flight: %w", k, err)
	}
	cell.BusyProcesses = len(busy.Pids)
	cell.Added = divide(busy.Mem.sub(base.Mem), k)
	var own memUsage
	for pid, m := range busy.PerPid {
		if !slices.Contains(base.Pids, pid) {
			own = own.add(m)
		}
	}
	cell.Own = divide(own, k)
	return cell, nil
}

func divide(m memUsage, k int) memUsage {
	n := int64(k)
	return memUsage{Pss: m.Pss / n, Private: m.Private / n, Rss: m.Rss / n}
}

// errNotOverlapping is returned when the executions never were all asleep at
// once.
var errNotOverlapping = errors.New("an execution ended before all were in flight and asleep: raise -mem-hold")

// waitQuiet samples root's sandboxed processes every memoryPoll until there
// are at least minProcs of them and none has used CPU for
// memoryQuiet, and returns that sample. It gives up when stop reports true
// (errNotOverlapping), ctx ends or timeout passes.
func waitQuiet(ctx context.Context, root, uid, minProcs int, timeout time.Duration, stop func() bool) (sandboxSample, error) {
	deadline := time.Now().Add(timeout)
	var ref sandboxSample
	var refAt time.Time
	for {
		s, err := sampleSandbox("/proc", root, uid)
		if err != nil {
			return sandboxSample{}, err
		}
		now := time.Now()
		switch {
		case len(s.Pids) < minProcs || refAt.IsZero() || !s.quietSince(ref):
			ref, refAt = s, now
		case now.Sub(refAt) >= memoryQuiet:
			return s, nil
		}
		if stop() {
			return sandboxSample{}, errNotOverlapping
		}
		if now.After(deadline) {
			return sandboxSample{}, fmt.Errorf("the sandboxed processes never were quiet for %v within %v", memoryQuiet, timeout)
		}
		select {
		case <-ctx.Done():
			return sandboxSample{}, ctx.Err()
		case <-time.After(memoryPoll):
		}
	}
}
