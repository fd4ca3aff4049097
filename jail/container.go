package jail

import (
	"fmt"
	"path"
	"strconv"
	"strings"
)

// The container tier: a jail for a host that lets the supervisor create no
// namespaces and no cgroups (a container with Docker's default privileges).
// The container is the outer boundary; nsjail still launches the script,
// with every clone_newX off, no mounts, and what is left to separate
// executions from the service and from each other: a uid and gid of their
// own (Policy.OutsideUID, which the caller takes from a range nothing else
// uses), a private working directory (Policy.Cwd, created 0700 for that uid
// by the caller), no capabilities, no_new_privs, rlimits, the seccomp
// policy ContainerSeccompPolicy (no sockets at all: with no network
// namespace of its own a socket would reach the container's network), and
// the explicit environment. The memory limit of the whole execution is the
// caller's to enforce (RLIMIT_AS bounds each process); the process limit is
// RLIMIT_NPROC, counted per uid, hence per execution.
//
// What the full tier has and this one lacks: PID, mount, network, IPC, UTS,
// user and cgroup namespaces, the read-only root with only the Python
// installation, a private size-limited /tmp and /dev/shm, its own /proc.

// renderNoNamespaces renders p for the container tier (Policy.NoNamespaces).
func renderNoNamespaces(p Policy) ([]byte, error) {
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("render jail config: %w", err)
	}
	switch {
	case p.Zygote:
		return nil, fmt.Errorf("render jail config: the container tier has no zygotes")
	case len(p.Mounts) > 0:
		return nil, fmt.Errorf("render jail config: the container tier mounts nothing, got %d mounts", len(p.Mounts))
	case p.Cgroup != nil:
		return nil, fmt.Errorf("render jail config: the container tier has no cgroups")
	case p.OutsideUID != p.OutsideGID:
		return nil, fmt.Errorf("render jail config: uid %d and gid %d differ", p.OutsideUID, p.OutsideGID)
	}
	if err := checkPath("cwd", p.Cwd); err != nil || p.Cwd == "/" || !strings.HasPrefix(p.Cwd, "/") || path.Clean(p.Cwd) != p.Cwd {
		return nil, fmt.Errorf("render jail config: cwd %q: want a private directory", p.Cwd)
	}
	w := &textWriter{}
	w.comment("nsjail 3.6 config rendered by python-executor/jail (container tier): do not edit.")
	w.str("name", "python-executor")
	w.enum("mode", "ONCE")
	w.str("cwd", p.Cwd)
	w.uint("time_limit", uint64(ceilSeconds(p.Limits.Wall))+1)
	w.int("nice_level", 19)
	if p.LogFD != 0 {
		w.int("log_fd", int64(p.LogFD))
	}
	w.enum("log_level", "WARNING")
	w.bool("keep_env", false)
	for _, e := range p.Env {
		w.str("envar", e)
	}
	w.bool("keep_caps", false)
	w.bool("silent", false)
	w.bool("skip_setsid", false)
	w.bool("stderr_to_null", false)
	for _, fd := range sortedInts(p.PassFDs) {
		w.int("pass_fd", int64(fd))
	}
	w.bool("disable_no_new_privs", false)
	w.uint("rlimit_as", ceilMiB(p.Limits.MemoryBytes))
	w.enum("rlimit_as_type", "VALUE")
	w.uint("rlimit_core", 0)
	w.enum("rlimit_core_type", "VALUE")
	w.uint("rlimit_cpu", uint64(ceilSeconds(p.Limits.CPUTime)))
	w.enum("rlimit_cpu_type", "VALUE")
	w.uint("rlimit_fsize", ceilMiB(p.Limits.FileSizeBytes))
	w.enum("rlimit_fsize_type", "VALUE")
	w.uint("rlimit_nofile", uint64(p.Limits.OpenFiles))
	w.enum("rlimit_nofile_type", "VALUE")
	// Counted per uid: the execution's own.
	w.uint("rlimit_nproc", uint64(p.Limits.Pids))
	w.enum("rlimit_nproc_type", "VALUE")
	w.uint("rlimit_stack", stackMiB)
	w.enum("rlimit_stack_type", "VALUE")
	for _, key := range []string{"clone_newnet", "clone_newuser", "clone_newns", "clone_newpid", "clone_newipc", "clone_newuts", "clone_newcgroup"} {
		w.bool(key, false)
	}
	// Without a user namespace nsjail switches to inside_id, which must
	// then be the same id outside.
	for _, key := range []string{"uidmap", "gidmap"} {
		w.open(key)
		w.str("inside_id", strconv.Itoa(p.OutsideUID))
		w.str("outside_id", strconv.Itoa(p.OutsideUID))
		w.uint("count", 1)
		w.bool("use_newidmap", false)
		w.close()
	}
	w.bool("mount_proc", false)
	if p.Seccomp {
		policy, err := ContainerSeccompPolicy()
		if err != nil {
			return nil, fmt.Errorf("render jail config: %w", err)
		}
		for _, line := range strings.SplitAfter(policy, "\n") {
			if line != "" {
				w.str("seccomp_string", line)
			}
		}
	}
	w.open("exec_bin")
	w.str("path", p.Python)
	for _, a := range p.Args {
		w.str("arg", a)
	}
	w.close()
	return w.bytes(), nil
}

// containerSeccompName names the container tier's own rules.
const containerSeccompName = "python_executor_container"

// ContainerSeccompPolicy is SeccompPolicy plus the container tier's rules:
// socket(2) of every family fails with EPERM. socketpair(2) stays allowed
// (multiprocessing and subprocess use it): a pair of connected AF_UNIX
// sockets reaches nothing but itself. AF_UNIX socket(2) is refused too, so
// that no execution can connect to a socket of the service or the container
// by path, nor meet another execution at an abstract address.
func ContainerSeccompPolicy() (string, error) {
	base, err := SeccompPolicy()
	if err != nil {
		return "", err
	}
	use := fmt.Sprintf("USE %s DEFAULT ALLOW\n", seccompName)
	if !strings.HasSuffix(base, use) {
		return "", fmt.Errorf("container seccomp policy: the base policy does not end with %q", use)
	}
	var b strings.Builder
	b.WriteString(strings.TrimSuffix(base, use))
	fmt.Fprintf(&b, "POLICY %s {\n  ERRNO(1) {\n    socket", containerSeccompName)
	for _, nr := range containerForeignSocket {
		fmt.Fprintf(&b, ",\n    SYSCALL[%#x]", nr)
	}
	// The tier's rules come first, then the base policy's: kafel takes the
	// first rule that matches a syscall.
	fmt.Fprintf(&b, "\n  },\n  USE %s\n}\nUSE %s DEFAULT ALLOW\n", seccompName, containerSeccompName)
	return b.String(), nil
}
