package engine

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/python-executor/python-executor/internal/proc"
)

// The memory limit where no memory cgroup enforces it. RLIMIT_AS bounds each
// process, but not an execution of many: a script that forks 60 children of
// 500 MiB each would take 30 GiB from the host, and the host's OOM killer
// would then pick a victim anywhere, a neighbouring execution as likely as
// the culprit. So the supervisor watches every execution's memory itself and
// kills the whole execution, answering memory_limit, as soon as the sum over
// its processes goes over the limit.
//
// What is summed is each process's proportional set size (PSS, from
// /proc/pid/smaps_rollup): a page shared by n processes counts 1/n to each,
// so pages a forked child shares with its parent are counted once, not once
// per process, and a warm child is charged only its share of the zygote's
// pages. A page shared with processes outside the execution counts in
// part; a cgroup would charge it to whoever touched it first. The watch
// polls, so an execution can exceed the limit for up to one interval (and
// RLIMIT_AS still caps each process at the limit in the meantime).
const memWatchInterval = 20 * time.Millisecond

// memWatch watches one execution's memory until stop is closed; it closes
// over once the execution's processes are over limit bytes together.
type memWatch struct {
	limit int64
	pids  func() []int // the execution's processes
	over  chan struct{}
	stop  chan struct{}
	peak  int64 // read after stop
	done  chan struct{}
	// peakTasks is the most tasks (processes and threads) seen at once.
	peakTasks atomic.Int64
	// disk, diskLimit and filesLimit watch what the execution writes
	// where no tmpfs bounds it; diskHit is set when that fired over.
	disk       func() (int64, int, bool)
	diskLimit  int64
	filesLimit int
	diskHit    atomic.Bool
}

func startMemWatch(l LimitSet, sb watchedSandbox) *memWatch {
	w := &memWatch{limit: l.MemoryBytes, pids: sb.Processes, over: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{}),
		disk: sb.DiskUsage, diskLimit: l.TmpBytes, filesLimit: l.TmpInodes}
	go w.run()
	return w
}

// diskEvery is how many memory polls go by between two disk polls: walking
// directories costs more than reading smaps_rollup.
const diskEvery = 10

func (w *memWatch) run() {
	defer close(w.done)
	t := time.NewTicker(memWatchInterval)
	defer t.Stop()
	fired := false
	tick := 0
	for {
		var sum int64
		pids := w.pids()
		for _, pid := range pids {
			sum += pssBytes(pid)
		}
		w.peak = max(w.peak, sum)
		w.peakTasks.Store(max(w.peakTasks.Load(), int64(countTasks(pids))))
		if sum > w.limit && !fired {
			fired = true
			close(w.over)
		}
		if tick++; tick%diskEvery == 1 && !fired {
			if b, n, ok := w.disk(); ok && (b > w.diskLimit || n > w.filesLimit) {
				fired = true
				w.diskHit.Store(true)
				close(w.over)
			}
		}
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
	}
}

// finish stops the watch and returns the peak it saw.
func (w *memWatch) finish() int64 {
	close(w.stop)
	<-w.done
	return w.peak
}

// pssBytes is a process's proportional set size, 0 when it is gone.
// smaps_rollup is readable only with CAP_SYS_PTRACE for another uid's
// process, which a container with Docker's default capabilities lacks; there
// it is opened under the process's own ids instead (openAsOwner). Where that
// fails too (a process that made itself non-dumpable, or one whose real,
// effective and saved ids differ), its private anonymous and shared-memory
// pages (RssAnon + RssShmem of /proc/pid/status, readable by all) stand in:
// they count a page a forked child still shares with its parent in both, so
// they err towards memory_limit.
func pssBytes(pid int) int64 {
	name := fmt.Sprintf("/proc/%d/smaps_rollup", pid)
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrPermission) {
		f, err = openAsOwner(pid, name)
	}
	if err != nil {
		return rssAnonShmem(pid)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Bytes()
		if rest, ok := bytes.CutPrefix(line, []byte("Pss:")); ok {
			fields := bytes.Fields(rest)
			if len(fields) > 0 {
				kb, _ := strconv.ParseInt(string(fields[0]), 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// Descendants lists pid and every process below it. An orphan is re-parented
// to its PID namespace's init, which is in the list wherever the execution has
// a PID namespace of its own.
func Descendants(pid int) []int {
	out := []int{pid}
	for i := 0; i < len(out) && len(out) < 4096; i++ {
		out = append(out, proc.ChildrenOf(out[i])...)
	}
	return out
}

// ProcessesOfUID lists the live processes whose real uid is uid: every
// process of an execution that runs as a uid of its own, wherever it was
// re-parented.
func ProcessesOfUID(uid int) []int {
	var out []int
	d, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat("/proc/"+n, &st) != nil {
			continue
		}
		// /proc/pid of a process that made itself non-dumpable belongs
		// to root whatever its uid: its status tells.
		if int(st.Uid) == uid || (st.Uid == 0 && RealUID(pid) == uid) {
			out = append(out, pid)
		}
	}
	return out
}

// RealUID is a process's real uid from /proc/pid/status, -1 when unknown.
func RealUID(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	i := bytes.Index(b, []byte("\nUid:"))
	if i < 0 {
		return -1
	}
	f := bytes.Fields(b[i+5:])
	if len(f) == 0 {
		return -1
	}
	uid, err := strconv.Atoi(string(f[0]))
	if err != nil {
		return -1
	}
	return uid
}

// countTasks counts the threads of the given processes (RLIMIT_NPROC counts
// threads too).
func countTasks(pids []int) int {
	n := 0
	for _, pid := range pids {
		f, err := proc.Stat(pid)
		if err != nil || len(f) < 18 {
			continue
		}
		if t, err := strconv.Atoi(f[17]); err == nil { // num_threads, field 20
			n += t
		}
	}
	return n
}

// rssAnonShmem is RssAnon + RssShmem of /proc/pid/status in bytes, 0 when
// the process is gone.
func rssAnonShmem(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	var sum int64
	for _, key := range []string{"\nRssAnon:", "\nRssShmem:"} {
		i := bytes.Index(b, []byte(key))
		if i < 0 {
			continue
		}
		if f := bytes.Fields(b[i+len(key):]); len(f) > 0 {
			kb, _ := strconv.ParseInt(string(f[0]), 10, 64)
			sum += kb << 10
		}
	}
	return sum
}
