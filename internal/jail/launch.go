package jail

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// Launch is one start of nsjail on a rendered config: the cold engine's
// per-execution jail and the warm engine's zygote jail both start this way.
type Launch struct {
	// Nsjail is the nsjail binary.
	Nsjail string
	// Config is the rendered configuration (Render). nsjail reads it from
	// a memfd at ConfigFD: nothing on disk, nothing to clean up.
	Config   []byte
	ConfigFD int
	// Files are the fds nsjail inherits from 3 on, in order; the entry of
	// ConfigFD must be nil (the memfd goes there). Which of them reach the
	// jail is the policy's PassFDs.
	Files []*os.File
	// Stdout and Stderr are nsjail's (and so the jail's); nil is /dev/null,
	// as is stdin.
	Stdout, Stderr *os.File
}

// Start starts nsjail with start (cmd.Start when nil; the supervisor
// passes its subreaper's, which registers the child as it starts). nsjail
// gets an empty environment (the jail's is in the config), its own process
// group, and SIGKILL when its parent dies, so that a dead supervisor takes
// nsjail, and nsjail's own death signal the jail, with it. It returns the
// command, to be waited for, and nsjail's pidfd, which the caller closes.
func (l Launch) Start(start func(*exec.Cmd) error) (*exec.Cmd, int, error) {
	i := l.ConfigFD - 3
	if i < 0 || i >= len(l.Files) || l.Files[i] != nil {
		return nil, -1, fmt.Errorf("start nsjail: config fd %d is not a free slot of the %d inherited files", l.ConfigFD, len(l.Files))
	}
	fd, err := unix.MemfdCreate("nsjail-config", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, -1, fmt.Errorf("start nsjail: memfd: %w", err)
	}
	config := os.NewFile(uintptr(fd), "nsjail-config")
	// nsjail has its own copy once started.
	defer config.Close()
	if _, err := config.Write(l.Config); err != nil {
		return nil, -1, fmt.Errorf("start nsjail: write config: %w", err)
	}
	files := append([]*os.File(nil), l.Files...)
	files[i] = config

	argv := Argv(l.Nsjail, fmt.Sprintf("/proc/self/fd/%d", l.ConfigFD))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{}
	if l.Stdout != nil {
		cmd.Stdout = l.Stdout
	}
	if l.Stderr != nil {
		cmd.Stderr = l.Stderr
	}
	cmd.ExtraFiles = files
	pidfd := -1
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, PidFD: &pidfd}
	if start == nil {
		start = (*exec.Cmd).Start
	}
	if err := start(cmd); err != nil {
		return nil, -1, fmt.Errorf("start nsjail: %w", err)
	}
	return cmd, pidfd, nil
}
