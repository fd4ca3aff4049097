package jail

import (
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Spec is the isolation of one jail, spelled out: every property a jailed
// process gets, derived from a Policy by one function (describe) and
// enforced from this description alone. Render writes it as an nsjail
// config (the cold engine's jails, the container tier's, and the warm
// engine's zygote jails); ChildSpec's ChildSetup and ChildLimits are the
// parts a warm engine's child applies itself, which the supervisor sends to
// the zygote and the zygote applies generically (runner/ZYGOTE.md). A property added here is enforced by both
// engines, so they cannot drift apart.
type Spec struct {
	// Namespaces are the namespaces the jail gets, in nsjail's order;
	// empty in the container tier.
	Namespaces []Namespace
	// UID and GID map one id inside to one outside (count 1). Without a
	// user namespace Inside equals Outside.
	UID, GID IDMap
	// Hostname is set in the UTS namespace; empty without one.
	Hostname string
	// Cwd is the working directory.
	Cwd string
	// Env is the complete environment; nothing else is kept.
	Env []string
	// Mounts are the jail's filesystems, parents first. An empty list (the
	// container tier) means the host's filesystem, unchanged.
	Mounts []SpecMount
	// Rlimits are the resource limits, one per resource nsjail sets.
	Rlimits []Rlimit
	// KeepCaps keeps capabilities; false drops every one (bounding,
	// ambient, effective, permitted, inheritable).
	KeepCaps bool
	// NoNewPrivs sets PR_SET_NO_NEW_PRIVS.
	NoNewPrivs bool
	// Seccomp is the syscall filter, SeccompNone for none.
	Seccomp SeccompKind
	// TimeLimit is nsjail's backstop in seconds, 0 for none.
	TimeLimit uint64
	// Nice is the niceness of the jailed processes.
	Nice int
	// NoLoopback keeps the network namespace's loopback down.
	NoLoopback bool
	// Cgroup is what the execution's own cgroup is given (NewExec writes
	// it, for the cold engine's nsjail and the warm engine's child alike);
	// zero when the jail has no cgroup (the container tier, or a host
	// without cgroups).
	Cgroup CgroupLimits
}

// CgroupLimits are the limits written to one execution's cgroup. They are
// derived from Limits by describe alone, so the two engines' cgroups
// cannot differ.
type CgroupLimits struct {
	// MemoryBytes is memory.limit_in_bytes (v1) or memory.max (v2).
	MemoryBytes int64
	// SwapBytes is the swap allowed on top of MemoryBytes: v1
	// memory.memsw.limit_in_bytes is MemoryBytes+SwapBytes (when the
	// kernel accounts swap), v2 memory.swap.max is SwapBytes.
	SwapBytes int64
	// Pids is pids.max: processes and threads together.
	Pids int
	// CPUShares is v1 cpu.shares and CPUWeight v2 cpu.weight (when the
	// cpu controller is there): the same for every execution, so that
	// the CPU is shared per execution rather than per process, and 60
	// busy processes of one execution get no more of it than the one
	// process of its neighbour.
	CPUShares int
	CPUWeight int
	// OOMGroup sets v2 memory.oom.group: an OOM kills the whole
	// execution, not one of its processes.
	OOMGroup bool
}

// IsZero reports whether c is the section of a jail without a cgroup.
func (c CgroupLimits) IsZero() bool { return c == CgroupLimits{} }

func (c CgroupLimits) validate() error {
	if c.MemoryBytes <= 0 || c.Pids <= 0 || c.SwapBytes < 0 || c.CPUShares <= 0 || c.CPUWeight <= 0 {
		return fmt.Errorf("cgroup limits %+v: want positive memory, pids and cpu share, and swap >= 0", c)
	}
	return nil
}

// cgroupLimits are the cgroup limits of an execution with limits l.
func cgroupLimits(l Limits) CgroupLimits {
	return CgroupLimits{
		MemoryBytes: l.MemoryBytes,
		// No swap: memory beyond the limit is an OOM kill, not a slow
		// execution thrashing the host's disk.
		SwapBytes: 0,
		Pids:      l.Pids,
		// The kernel's defaults, written anyway so that a changed default
		// cannot skew the sharing.
		CPUShares: 1024,
		CPUWeight: 100,
		OOMGroup:  true,
	}
}

// Namespace is one kind of namespace with its clone(2) flag.
type Namespace struct {
	Name string // nsjail's clone_new<Name>
	Flag uint64 // CLONE_NEW*
}

// namespaces are all a full jail gets, in nsjail's config order.
var namespaces = []Namespace{
	{"net", unix.CLONE_NEWNET},
	{"user", unix.CLONE_NEWUSER},
	{"ns", unix.CLONE_NEWNS},
	{"pid", unix.CLONE_NEWPID},
	{"ipc", unix.CLONE_NEWIPC},
	{"uts", unix.CLONE_NEWUTS},
	{"cgroup", unix.CLONE_NEWCGROUP},
}

// IDMap maps Inside (the id in the jail) to Outside (on the host).
type IDMap struct{ Inside, Outside int }

// SpecMount is a Mount with the flags the jail decides.
type SpecMount struct {
	Mount
	NoSuid, NoDev, NoExec bool
	// PerExecution marks a filesystem every execution gets fresh (/tmp,
	// /dev/shm, /proc): a warm child mounts it itself, over its zygote's.
	// The others (the read-only root and binds) are the same for every
	// execution, and a warm child inherits them from its zygote's jail,
	// rendered from the same policy.
	PerExecution bool
}

// Flags are the mount(2) flags of m.
func (m SpecMount) Flags() uint64 {
	var f uint64
	if !m.RW {
		f |= unix.MS_RDONLY
	}
	if m.NoSuid {
		f |= unix.MS_NOSUID
	}
	if m.NoDev {
		f |= unix.MS_NODEV
	}
	if m.NoExec {
		f |= unix.MS_NOEXEC
	}
	return f
}

// RlimitMode says how a limit is set, as nsjail's rlimit_*_type does.
type RlimitMode int

// Rlimit modes. Only RlimitValue sets a number; the others keep what the
// process inherits (nsjail: INF raises it to infinity, SOFT and HARD take
// nsjail's own soft or hard limit).
const (
	RlimitValue RlimitMode = iota
	RlimitInf
	RlimitSoft
	RlimitHard
)

var rlimitModeNames = [...]string{"VALUE", "INF", "SOFT", "HARD"}

// String returns nsjail's name of the mode.
func (m RlimitMode) String() string { return rlimitModeNames[m] }

// Rlimit is one resource limit, soft and hard alike.
type Rlimit struct {
	Name     string // nsjail's rlimit_<Name>
	Resource int    // RLIMIT_*
	Mode     RlimitMode
	Value    uint64 // in the resource's unit (bytes, seconds, a count) when Mode is RlimitValue
}

// nsjailValue is Value in nsjail's unit: MiB for the sizes.
func (r Rlimit) nsjailValue() uint64 {
	switch r.Resource {
	case unix.RLIMIT_AS, unix.RLIMIT_CORE, unix.RLIMIT_FSIZE, unix.RLIMIT_STACK:
		return r.Value / mib
	}
	return r.Value
}

// SeccompKind names one of the seccomp policies.
type SeccompKind int

// Seccomp policies.
const (
	SeccompNone      SeccompKind = iota
	SeccompStrict                // SeccompPolicy, SeccompFilter
	SeccompZygote                // ZygoteSeccompPolicy
	SeccompContainer             // ContainerSeccompPolicy
)

// kafel returns the kafel policy of k.
func (k SeccompKind) kafel() (string, error) {
	switch k {
	case SeccompStrict:
		return SeccompPolicy()
	case SeccompZygote:
		return ZygoteSeccompPolicy()
	case SeccompContainer:
		return ContainerSeccompPolicy()
	}
	return "", fmt.Errorf("seccomp policy %d: none", k)
}

// Describe validates p and returns its Spec.
func Describe(p Policy) (Spec, error) {
	if err := p.validate(); err != nil {
		return Spec{}, err
	}
	if p.NoNamespaces {
		if err := p.validateNoNamespaces(); err != nil {
			return Spec{}, err
		}
	}
	return describe(p, p.Cgroup != nil), nil
}

// DescribeWithCgroup is Describe for a policy whose cgroup is still to be
// created: its Spec's Cgroup section is what NewExec is given; the
// cgroup's Placement then goes into p.Cgroup, and Render describes the same
// Spec. In the container tier the section is zero (no cgroup).
func DescribeWithCgroup(p Policy) (Spec, error) {
	if p.NoNamespaces {
		return Describe(p)
	}
	if err := p.validate(); err != nil {
		return Spec{}, err
	}
	return describe(p, true), nil
}

// describe builds the Spec of a valid policy; withCgroup says whether a
// cgroup limits memory and tasks (p.Cgroup may be nil for a warm child,
// whose cgroup the supervisor attaches it to).
func describe(p Policy, withCgroup bool) Spec {
	s := Spec{
		Env:        p.Env,
		KeepCaps:   false,
		NoNewPrivs: true,
		Rlimits:    rlimits(p, withCgroup),
		// nsjail's default, said out loud: jails yield the CPU to the
		// supervisor and the gateway, which keeps deadlines and /health
		// responsive under load.
		Nice: 19,
	}
	// The supervisor enforces the real deadline with millisecond
	// precision; this one-second-granularity limit is only a backstop. A
	// zygote lives as long as the supervisor.
	if !p.Zygote {
		s.TimeLimit = uint64(ceilSeconds(p.Limits.Wall)) + 1
	}
	if p.Seccomp {
		switch {
		case p.NoNamespaces:
			s.Seccomp = SeccompContainer
		case p.Zygote:
			s.Seccomp = SeccompZygote
		default:
			s.Seccomp = SeccompStrict
		}
	}
	if p.NoNamespaces {
		// Without a user namespace nsjail switches to inside_id, which
		// must then be the same id outside.
		s.UID = IDMap{p.OutsideUID, p.OutsideUID}
		s.GID = IDMap{p.OutsideUID, p.OutsideUID}
		s.Cwd = p.Cwd
		return s
	}
	if withCgroup {
		s.Cgroup = cgroupLimits(p.Limits)
	}
	s.Namespaces = namespaces
	s.UID = IDMap{jailUID, p.OutsideUID}
	s.GID = IDMap{jailUID, p.OutsideGID}
	s.Hostname = jailHostname
	s.Cwd = jailCwd
	s.Mounts = jailMounts(p)
	// The net namespace keeps its loopback interface, down: nothing in
	// the jail can talk to anything, not even itself over IP.
	s.NoLoopback = true
	return s
}

// rlimits are the resource limits of p, in nsjail's order.
func rlimits(p Policy, withCgroup bool) []Rlimit {
	l := p.Limits
	val := func(name string, res int, v uint64) Rlimit {
		return Rlimit{Name: name, Resource: res, Mode: RlimitValue, Value: v}
	}
	mode := func(name string, res int, m RlimitMode) Rlimit {
		return Rlimit{Name: name, Resource: res, Mode: m}
	}
	var rs []Rlimit
	switch {
	case withCgroup && !p.NoNamespaces:
		// Memory is limited by the cgroup. An address-space limit would
		// only break allocators and BLAS thread pools that reserve more
		// than they touch.
		rs = append(rs, mode("as", unix.RLIMIT_AS, RlimitInf))
	case p.Zygote:
		// Each child sets its own, above the address space it inherits
		// from the zygote; this is only the ceiling.
		rs = append(rs, mode("as", unix.RLIMIT_AS, RlimitHard))
	default:
		rs = append(rs, val("as", unix.RLIMIT_AS, ceilMiB(l.MemoryBytes)*mib))
	}
	rs = append(rs, val("core", unix.RLIMIT_CORE, 0))
	if p.Zygote {
		// Each child sets its own CPU limit.
		rs = append(rs, mode("cpu", unix.RLIMIT_CPU, RlimitInf))
	} else {
		rs = append(rs, val("cpu", unix.RLIMIT_CPU, uint64(ceilSeconds(l.CPUTime))))
	}
	rs = append(rs, val("fsize", unix.RLIMIT_FSIZE, ceilMiB(l.FileSizeBytes)*mib),
		val("nofile", unix.RLIMIT_NOFILE, uint64(l.OpenFiles)))
	switch {
	case withCgroup && !p.NoNamespaces:
		// pids.max of the cgroup is the limit. RLIMIT_NPROC counts per
		// user: on kernels before 5.14 that is the host uid shared by
		// every concurrent jail, so it would make jails fail each other.
		rs = append(rs, mode("nproc", unix.RLIMIT_NPROC, RlimitSoft))
	case p.Zygote:
		// A child's processes are charged to its own user namespace and
		// to its creator's, the zygote's, whose soft RLIMIT_NPROC at the
		// child's creation is the ceiling there. A finite value would make
		// the zygote and all its children share one count, so a fork bomb
		// in one execution would stop its neighbours (and the zygote) from
		// forking. Each child sets its own limit. (HARD: nsjail's own hard
		// limit, which a user namespace cannot raise to infinity.)
		rs = append(rs, mode("nproc", unix.RLIMIT_NPROC, RlimitHard))
	default:
		// Since Linux 5.14 RLIMIT_NPROC is counted per user namespace, and
		// every jail has its own, so this is a per-execution limit there.
		// On older kernels it counts all jails of OutsideUID together. In
		// the container tier it counts the execution's own uid.
		rs = append(rs, val("nproc", unix.RLIMIT_NPROC, uint64(l.Pids)))
	}
	return append(rs, val("stack", unix.RLIMIT_STACK, stackMiB*mib))
}

// render writes s and p's launch details (fds, cgroup, command) as an
// nsjail 3.6 config.
func (s Spec) render(p Policy, header string) ([]byte, error) {
	w := &textWriter{}
	w.comment(header)
	w.str("name", "python-executor")
	w.enum("mode", "ONCE")
	if s.Hostname != "" {
		w.str("hostname", s.Hostname)
	}
	w.str("cwd", s.Cwd)
	w.uint("time_limit", s.TimeLimit)
	w.int("nice_level", int64(s.Nice))
	if p.LogFD != 0 {
		w.int("log_fd", int64(p.LogFD))
	}
	w.enum("log_level", "WARNING")
	w.bool("keep_env", false)
	for _, e := range s.Env {
		w.str("envar", e)
	}
	w.bool("keep_caps", s.KeepCaps)
	w.bool("silent", false)
	// A new session: the script cannot reach the supervisor's terminal
	// (TIOCSTI) and the whole jail is one process group.
	w.bool("skip_setsid", false)
	w.bool("stderr_to_null", false)
	for _, fd := range sortedInts(p.PassFDs) {
		w.int("pass_fd", int64(fd))
	}
	w.bool("disable_no_new_privs", !s.NoNewPrivs)
	for _, r := range s.Rlimits {
		if r.Mode == RlimitValue {
			w.uint("rlimit_"+r.Name, r.nsjailValue())
		}
		w.enum("rlimit_"+r.Name+"_type", r.Mode.String())
	}
	for _, ns := range namespaces {
		on := false
		for _, n := range s.Namespaces {
			on = on || n == ns
		}
		w.bool("clone_new"+ns.Name, on)
	}
	for i, m := range []IDMap{s.UID, s.GID} {
		w.open([]string{"uidmap", "gidmap"}[i])
		w.str("inside_id", fmt.Sprint(m.Inside))
		w.str("outside_id", fmt.Sprint(m.Outside))
		w.uint("count", 1)
		w.bool("use_newidmap", false)
		w.close()
	}
	// /proc is one of the mounts, so that it is ordered with them.
	w.bool("mount_proc", false)
	for _, m := range s.Mounts {
		m.render(w)
	}
	if s.Seccomp != SeccompNone {
		policy, err := s.Seccomp.kafel()
		if err != nil {
			return nil, err
		}
		// One element per line: nsjail concatenates the repeated field,
		// and each line keeps its own newline.
		for _, line := range strings.SplitAfter(policy, "\n") {
			if line != "" {
				w.str("seccomp_string", line)
			}
		}
	}
	if c := p.Cgroup; c != nil {
		c.render(w)
	}
	if s.NoLoopback {
		w.bool("iface_no_lo", true)
	}
	w.open("exec_bin")
	w.str("path", p.Python)
	for _, a := range p.Args {
		w.str("arg", a)
	}
	w.close()
	return w.bytes(), nil
}

// ChildSpec is the Spec of one warm-engine execution: the ordinary jail p
// describes (the zygote's template with p.Zygote off) with limits l, as
// the cold engine would render it. withCgroup says whether the execution
// has a cgroup (which the supervisor attaches the child to). l.Wall is not
// used: nsjail's time limit is only a backstop, which a child has not (the
// supervisor's deadline kills it).
func ChildSpec(p Policy, l Limits, withCgroup bool) (Spec, error) {
	p.Zygote = false
	p.Cgroup = nil
	p.Limits = l
	p.Limits.Wall = time.Second
	if p.NoNamespaces {
		return Spec{}, fmt.Errorf("the container tier has no zygotes")
	}
	if err := p.validate(); err != nil {
		return Spec{}, err
	}
	return describe(p, withCgroup), nil
}

// ChildSetup is the part of a Spec that is the same for every execution: a
// zygote gets it once, in its init message, and applies it to each child
// (runner/ZYGOTE.md).
type ChildSetup struct {
	// Namespaces are the CLONE_NEW* flags of the child (the cgroup
	// namespace is unshared once the child is in its cgroup).
	Namespaces uint64 `msgpack:"namespaces"`
	// UID and GID are the ids inside, mapped to the zygote's own.
	UID        int      `msgpack:"uid"`
	GID        int      `msgpack:"gid"`
	Hostname   string   `msgpack:"hostname"`
	Cwd        string   `msgpack:"cwd"`
	Env        []string `msgpack:"env"`
	KeepCaps   bool     `msgpack:"keep_caps"`
	NoNewPrivs bool     `msgpack:"no_new_privs"`
	// Seccomp is the filter as a BPF program (struct sock_filter array,
	// native byte order), empty for none.
	Seccomp []byte `msgpack:"seccomp"`
}

// ChildLimits is the part of a Spec that depends on an execution's limits:
// it travels in each order.
type ChildLimits struct {
	// Mounts are the fresh filesystems of the execution
	// (SpecMount.PerExecution), parents first.
	Mounts []ChildMount `msgpack:"mounts"`
	// Rlimits are those set to a value (RlimitValue); the child inherits
	// the others from its zygote's jail, which Render gives the same mode.
	Rlimits []ChildRlimit `msgpack:"rlimits"`
}

// ChildMount is one mount(2) call.
type ChildMount struct {
	Source string `msgpack:"source"`
	Target string `msgpack:"target"`
	FSType string `msgpack:"fstype"`
	Flags  uint64 `msgpack:"flags"`
	Data   string `msgpack:"data"`
}

// ChildRlimit is one setrlimit(2) call, soft and hard limits alike.
type ChildRlimit struct {
	Name     string `msgpack:"name"`
	Resource int    `msgpack:"resource"`
	Value    uint64 `msgpack:"value"`
}

// ChildSetup returns the per-zygote part of s. Only the strict seccomp
// policy has a BPF form (SeccompFilter).
func (s Spec) ChildSetup() (ChildSetup, error) {
	c := ChildSetup{
		UID: s.UID.Inside, GID: s.GID.Inside, Hostname: s.Hostname, Cwd: s.Cwd,
		Env: append([]string{}, s.Env...), KeepCaps: s.KeepCaps, NoNewPrivs: s.NoNewPrivs,
	}
	for _, ns := range s.Namespaces {
		c.Namespaces |= ns.Flag
	}
	switch s.Seccomp {
	case SeccompNone:
	case SeccompStrict:
		filter, err := SeccompFilter()
		if err != nil {
			return ChildSetup{}, err
		}
		c.Seccomp = filter
	default:
		return ChildSetup{}, fmt.Errorf("seccomp policy %d has no BPF form", s.Seccomp)
	}
	return c, nil
}

// ChildLimits returns the per-execution part of s.
func (s Spec) ChildLimits() ChildLimits {
	c := ChildLimits{Mounts: []ChildMount{}, Rlimits: []ChildRlimit{}}
	for _, m := range s.Mounts {
		if !m.PerExecution {
			continue
		}
		cm := ChildMount{Source: m.Kind.String(), Target: m.Dst, FSType: m.Kind.String(), Flags: m.Flags(), Data: m.Options}
		c.Mounts = append(c.Mounts, cm)
	}
	for _, r := range s.Rlimits {
		if r.Mode == RlimitValue {
			c.Rlimits = append(c.Rlimits, ChildRlimit{Name: r.Name, Resource: r.Resource, Value: r.Value})
		}
	}
	return c
}
