package jail

import (
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Interpreter describes a Python installation as the interpreter reports
// it: sys.executable, sys.prefix and sys.base_prefix. The supervisor asks
// the interpreter; this package only reads files.
type Interpreter struct {
	// Executable is sys.executable, e.g. <venv>/bin/python3 (a symlink).
	Executable string
	// Prefix is sys.prefix: the virtualenv, or the installation itself
	// when no virtualenv is used.
	Prefix string
	// BasePrefix is sys.base_prefix: the Python installation.
	BasePrefix string
	// Warn, when set, receives each problem that does not stop the
	// interpreter from running, such as a library an extension module
	// needs but the host lacks (that module will fail to import). Nil
	// drops them.
	Warn func(msg string)
}

// systemLibDirs are searched after RPATH/RUNPATH and the installation's
// lib directory, as the dynamic loader does without /etc/ld.so.cache
// (which the jail does not have). The multiarch directories come first
// when the C library lives in one.
var systemLibDirs = []string{"/lib64", "/usr/lib64", "/lib", "/usr/lib"}

// InterpreterMounts returns the read-only bind mounts that let in's
// interpreter run inside the jail: the base prefix, the virtualenv (if
// any), the executable's symlink chain where it leaves them, the ELF
// interpreter (PT_INTERP), and every shared library the interpreter and its
// extension modules (lib-dynload and site-packages) need that is not inside
// those prefixes. Libraries are found by reading ELF headers (DT_NEEDED,
// DT_RPATH, DT_RUNPATH with $ORIGIN), never by running anything, and each
// is bound at the path where the loader looks for it, so it works without
// /etc/ld.so.cache and on merged-/usr systems. Mounts are sorted by Dst.
//
// A library the interpreter itself needs but that cannot be found is an
// error. One needed only by an extension module is a warning, passed to
// in.Warn (that module fails to import; _tkinter's X11 libraries are
// typically missing on servers).
func InterpreterMounts(in Interpreter) ([]Mount, error) {
	ms, warnings, err := interpreterMounts(in)
	if in.Warn != nil {
		for _, w := range warnings {
			in.Warn(w)
		}
	}
	return ms, err
}

func interpreterMounts(in Interpreter) ([]Mount, []string, error) {
	r, err := newResolver(in)
	if err != nil {
		return nil, nil, fmt.Errorf("interpreter mounts for %s: %w", in.Executable, err)
	}
	if err := r.run(); err != nil {
		return nil, nil, fmt.Errorf("interpreter mounts for %s: %w", in.Executable, err)
	}
	ms, ws := r.result()
	return ms, ws, nil
}

// prefixMount is a directory bound whole into the jail.
type prefixMount struct{ src, dst string }

type resolver struct {
	in       Interpreter
	exeReal  string
	prefixes []prefixMount
	libDirs  []string // the installation's own lib directories
	sysDirs  []string

	mounts   map[string]Mount // by Dst
	warnings map[string]bool
	objects  map[string]*elfObject // parsed ELF files, by real path
	statMemo map[string]*elfObject // candidate path -> object, nil if unusable
}

// elfObject is what the resolver needs from one ELF file.
type elfObject struct {
	path    string // path it was found at (for $ORIGIN)
	real    string
	class   elf.Class
	machine elf.Machine
	needed  []string
	rpath   []string
	runpath []string
	interp  string
}

func newResolver(in Interpreter) (*resolver, error) {
	for _, p := range []struct{ what, path string }{
		{"executable", in.Executable}, {"prefix", in.Prefix}, {"base prefix", in.BasePrefix},
	} {
		if !filepath.IsAbs(p.path) || filepath.Clean(p.path) == "/" {
			return nil, fmt.Errorf("%s %q: want an absolute path other than /", p.what, p.path)
		}
	}
	r := &resolver{
		in: Interpreter{
			Executable: filepath.Clean(in.Executable),
			Prefix:     filepath.Clean(in.Prefix),
			BasePrefix: filepath.Clean(in.BasePrefix),
		},
		mounts:   map[string]Mount{},
		warnings: map[string]bool{},
		objects:  map[string]*elfObject{},
		statMemo: map[string]*elfObject{},
	}
	for _, dst := range []string{r.in.BasePrefix, r.in.Prefix} {
		src, err := filepath.EvalSymlinks(dst)
		if err != nil {
			return nil, err
		}
		if r.visible(dst) {
			continue // the venv is the base prefix, or inside it
		}
		r.prefixes = append(r.prefixes, prefixMount{src: src, dst: dst})
	}
	exe, err := filepath.EvalSymlinks(r.in.Executable)
	if err != nil {
		return nil, err
	}
	r.exeReal = exe
	for _, d := range []string{"lib", "lib64"} {
		r.libDirs = append(r.libDirs, filepath.Join(r.in.BasePrefix, d))
	}
	return r, nil
}

// visible reports whether the path p exists in the jail because it is
// inside a prefix bound whole. Only the jail's side counts: when a prefix
// is a symlink, a path under its target is not visible there.
func (r *resolver) visible(p string) bool {
	for _, m := range r.prefixes {
		if within(p, m.dst) {
			return true
		}
	}
	return false
}

// within reports whether p is dir or inside it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/") || dir == "/"
}

