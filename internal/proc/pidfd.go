package proc

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// A pid names a process only until it is reaped; after that the kernel may
// give it to any new process. The supervisor therefore never signals a bare
// pid of a jailed process: it opens a pidfd, then confirms that the process
// behind the pid is the one it means, then signals through the pidfd. If
// the pidfd's process is still unreaped once the check is done, it held the
// pid during the check, so the check was about it; if it has been reaped,
// the signal fails with ESRCH and reaches nobody.

// PidfdOfChild opens a pidfd for pid after confirming that it is a child of
// parent, whose own pidfd parentFD proves that parent has not been reaped
// (and its pid reused) meanwhile.
func PidfdOfChild(pid, parent, parentFD int) (int, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd of %d: %w", pid, err)
	}
	ppid, err := ParentPid(pid)
	switch {
	case err != nil:
	case ppid != parent:
		err = fmt.Errorf("pid %d is a child of %d, not of %d", pid, ppid, parent)
	default:
		if err = unix.PidfdSendSignal(fd, 0, nil, 0); err != nil {
			err = fmt.Errorf("pid %d exited: %w", pid, err)
		} else if err = unix.PidfdSendSignal(parentFD, 0, nil, 0); err != nil {
			err = fmt.Errorf("parent %d exited: %w", parent, err)
		}
	}
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// KillChildren SIGKILLs parent's children, each through a pidfd opened by
// PidfdOfChild. parentFD must be parent's pidfd.
func KillChildren(parent, parentFD int) {
	for _, c := range ChildrenOf(parent) {
		fd, err := PidfdOfChild(c, parent, parentFD)
		if err != nil {
			continue // gone, or no longer its child
		}
		unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
		unix.Close(fd)
	}
}

// WaitPidfd waits until the process of pidfd has exited (its pidfd turns
// readable once the process is gone completely, reaped or not) or timeout
// has passed, and reports whether it has exited. Interrupted polls resume
// with the time left.
func WaitPidfd(pidfd int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		// Rounded up: a wait of less than a millisecond must not become
		// a poll that returns at once.
		ms := int((max(time.Until(deadline), 0) + time.Millisecond - 1) / time.Millisecond)
		n, err := unix.Poll(fds, ms)
		if err == unix.EINTR {
			continue
		}
		return err == nil && n > 0
	}
}
