package proc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
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
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
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