func (r *resolver) bind(src, dst string) {
	if r.visible(dst) {
		return
	}
	r.mounts[dst] = Mount{Kind: Bind, Src: src, Dst: dst}
}

func (r *resolver) warn(format string, args ...any) {
	r.warnings[fmt.Sprintf(format, args...)] = true
}

func (r *resolver) run() error {
	if err := r.bindExecutableChain(); err != nil {
		return err
	}
	exe, err := readELF(r.exeReal, r.exeReal)
	if err != nil {
		return err
	}
	if exe.interp != "" {
		real, err := filepath.EvalSymlinks(exe.interp)
		if err != nil {
			return fmt.Errorf("ELF interpreter of %s: %w", r.exeReal, err)
		}
		r.bind(real, exe.interp)
	}
	r.sysDirs = r.systemDirs(exe)
	r.objects[exe.real] = exe
	// First what the interpreter itself needs: missing is fatal there.
	if err := r.closure([]*elfObject{exe}, true); err != nil {
		return err
	}
	exts, err := r.extensionModules()
	if err != nil {
		return err
	}
	return r.closure(exts, false)
}

// bindExecutableChain makes every hop of sys.executable's symlink chain
// resolve inside the jail, binding the real file at hops outside the
// prefixes (the venv's bin/python3 usually points into the base prefix).
func (r *resolver) bindExecutableChain() error {
	p := r.in.Executable
	for range 40 {
		r.bind(r.exeReal, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			return nil
		}
		t, err := os.Readlink(p)
		if err != nil {
			return err
		}
		if !filepath.IsAbs(t) {
			t = filepath.Join(filepath.Dir(p), t)
		}
		p = filepath.Clean(t)
	}
	return fmt.Errorf("%s: too many levels of symbolic links", r.in.Executable)
}

// systemDirs returns the default search directories, with the multiarch
// ones (/lib/<triplet>, /usr/lib/<triplet>) first when the C library the
// executable needs lives in such a directory.
func (r *resolver) systemDirs(exe *elfObject) []string {
	libc := "libc.so.6"
	for _, n := range exe.needed {
		if strings.HasPrefix(n, "libc.") || strings.HasPrefix(n, "libc-") {
			libc = n
			break
		}
	}
	var triplet string
	for _, pat := range []string{"/lib/*/" + libc, "/usr/lib/*/" + libc} {
		matches, _ := filepath.Glob(pat)
		for _, m := range matches {
			if o := r.candidate(m); o != nil && o.class == exe.class && o.machine == exe.machine {
				triplet = filepath.Base(filepath.Dir(m))
				break
			}
		}
		if triplet != "" {
			break
		}
	}
	if triplet == "" {
		return slices.Clone(systemLibDirs)
	}
	return append([]string{"/lib/" + triplet, "/usr/lib/" + triplet}, systemLibDirs...)
}

