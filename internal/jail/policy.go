package jail

import (
	"fmt"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Fixed parts of every jail. They are constants, not Policy fields, because
// the product's isolation promise (docs/ARCHITECTURE.md#the-isolation-policy) depends on them.
const (
	jailUID      = 65534 // uid and gid of the script inside the jail
	jailHostname = "sandbox"
	jailCwd      = "/tmp"
	// rootOptions sizes the read-only tmpfs that is the jail's "/". It only
	// holds the directories and empty files nsjail creates as mount points.
	rootOptions = "size=1048576,nr_inodes=4096,mode=0755"
	// stackMiB is RLIMIT_STACK, the usual Linux default: deep recursion
	// fails with RecursionError long before, and threads get their own
	// stacks from mmap, counted by the memory limit.
	stackMiB = 8
	mib      = 1 << 20
)

// Limits are the resource limits of one execution. Every field must be
// positive: a zero value is rejected by Render, never read as "unlimited".
type Limits struct {
	// Wall is the wall-clock limit. The supervisor owns the real deadline;
	// nsjail's time_limit is set to ceil(seconds)+1 only as a backstop.
	Wall time.Duration
	// MemoryBytes is the memory limit: enforced by the execution's cgroup
	// (memory.limit_in_bytes or memory.max), or by RLIMIT_AS when the
	// policy has no cgroup.
	MemoryBytes int64
	// Pids is the maximum number of tasks (processes and threads): the
	// cgroup pids.max, or RLIMIT_NPROC without a cgroup.
	Pids int
	// CPUTime is RLIMIT_CPU, rounded up to whole seconds.
	CPUTime time.Duration
	// FileSizeBytes is RLIMIT_FSIZE, rounded up to whole MiB (nsjail's unit).
	FileSizeBytes int64
	// OpenFiles is RLIMIT_NOFILE.
	OpenFiles int
	// TmpBytes is the size of the private tmpfs at /tmp.
	TmpBytes int64
	// TmpInodes is the number of inodes of the private tmpfs at /tmp.
	TmpInodes int
}

// MountKind is the type of a Mount. The zero value is invalid.
type MountKind int

// Mount kinds. Values are explicit and append-only.
const (
	// Bind is a bind mount of Src (a host path) at Dst.
	Bind MountKind = 1
	// Tmpfs is a fresh tmpfs at Dst; Options carries its mount data
	// (for example "size=1048576,mode=0755").
	Tmpfs MountKind = 2
	// Proc is a procfs of the jail's PID namespace at Dst. The jail mounts
	// /proc itself, so policies cannot ask for one.
	Proc MountKind = 3
)

// String returns the kind's name ("bind", "tmpfs", "proc").
func (k MountKind) String() string {
	switch k {
	case Bind:
		return "bind"
	case Tmpfs:
		return "tmpfs"
	case Proc:
		return "proc"
	}
	return "MountKind(" + strconv.Itoa(int(k)) + ")"
}

// Mount is one filesystem inside the jail.
type Mount struct {
	Kind MountKind
	// Src is the host path of a Bind mount (absolute); empty for other
	// kinds. It is what nsjail opens, so it may be a staged copy (see
	// Stage) of the path the jail sees as Dst.
	Src string
	// Dst is the absolute path inside the jail.
	Dst string
	// RW makes the mount writable; false (the zero value) is read-only.
	RW bool
	// Options is the mount data of a Tmpfs mount; it must be empty for
	// the other kinds.
	Options string
}

// Policy is everything that varies between jails. What does not vary
// (namespaces, uid 65534 inside, no capabilities, the empty read-only root,
// /tmp, /proc and the three device nodes) is fixed by Describe, which turns
// a Policy into the Spec both engines enforce.
type Policy struct {
	// Python is the interpreter's path as seen inside the jail (for
	// example the venv's bin/python3); it is also argv[0].
	Python string
	// Args are the arguments after the interpreter (for example the
	// runner's path inside the jail). Nil means none.
	Args []string
	// Mounts are read-only binds of what Python needs (InterpreterMounts
	// plus a few files of /etc), already staged (Stage) where needed. A
	// Tmpfs here is fresh for every execution (a warm child mounts its
	// own, see SpecMount.PerExecution).
	// Render adds the fixed mounts and orders everything parents first.
	Mounts []Mount
	// OutsideUID and OutsideGID are the host uid and gid that the jail's
	// uid and gid 65534 map to. They must not be 0: the jail must never
	// be root on the host's files.
	OutsideUID int
	OutsideGID int
	// Env is the complete environment of the script ("K=V"); nothing of
	// the supervisor's environment leaks in. Nil means an empty one.
	Env []string
	// PassFDs are the descriptors (>= 3) kept open into the jail, such as
	// the request and result pipes. Stdin, stdout and stderr always are.
	PassFDs []int
	// LogFD is the descriptor (>= 3) nsjail writes its own log to, at
	// warning level, which keeps it out of the script's stderr. 0 means
	// none: nsjail then logs its warnings to its stderr, which is the
	// script's stderr.
	LogFD int
	// Limits are the resource limits.
	Limits Limits
	// Cgroup is where nsjail creates its cgroup (ExecCgroup.Placement).
	// Nil means no cgroups: memory is then limited by RLIMIT_AS and tasks
	// by RLIMIT_NPROC, which is weaker (the caller must say so loudly).
	Cgroup *Placement
	// Seccomp installs the syscall filter (see SeccompPolicy). False, the
	// zero value, installs none.
	Seccomp bool
	// Zygote renders the long-lived jail of a warm-engine zygote instead of
	// a single-use one. Its children build nested namespaces of their own
	// and set their own limits, so the jail differs in exactly this: no
	// time limit and no CPU-time limit; Limits are the ceilings (hard
	// rlimits) the children may set theirs under; /proc is writable (a
	// child writes its own uid and gid maps there; it then mounts a fresh
	// read-only /proc over it); and the seccomp policy, when Seccomp is
	// set, is ZygoteSeccompPolicy. False, the zero value, is the ordinary
	// jail.
	Zygote bool
	// NoNamespaces renders the container tier's jail (see container.go):
	// no namespaces, no mounts, no cgroup; the script runs as
	// OutsideUID:OutsideGID in Cwd. False, the zero value, is the
	// full jail.
	NoNamespaces bool
	// Cwd is the working directory of a NoNamespaces jail (absolute, the
	// execution's own); unused otherwise (the full jail's is /tmp).
	Cwd string
}

// reserved are the mount points the jail owns; a Policy cannot replace them.
var reserved = []string{"/", "/tmp", "/proc", "/dev/shm", "/dev/null", "/dev/zero", "/dev/urandom"}

// Argv returns the command line that runs nsjail with a rendered config.
// Everything else is in the config, so that no option lives outside Render.
func Argv(nsjailPath, configPath string) []string {
	return []string{nsjailPath, "--config", configPath}
}

// Render validates p and returns the nsjail 3.6 configuration, in protobuf
// text format, that runs p.Python in a fresh jail: p's Spec (see Describe)
// and its launch details. The output is deterministic: the same policy
// gives the same bytes.
func Render(p Policy) ([]byte, error) {
	spec, err := Describe(p)
	if err != nil {
		return nil, fmt.Errorf("render jail config: %w", err)
	}
	header := "nsjail 3.6 config rendered by python-executor/jail: do not edit."
	if p.NoNamespaces {
		header = "nsjail 3.6 config rendered by python-executor/jail (container tier): do not edit."
	}
	cfg, err := spec.render(p, header)
	if err != nil {
		return nil, fmt.Errorf("render jail config: %w", err)
	}
	return cfg, nil
}

// validate checks every field of p. It does not touch the filesystem: the
// paths are the jail's, checked by nsjail when it mounts them.
func (p Policy) validate() error {
	if err := checkPath("python", p.Python); err != nil {
		return err
	}
	for i, a := range p.Args {
		if err := checkText(fmt.Sprintf("args[%d]", i), a); err != nil {
			return err
		}
	}
	seen := map[string]bool{}
	for _, d := range reserved {
		seen[d] = true
	}
	for i, m := range p.Mounts {
		if err := m.validate(); err != nil {
			return fmt.Errorf("mounts[%d]: %w", i, err)
		}
		if m.Kind == Proc {
			return fmt.Errorf("mounts[%d]: the jail mounts /proc itself", i)
		}
		if slices.Contains(reserved, m.Dst) {
			return fmt.Errorf("mounts[%d]: %s is mounted by the jail itself", i, m.Dst)
		}
		if m.Dst == "/proc" || strings.HasPrefix(m.Dst, "/proc/") {
			return fmt.Errorf("mounts[%d]: %s is inside the jail's /proc", i, m.Dst)
		}
		if seen[m.Dst] {
			return fmt.Errorf("mounts[%d]: %s is mounted twice", i, m.Dst)
		}
		seen[m.Dst] = true
	}
	if p.OutsideUID <= 0 || p.OutsideUID >= math.MaxUint32 {
		return fmt.Errorf("outside uid %d: must be a non-root uid", p.OutsideUID)
	}
	if p.OutsideGID <= 0 || p.OutsideGID >= math.MaxUint32 {
		return fmt.Errorf("outside gid %d: must be a non-root gid", p.OutsideGID)
	}
	names := map[string]bool{}
	for i, e := range p.Env {
		name, _, ok := strings.Cut(e, "=")
		// nsjail copies the supervisor's value for an entry without "=":
		// that would leak the supervisor's environment.
		if !ok || !validEnvName(name) {
			return fmt.Errorf("env[%d] %q: want NAME=value", i, e)
		}
		if err := checkText(fmt.Sprintf("env[%d]", i), e); err != nil {
			return err
		}
		if names[name] {
			return fmt.Errorf("env[%d]: %s set twice", i, name)
		}
		names[name] = true
	}
	fds := map[int]bool{}
	for _, fd := range p.PassFDs {
		if fd < 3 || fd > math.MaxInt32 {
			return fmt.Errorf("pass fd %d: want >= 3 (0, 1 and 2 are always passed)", fd)
		}
		if fds[fd] {
			return fmt.Errorf("pass fd %d: listed twice", fd)
		}
		fds[fd] = true
	}
	if p.LogFD != 0 && (p.LogFD < 3 || p.LogFD > math.MaxInt32) {
		return fmt.Errorf("log fd %d: want 0 (none) or >= 3", p.LogFD)
	}
	if fds[p.LogFD] {
		return fmt.Errorf("log fd %d: also passed into the jail", p.LogFD)
	}
	if err := p.Limits.validate(); err != nil {
		return fmt.Errorf("limits: %w", err)
	}
	if p.Cgroup != nil {
		if err := p.Cgroup.validate(); err != nil {
			return fmt.Errorf("cgroup placement: %w", err)
		}
	}
	return nil
}

func (l Limits) validate() error {
	const maxSeconds = math.MaxUint32 - 1 // nsjail's time_limit is a uint32
	switch {
	case l.Wall <= 0 || ceilSeconds(l.Wall) > maxSeconds:
		return fmt.Errorf("wall %v: want positive, at most %d s", l.Wall, maxSeconds)
	case l.MemoryBytes <= 0:
		return fmt.Errorf("memory %d bytes: want positive", l.MemoryBytes)
	case l.Pids <= 0:
		return fmt.Errorf("pids %d: want positive", l.Pids)
	case l.CPUTime <= 0:
		return fmt.Errorf("cpu time %v: want positive", l.CPUTime)
	case l.FileSizeBytes <= 0:
		return fmt.Errorf("file size %d bytes: want positive", l.FileSizeBytes)
	case l.OpenFiles <= 0:
		return fmt.Errorf("open files %d: want positive", l.OpenFiles)
	case l.TmpBytes <= 0:
		return fmt.Errorf("tmp size %d bytes: want positive", l.TmpBytes)
	case l.TmpInodes <= 0:
		return fmt.Errorf("tmp inodes %d: want positive", l.TmpInodes)
	}
	return nil
}

func (m Mount) validate() error {
	if err := checkPath("destination", m.Dst); err != nil {
		return err
	}
	switch m.Kind {
	case Bind:
		if err := checkPath("source", m.Src); err != nil {
			return err
		}
		if m.Options != "" {
			return fmt.Errorf("bind %s: options %q: binds take none", m.Dst, m.Options)
		}
	case Tmpfs, Proc:
		if m.Src != "" {
			return fmt.Errorf("%s %s: source %q: want none", m.Kind, m.Dst, m.Src)
		}
		if m.Kind == Proc && m.Options != "" {
			return fmt.Errorf("proc %s: options %q: want none", m.Dst, m.Options)
		}
		if err := checkText("options", m.Options); err != nil {
			return err
		}
		if strings.ContainsAny(m.Options, " \t\n") {
			return fmt.Errorf("%s %s: options %q: contain white space", m.Kind, m.Dst, m.Options)
		}
	default:
		return fmt.Errorf("mount %s: invalid kind %v", m.Dst, m.Kind)
	}
	return nil
}

// checkPath accepts a clean absolute path that nsjail's C strings can carry.
func checkPath(what, p string) error {
	if err := checkText(what, p); err != nil {
		return err
	}
	if !path.IsAbs(p) || path.Clean(p) != p {
		return fmt.Errorf("%s %q: want a clean absolute path", what, p)
	}
	if strings.ContainsAny(p, "\n\r") {
		return fmt.Errorf("%s %q: contains a line break", what, p)
	}
	return nil
}

// checkText rejects what the text format could carry but nsjail could not:
// NUL bytes end C strings, and string fields must be UTF-8.
func checkText(what, s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%s %q: contains a NUL byte", what, s)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s %q: not UTF-8", what, s)
	}
	return nil
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// ShmInodes bounds the jail's /dev/shm tmpfs (its size is Limits.TmpBytes):
// semaphores and queues need a handful of files.
const ShmInodes = 256

