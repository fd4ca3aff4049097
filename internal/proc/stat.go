package proc

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ParentPid reads a process's parent pid from /proc.
func ParentPid(pid int) (int, error) {
	f, err := Stat(pid)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(f[1])
}

// Stat returns the fields of /proc/pid/stat after the command name,
// which may hold anything: state, ppid, ... (field 3 of proc(5) first), at
// least nine of them.
func Stat(pid int) ([]string, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("pid %d", pid)
	}
	b, err := ReadKernelFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 9 {
		return nil, errors.New("malformed stat")
	}
	return f, nil
}

// ProcessCPU is the CPU time process pid has used so far: all its threads,
// live and exited, from the process's CPU clock (nanoseconds), and the
// children it has reaped, from /proc (clock ticks). It can be read while
// the process exits and while it is a zombie; once it has been reaped the
// pid may name another process, which the caller must rule out.
func ProcessCPU(pid int) (time.Duration, error) {
	if pid <= 0 {
		return 0, fmt.Errorf("pid %d", pid)
	}
	// The kernel's MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED).
	clock := int32(^pid<<3 | 2)
	var ts unix.Timespec
	if err := unix.ClockGettime(clock, &ts); err != nil {
		return 0, fmt.Errorf("CPU clock of pid %d: %w", pid, err)
	}
	f, err := Stat(pid)
	if err != nil {
		return 0, err
	}
	if len(f) < 15 {
		return 0, errors.New("malformed stat")
	}
	// cutime and cstime, fields 16 and 17 of proc(5), in USER_HZ ticks,
	// which /proc fixes at 100 a second.
	var ticks int64
	for _, s := range f[13:15] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return 0, errors.New("malformed stat")
		}
		ticks += n
	}
	return time.Duration(ts.Nano()) + time.Duration(ticks)*10*time.Millisecond, nil
}
