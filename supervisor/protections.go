package supervisor

import (
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Isolation tiers: what the host lets the supervisor build. The tier, the
// cgroups and the engine decide which protections an execution gets; this
// file is the one place that names them, for the start-up log and /health.
const (
	// TierFull: fresh user, PID, mount, network, IPC, UTS and cgroup
	// namespaces per execution (nsjail), with cgroups where the host
	// delegates them.
	TierFull = "full"
	// TierContainer: no namespaces and no cgroups (a container with
	// Docker's default privileges); see jail.Policy.NoNamespaces.
	TierContainer = "container"
)

// Values of Config.Isolation: the tier the operator asks for.
const (
	IsolationFull      = TierFull
	IsolationContainer = TierContainer
	IsolationAuto      = "auto"
)

// FullIsolationHint names what gives the full tier in a container: the
// recipes make test-image (cgroup v1) and make test-v2 (cgroup v2) run
// (README, Docker).
const FullIsolationHint = "run the container with --privileged (or at least --cap-add SYS_ADMIN --cap-add SYS_NICE --security-opt unmask=/proc/* and, on cgroup v1, -v /sys/fs/cgroup:/sys/fs/cgroup:rw, on cgroup v2, --security-opt unmask=/sys/fs/cgroup; Docker spells the /proc unmask --security-opt systempaths=unconfined)"

// Protection names, as /health lists them (append only; never renamed).
const (
	ProtUserNS          = "user_namespace"
	ProtPidNS           = "pid_namespace"
	ProtMountNS         = "mount_namespace"
	ProtNetNS           = "network_namespace"
	ProtIPCNS           = "ipc_namespace"
	ProtUTSNS           = "uts_namespace"
	ProtCgroupNS        = "cgroup_namespace"
	ProtReadOnlyRoot    = "read_only_root"
	ProtPrivateTmp      = "private_tmp"
	ProtNoCaps          = "no_capabilities"
	ProtNoNewPrivs      = "no_new_privs"
	ProtSeccomp         = "seccomp"
	ProtCleanEnv        = "clean_environment"
	ProtRlimits         = "rlimits"
	ProtMemoryCgroup    = "memory_cgroup"
	ProtPidsCgroup      = "pids_cgroup"
	ProtMemoryWatch     = "memory_watch"                // the supervisor sums the execution's memory and kills it
	ProtUIDPerExecution = "uid_per_execution"           // a host uid of its own (see proc.UIDPool)
	ProtNprocPerExec    = "process_limit_per_execution" // RLIMIT_NPROC counted for this execution alone
	ProtPrivateWorkDir  = "private_work_dir"            // a 0700 directory of its own, removed afterwards
	ProtNoSockets       = "no_sockets"                  // seccomp refuses socket(2) of every family
)

// Protections lists what every execution gets (active) and what the tier
// would give on a host that allowed it but this one lacks (missing).
type Protections struct {
	Tier    string
	Active  []string
	Missing []string
}

// String is the one-line summary the start-up log prints.
func (p Protections) String() string {
	s := "tier " + p.Tier + "; active: " + strings.Join(p.Active, ", ")
	if len(p.Missing) > 0 {
		s += "; missing: " + strings.Join(p.Missing, ", ")
	}
	return s
}

// protectionsOf describes the protections of engine on host.
func protectionsOf(h *Host, engine string) Protections {
	p := Protections{Tier: h.Tier}
	add := func(ok bool, names ...string) {
		if ok {
			p.Active = append(p.Active, names...)
		} else {
			p.Missing = append(p.Missing, names...)
		}
	}
	if h.Tier == TierContainer {
		add(true, ProtUIDPerExecution, ProtPrivateWorkDir, ProtNoCaps, ProtNoNewPrivs)
		add(h.Policy.Seccomp, ProtSeccomp, ProtNoSockets)
		add(true, ProtCleanEnv, ProtRlimits, ProtNprocPerExec, ProtMemoryWatch)
		add(false, ProtUserNS, ProtPidNS, ProtMountNS, ProtNetNS, ProtIPCNS, ProtUTSNS, ProtCgroupNS,
			ProtReadOnlyRoot, ProtPrivateTmp, ProtMemoryCgroup, ProtPidsCgroup)
		return p
	}
	add(true, ProtUserNS, ProtPidNS, ProtMountNS, ProtNetNS, ProtIPCNS, ProtUTSNS, ProtCgroupNS,
		ProtReadOnlyRoot, ProtPrivateTmp, ProtNoCaps, ProtNoNewPrivs)
	add(h.Policy.Seccomp, ProtSeccomp)
	add(true, ProtCleanEnv, ProtRlimits)
	if h.Cgroups != nil {
		add(true, ProtMemoryCgroup, ProtPidsCgroup)
		return p
	}
	add(false, ProtMemoryCgroup, ProtPidsCgroup)
	add(true, ProtMemoryWatch)
	if engine == EngineCold {
		add(h.UIDs != nil, ProtUIDPerExecution, ProtNprocPerExec)
	} else {
		// A warm child shares its zygote's uid; its processes are
		// counted in its own user namespace, which Linux does since 5.14.
		add(kernelAtLeast(5, 14), ProtNprocPerExec)
	}
	return p
}

// kernelAtLeast reports whether the running kernel is at least major.minor.
func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	rel := unix.ByteSliceToString(u.Release[:])
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(strings.TrimLeftFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || (ma == major && mi >= minor)
}