// jailMounts returns the fixed mounts and the policy's, parents first:
// nsjail mounts in the order given, and a mount made before its parent would
// be hidden by it (the venv may live under /tmp, on CI for instance).
func jailMounts(p Policy) []SpecMount {
	ms := []SpecMount{
		{Mount: Mount{Kind: Tmpfs, Dst: "/", Options: rootOptions}, NoSuid: true, NoDev: true},
		// noexec: a script may write files, not run them. (ctypes
		// callbacks do not need an executable /tmp: libffi maps its
		// trampolines anonymously.)
		{
			Mount: Mount{Kind: Tmpfs, Dst: "/tmp", RW: true, Options: fmt.Sprintf(
				"size=%d,nr_inodes=%d,mode=1777", p.Limits.TmpBytes, p.Limits.TmpInodes)},
			NoSuid: true, NoDev: true, NoExec: true, PerExecution: true,
		},
		{Mount: Mount{Kind: Proc, Dst: "/proc", RW: p.Zygote}, NoSuid: true, NoDev: true, NoExec: true, PerExecution: true},
		// multiprocessing's locks and queues need POSIX semaphores, which
		// live in /dev/shm. Its pages are charged to the execution's memory
		// cgroup like any other, and it shares /tmp's size cap.
		{
			Mount: Mount{Kind: Tmpfs, Dst: "/dev/shm", RW: true, Options: fmt.Sprintf(
				"size=%d,nr_inodes=%d,mode=1777", p.Limits.TmpBytes, ShmInodes)},
			NoSuid: true, NoDev: true, NoExec: true, PerExecution: true,
		},
		// Device nodes need a mount without nodev; writes to /dev/null are
		// the only ones a script has a reason to make.
		{Mount: Mount{Kind: Bind, Src: "/dev/null", Dst: "/dev/null", RW: true}, NoSuid: true, NoExec: true},
		{Mount: Mount{Kind: Bind, Src: "/dev/zero", Dst: "/dev/zero"}, NoSuid: true, NoExec: true},
		{Mount: Mount{Kind: Bind, Src: "/dev/urandom", Dst: "/dev/urandom"}, NoSuid: true, NoExec: true},
	}
	for _, m := range p.Mounts {
		// A tmpfs is a fresh one for each execution; binds are the same
		// host files for all. A tmpfs is noexec like /tmp: a script may
		// write files there, not run them.
		fresh := m.Kind == Tmpfs
		ms = append(ms, SpecMount{Mount: m, NoSuid: true, NoDev: true, NoExec: fresh, PerExecution: fresh})
	}
	slices.SortStableFunc(ms, func(a, b SpecMount) int {
		if d := depth(a.Dst) - depth(b.Dst); d != 0 {
			return d
		}
		return strings.Compare(a.Dst, b.Dst)
	})
	return ms
}

