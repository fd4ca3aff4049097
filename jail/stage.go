package jail

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Why staging exists: nsjail makes its mounts from inside the jail's user
// namespace, where root of the host is nobody. mount(2) then has to resolve
// the bind source with the permissions of "other", and fails with EACCES
// under a directory such as /root (mode 0700), where pyenv installs Python.
// Binding such sources first, as the supervisor's root, to a directory
// everyone may traverse gives nsjail a path it can resolve.

// NeedsStaging reports whether the jail's user cannot reach path: some
// ancestor directory lacks o+x, or the path itself lacks o+x (directory) or
// o+r (file). Paths that cannot be inspected are reported as needing it.
// Staging only fixes the ancestors: the path's own permissions still apply
// inside the jail.
func NeedsStaging(path string) bool {
	path = filepath.Clean(path)
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return true
		}
		if dir == "/" {
			break
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return true
	}
	if fi.IsDir() {
		return fi.Mode().Perm()&0o001 == 0
	}
	return fi.Mode().Perm()&0o004 == 0
}

// Stage mounts a tmpfs (mode 0755) at dir, bind-mounts every Bind source in
// mounts that NeedsStaging read-only at dir/<n>, and returns mounts with
// those sources rewritten (Dst is unchanged, so the jail sees the usual
// paths). A source listed twice is staged once. dir must exist and be
// reachable by everyone.
//
// It changes the mount table, so it refuses to run unless the calling
// process is in a mount namespace of its own (not that of pid 1); it also
// makes that namespace's mounts private, so nothing propagates back to the
// host. The supervisor re-executes itself with CLONE_NEWNS for this.
func Stage(dir string, mounts []Mount) ([]Mount, error) {
	out, err := stage(dir, mounts)
	if err != nil {
		return nil, fmt.Errorf("stage mounts in %s: %w", dir, err)
	}
	return out, nil
}

func stage(dir string, mounts []Mount) ([]Mount, error) {
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
		return nil, errors.New("want a clean absolute directory")
	}
	if err := checkPrivateMountNS(); err != nil {
		return nil, err
	}
	if NeedsStaging(dir) {
		return nil, errors.New("the directory is not reachable by the jail's user (o+x on it and its ancestors)")
	}
	// MS_PRIVATE on the whole tree of this namespace: a new namespace
	// copies the propagation of its parent, and a shared "/" would carry
	// the tmpfs below back to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return nil, fmt.Errorf("make mounts private: %w", err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC,
		"mode=0755,size=65536,nr_inodes=4096"); err != nil {
		return nil, fmt.Errorf("mount tmpfs: %w", err)
	}
	out := make([]Mount, len(mounts))
	staged := map[string]string{} // source -> staged path
	for i, m := range mounts {
		out[i] = m
		if m.Kind != Bind || !NeedsStaging(m.Src) {
			continue
		}
		if p, ok := staged[m.Src]; ok {
			out[i].Src = p
			continue
		}
		p := filepath.Join(dir, strconv.Itoa(len(staged)))
		if err := bindReadOnly(m.Src, p); err != nil {
			_ = Unstage(dir)
			return nil, err
		}
		staged[m.Src] = p
		out[i].Src = p
	}
	// Read-only from now on: nsjail only reads it.
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		_ = Unstage(dir)
		return nil, fmt.Errorf("remount %s read-only: %w", dir, err)
	}
	return out, nil
}

// bindReadOnly binds src at dst (created as a file or directory like src),
// then remounts it read-only: MS_RDONLY is ignored on the first bind call.
func bindReadOnly(src, dst string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		err = os.Mkdir(dst, 0o755)
	} else {
		var f *os.File
		if f, err = os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); err == nil {
			err = f.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("create mount point: %w", err)
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s at %s: %w", src, dst, err)
	}
	if err := unix.Mount("", dst, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("remount %s read-only: %w", dst, err)
	}
	return nil
}

// Unstage detaches the tmpfs at dir and every staged bind on it. A dir
// where nothing is mounted is not an error.
func Unstage(dir string) error {
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unstage %s: %w", dir, &fs.PathError{Op: "umount", Path: dir, Err: err})
	}
	return nil
}

// checkPrivateMountNS fails unless this process's mount namespace differs
// from pid 1's. Some sandboxes (Firecracker's init, for one) deny even root
// a look at pid 1's namespaces; the parent process's is compared then,
// which holds for a process re-executed with CLONE_NEWNS.
func checkPrivateMountNS() error {
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return fmt.Errorf("check mount namespace: %w", err)
	}
	for _, other := range []string{"/proc/1/ns/mnt", "/proc/" + strconv.Itoa(os.Getppid()) + "/ns/mnt"} {
		ns, err := os.Readlink(other)
		if errors.Is(err, fs.ErrPermission) {
			continue
		}
		if err != nil {
			return fmt.Errorf("check mount namespace: %w", err)
		}
		if ns == self {
			return fmt.Errorf("refusing to mount in the mount namespace of %s (want a private one, e.g. unshare CLONE_NEWNS)",
				strings.TrimSuffix(other, "/ns/mnt"))
		}
		return nil
	}
	return errors.New("check mount namespace: cannot read the namespace of pid 1 or of the parent process")
}
