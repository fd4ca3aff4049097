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
	return StageNeutral(dir, mounts, nil)
}

// Neutral names a Bind mount (by its Dst) whose host path the jail must not
// learn. A bind shows its source's path in /proc/self/mountinfo (the mount's
// root within its filesystem), and a checkout's path is none of the script's
// business. StageNeutral copies such a file into its tmpfs, and shows such a
// directory through a read-only overlayfs whose layers have neutral paths
// in the staging directory: the jail sees "/" and "overlay" and those paths.
type Neutral struct {
	Dst string
	// Replace gives files of a directory (paths relative to it) other
	// contents, for files that name host paths themselves (a venv's
	// pyvenv.cfg). They are the overlay's upper layer.
	Replace map[string][]byte
}

// maxNeutralFile bounds a file that StageNeutral copies (the staging tmpfs
// is small).
const maxNeutralFile = 256 << 10

// StageNeutral is Stage, and also hides the host paths of the neutral
// mounts (see Neutral). Where the kernel refuses an overlay (no overlayfs),
// a directory falls back to a plain staged bind: the jail then works as
// before and sees the path.
func StageNeutral(dir string, mounts []Mount, neutral []Neutral) ([]Mount, error) {
	out, err := stage(dir, mounts, neutral)
	if err != nil {
		return nil, fmt.Errorf("stage mounts in %s: %w", dir, err)
	}
	return out, nil
}

func stage(dir string, mounts []Mount, neutral []Neutral) ([]Mount, error) {
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
		"mode=0755,size=2m,nr_inodes=4096"); err != nil {
		return nil, fmt.Errorf("mount tmpfs: %w", err)
	}
	hide := map[string]Neutral{}
	for _, n := range neutral {
		hide[n.Dst] = n
	}
	out := make([]Mount, len(mounts))
	staged := map[string]string{} // source -> staged path
	for i, m := range mounts {
		out[i] = m
		if n, ok := hide[m.Dst]; ok && m.Kind == Bind {
			p, err := stageNeutral(dir, fmt.Sprintf("n%d", i), m.Src, n.Replace)
			if err != nil {
				_ = Unstage(dir)
				return nil, err
			}
			if p != "" {
				out[i].Src = p
				continue
			}
		}
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

// stageNeutral makes src appear under dir/name without its host path: a
// file is copied; a directory becomes a read-only overlay of replace (upper
// layer, dir/name.top) over a bind of src at dir/name.src. It returns ""
// (and leaves nothing behind) when the kernel refuses the overlay.
func stageNeutral(dir, name, src string, replace map[string][]byte) (string, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, name)
	if !fi.IsDir() {
		if fi.Size() > maxNeutralFile {
			return "", fmt.Errorf("%s: %d bytes, too large to copy for staging", src, fi.Size())
		}
		data, err := os.ReadFile(src)
		if err == nil {
			err = os.WriteFile(p, data, 0o444)
		}
		if err != nil {
			return "", fmt.Errorf("copy %s for staging: %w", src, err)
		}
		return p, nil
	}
	top, lower := p+".top", p+".src"
	if err := os.Mkdir(top, 0o755); err != nil {
		return "", fmt.Errorf("create overlay layer: %w", err)
	}
	for rel, data := range replace {
		f := filepath.Join(top, filepath.Clean("/"+rel))
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return "", fmt.Errorf("create overlay layer: %w", err)
		}
		if err := os.WriteFile(f, data, 0o444); err != nil {
			return "", fmt.Errorf("create overlay layer: %w", err)
		}
	}
	if err := bindReadOnly(src, lower); err != nil {
		return "", err
	}
	if err := os.Mkdir(p, 0o755); err != nil {
		return "", fmt.Errorf("create mount point: %w", err)
	}
	// Two lower layers and no upper one: a read-only overlay (some kernels
	// refuse a single lower layer without an upper one).
	opts := "lowerdir=" + top + ":" + lower
	if err := unix.Mount("overlay", p, "overlay", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		_ = unix.Unmount(lower, unix.MNT_DETACH)
		return "", nil
	}
	return p, nil
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