// depth is the number of components of a clean absolute path ("/" is 0).
func depth(p string) int {
	if p == "/" {
		return 0
	}
	return strings.Count(p, "/")
}

func (m SpecMount) render(w *textWriter) {
	w.open("mount")
	switch m.Kind {
	case Bind:
		w.str("src", m.Src)
		w.str("dst", m.Dst)
		w.bool("is_bind", true)
	case Tmpfs:
		w.str("dst", m.Dst)
		w.str("fstype", "tmpfs")
		w.str("options", m.Options)
		w.bool("is_dir", true)
	case Proc:
		w.str("dst", m.Dst)
		w.str("fstype", "proc")
		w.bool("is_dir", true)
	}
	w.bool("rw", m.RW)
	w.bool("mandatory", true)
	w.bool("nosuid", m.NoSuid)
	w.bool("nodev", m.NoDev)
	w.bool("noexec", m.NoExec)
	w.close()
}

func ceilSeconds(d time.Duration) int64 {
	s := int64(d / time.Second)
	if d%time.Second != 0 {
		s++
	}
	return s
}

func ceilMiB(n int64) uint64 {
	return uint64((n + mib - 1) / mib)
}

func sortedInts(s []int) []int {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// textWriter writes protobuf text format. Every string goes through quote,
// so no value can end a field early or add one.
type textWriter struct {
	b      strings.Builder
	indent int
}

func (w *textWriter) line(s string) {
	w.b.WriteString(strings.Repeat("  ", w.indent))
	w.b.WriteString(s)
	w.b.WriteByte('\n')
}

func (w *textWriter) comment(s string)          { w.line("# " + s) }
func (w *textWriter) str(key, v string)         { w.line(key + ": " + quote(v)) }
func (w *textWriter) enum(key, v string)        { w.line(key + ": " + v) }
func (w *textWriter) bool(key string, v bool)   { w.line(key + ": " + strconv.FormatBool(v)) }
func (w *textWriter) int(key string, v int64)   { w.line(key + ": " + strconv.FormatInt(v, 10)) }
func (w *textWriter) uint(key string, v uint64) { w.line(key + ": " + strconv.FormatUint(v, 10)) }
func (w *textWriter) open(key string)           { w.line(key + " {"); w.indent++ }
func (w *textWriter) close()                    { w.indent--; w.line("}") }
func (w *textWriter) bytes() []byte             { return []byte(w.b.String()) }

// quote returns s as a text-format string literal: printable ASCII and
// UTF-8 stay as they are, quotes and backslashes are escaped, and every
// other byte becomes an octal escape.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, `\%03o`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
