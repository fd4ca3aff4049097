package proc

import (
	"io/fs"

	"golang.org/x/sys/unix"
)

// MaxKernelFile bounds ReadKernelFile: the files it serves (/proc/<pid>/stat
// and status, a cgroup's counters and keyed stats) are a few KiB at most.
const MaxKernelFile = 64 << 10

// ReadKernelFile reads a small file the kernel generates (procfs, cgroupfs)
// with plain system calls: open, read until the end, close. os.ReadFile
// would also register the descriptor with the runtime's poller, which
// cgroupfs accepts (its files can be polled for events): two fcntl and two
// epoll_ctl calls more for every file, and the supervisor reads and writes
// some twenty of them for every execution. A file over MaxKernelFile is an
// error rather than a bigger buffer.
func ReadKernelFile(path string) ([]byte, error) {
	const limit = MaxKernelFile
	fd, err := openRetry(path, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	// One read takes a whole seq_file record up to the buffer's size; most
	// of these files are a single line. One byte over limit tells a file of
	// exactly limit bytes from a longer one.
	buf := make([]byte, 4096)
	n := 0
	for {
		if n == len(buf) {
			if n > limit {
				return nil, &fs.PathError{Op: "read", Path: path, Err: unix.EFBIG}
			}
			buf = append(buf, make([]byte, min(len(buf), limit+1-len(buf)))...)
		}
		m, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if m == 0 {
			return buf[:n], nil
		}
		n += m
	}
}

// WriteKernelFile writes data to a kernel file (a cgroup's limit, its
// cgroup.procs) in one write(2), with flags for open(2) besides O_WRONLY
// and O_CLOEXEC (O_CREAT|O_TRUNC for a test's plain directory). A cgroup
// file takes a value in one write or refuses it: a short write is an
// error.
func WriteKernelFile(path string, data []byte, flags int) error {
	fd, err := openRetry(path, unix.O_WRONLY|unix.O_CLOEXEC|flags)
	if err != nil {
		return &fs.PathError{Op: "open", Path: path, Err: err}
	}
	n, err := unix.Write(fd, data)
	for err == unix.EINTR {
		n, err = unix.Write(fd, data)
	}
	cerr := unix.Close(fd)
	switch {
	case err != nil:
		return &fs.PathError{Op: "write", Path: path, Err: err}
	case n != len(data):
		return &fs.PathError{Op: "write", Path: path, Err: unix.EIO}
	case cerr != nil:
		return &fs.PathError{Op: "close", Path: path, Err: cerr}
	}
	return nil
}

func openRetry(path string, flags int) (int, error) {
	for {
		fd, err := unix.Open(path, flags, 0o644)
		if err != unix.EINTR {
			return fd, err
		}
	}
}
