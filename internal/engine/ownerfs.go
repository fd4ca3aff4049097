package engine

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// openAsOwner opens name, a file of /proc/pid that the kernel guards with a
// ptrace read check (smaps_rollup), with the calling thread's filesystem uid
// and gid set to pid's own ids: the kernel then lets the "same user" through
// without CAP_SYS_PTRACE, which a container with Docker's default
// capabilities lacks (it keeps CAP_SETUID and CAP_SETGID, which setfsuid and
// setfsgid need). The check is made at open; reads need nothing more.
//
// Only a process whose real, effective and saved uids agree, and likewise
// its gids, can be opened so (the kernel's rule too), and never one of root.
// A process that made itself non-dumpable stays unreadable: the kernel asks
// for CAP_SYS_PTRACE then, whoever the caller is.
//
// The fs ids are per thread: the work runs on a goroutine locked to its OS
// thread, and the thread goes back to the runtime only once both ids are
// back to what they were; otherwise the goroutine ends still locked and the runtime
// discards the thread. Threads the runtime starts meanwhile do not inherit
// the ids (a locked thread hands that to its template thread).
func openAsOwner(pid int, name string) (*os.File, error) {
	uid, gid, err := ownerIDs(pid)
	if err != nil {
		return nil, err
	}
	type opened struct {
		f   *os.File
		err error
	}
	done := make(chan opened, 1)
	go func() {
		runtime.LockOSThread()
		// setfsuid and setfsgid report no error: each returns the id
		// before the call, so a second call tells whether the first took.
		oldGID, _ := unix.SetfsgidRetGid(gid)
		oldUID, _ := unix.SetfsuidRetUid(uid)
		g, _ := unix.SetfsgidRetGid(gid)
		u, _ := unix.SetfsuidRetUid(uid)
		var o opened
		if u == uid && g == gid {
			o.f, o.err = os.Open(name)
		} else {
			o.err = fmt.Errorf("setfsuid %d, setfsgid %d: not allowed", uid, gid)
		}
		unix.SetfsuidRetUid(oldUID)
		unix.SetfsgidRetGid(oldGID)
		u, _ = unix.SetfsuidRetUid(oldUID)
		g, _ = unix.SetfsgidRetGid(oldGID)
		if u == oldUID && g == oldGID {
			runtime.UnlockOSThread()
		}
		done <- o
	}()
	o := <-done
	return o.f, o.err
}

// ownerIDs returns pid's uid and gid from /proc/pid/status when its real,
// effective and saved ids agree and are not root's.
func ownerIDs(pid int) (uid, gid int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	ids := func(key string) (int, bool) {
		i := bytes.Index(b, []byte("\n"+key+":"))
		if i < 0 {
			return 0, false
		}
		line, _, _ := bytes.Cut(b[i+len(key)+2:], []byte("\n"))
		f := bytes.Fields(line)
		if len(f) < 3 {
			return 0, false
		}
		id, err := strconv.Atoi(string(f[0]))
		if err != nil || id <= 0 || string(f[1]) != string(f[0]) || string(f[2]) != string(f[0]) {
			return 0, false
		}
		return id, true
	}
	uid, uok := ids("Uid")
	gid, gok := ids("Gid")
	if !uok || !gok {
		return 0, 0, errors.New("process ids differ or are root's")
	}
	return uid, gid, nil
}