// extensionModules parses every shared object under the base prefix's
// lib-dynload and the prefix's site-packages.
func (r *resolver) extensionModules() ([]*elfObject, error) {
	var roots []string
	for _, pat := range []string{
		filepath.Join(r.in.BasePrefix, "lib*", "python3*", "lib-dynload"),
		filepath.Join(r.in.Prefix, "lib*", "python3*", "site-packages"),
	} {
		m, err := filepath.Glob(pat)
		if err != nil {
			return nil, err
		}
		roots = append(roots, m...)
	}
	var objs []*elfObject
	seenRoot := map[string]bool{}
	for _, root := range roots {
		real, err := filepath.EvalSymlinks(root)
		if err != nil || seenRoot[real] {
			continue // lib64 -> lib symlinks list the same tree twice
		}
		seenRoot[real] = true
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.Type().IsRegular() || !isSharedObjectName(d.Name()) {
				return nil
			}
			o, err := readELF(p, p)
			if err != nil {
				if errors.Is(err, errNotELF) {
					return nil
				}
				r.warn("%s: %v", p, err)
				return nil
			}
			if _, dup := r.objects[o.real]; !dup {
				r.objects[o.real] = o
				objs = append(objs, o)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return objs, nil
}

// isSharedObjectName matches "x.so" and "libx.so.1.2".
func isSharedObjectName(name string) bool {
	return strings.HasSuffix(name, ".so") || strings.Contains(name, ".so.")
}

// closure resolves the needed libraries of objs and of everything they
// pull in, binding those outside the prefixes.
func (r *resolver) closure(objs []*elfObject, required bool) error {
	queue := slices.Clone(objs)
	for len(queue) > 0 {
		o := queue[0]
		queue = queue[1:]
		for _, name := range o.needed {
			dep, found, viaFallback := r.resolve(o, name)
			if dep == nil {
				if required {
					return fmt.Errorf("library %s needed by %s: not found", name, o.path)
				}
				r.warn("library %s needed by %s: not found", name, o.path)
				continue
			}
			if viaFallback {
				r.warn("library %s needed by %s: found in %s only without RPATH/RUNPATH; the jail's loader needs LD_LIBRARY_PATH=%s",
					name, o.path, found, filepath.Dir(found))
			}
			r.bind(dep.real, found)
			if _, seen := r.objects[dep.real]; !seen {
				r.objects[dep.real] = dep
				queue = append(queue, dep)
			}
		}
	}
	return nil
}

// resolve finds a DT_NEEDED name for o the way the loader does: a name
// with a slash is a path; otherwise RUNPATH (or, without it, RPATH), then
// the installation's lib directories and the system directories. It
// returns the object, the path it was found at, and whether it came from
// the installation's lib directories without o asking for them.
func (r *resolver) resolve(o *elfObject, name string) (*elfObject, string, bool) {
	if strings.Contains(name, "/") {
		if c := r.candidate(name); c != nil && c.class == o.class && c.machine == o.machine {
			return c, name, false
		}
		return nil, "", false
	}
	search := o.runpath
	if len(search) == 0 {
		search = o.rpath
	}
	for _, dir := range search {
		dir = expandOrigin(dir, filepath.Dir(o.path))
		if !filepath.IsAbs(dir) {
			continue // relative to the working directory: not meaningful
		}
		p := filepath.Join(dir, name)
		if c := r.candidate(p); c != nil && c.class == o.class && c.machine == o.machine {
			return c, p, false
		}
	}
	for i, dirs := range [][]string{r.libDirs, r.sysDirs} {
		for _, dir := range dirs {
			p := filepath.Join(dir, name)
			if c := r.candidate(p); c != nil && c.class == o.class && c.machine == o.machine {
				// The loader searches the system directories by itself
				// (a base prefix of /usr has /usr/lib in both lists).
				return c, p, i == 0 && !slices.Contains(r.sysDirs, dir)
			}
		}
	}
	return nil, "", false
}

// expandOrigin substitutes $ORIGIN and ${ORIGIN}. $LIB and $PLATFORM are
// left as they are, which makes such entries match nothing.
func expandOrigin(dir, origin string) string {
	dir = strings.ReplaceAll(dir, "${ORIGIN}", origin)
	return filepath.Clean(strings.ReplaceAll(dir, "$ORIGIN", origin))
}

// candidate returns the ELF object at p, or nil when there is none (cached:
// the same names are looked up in the same directories many times).
func (r *resolver) candidate(p string) *elfObject {
	if o, ok := r.statMemo[p]; ok {
		return o
	}
	var o *elfObject
	if real, err := filepath.EvalSymlinks(p); err == nil {
		if known, ok := r.objects[real]; ok {
			o = known
		} else if parsed, err := readELF(p, real); err == nil {
			o = parsed
		}
	}
	r.statMemo[p] = o
	return o
}

var errNotELF = errors.New("not an ELF file")

// readELF reads the dynamic-linking facts of the ELF file real, found at
// path p.
func readELF(p, real string) (*elfObject, error) {
	f, err := os.Open(real)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, errNotELF
	}
	var magic [4]byte
	if _, err := f.ReadAt(magic[:], 0); err != nil || string(magic[:]) != elf.ELFMAG {
		return nil, errNotELF
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return nil, fmt.Errorf("parse ELF %s: %w", real, err)
	}
	o := &elfObject{path: p, real: real, class: ef.Class, machine: ef.Machine}
	for _, prog := range ef.Progs {
		if prog.Type == elf.PT_INTERP {
			b := make([]byte, prog.Filesz)
			if _, err := prog.ReadAt(b, 0); err != nil {
				return nil, fmt.Errorf("read PT_INTERP of %s: %w", real, err)
			}
			o.interp = strings.TrimRight(string(b), "\x00")
		}
	}
	if o.needed, err = ef.DynString(elf.DT_NEEDED); err != nil {
		return nil, fmt.Errorf("read DT_NEEDED of %s: %w", real, err)
	}
	for _, tag := range []elf.DynTag{elf.DT_RPATH, elf.DT_RUNPATH} {
		vals, err := ef.DynString(tag)
		if err != nil {
			return nil, fmt.Errorf("read %v of %s: %w", tag, real, err)
		}
		var dirs []string
		for _, v := range vals {
			dirs = append(dirs, filepath.SplitList(v)...)
		}
		if tag == elf.DT_RPATH {
			o.rpath = dirs
		} else {
			o.runpath = dirs
		}
	}
	return o, nil
}

func (r *resolver) result() ([]Mount, []string) {
	var ms []Mount
	for _, p := range r.prefixes {
		ms = append(ms, Mount{Kind: Bind, Src: p.src, Dst: p.dst})
	}
	for _, m := range r.mounts {
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b Mount) int { return strings.Compare(a.Dst, b.Dst) })
	var ws []string
	for w := range r.warnings {
		ws = append(ws, w)
	}
	slices.Sort(ws)
	return ms, ws
}
