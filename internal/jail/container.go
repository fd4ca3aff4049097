package jail

import (
	"fmt"
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

// validateNoNamespaces checks what only a container-tier policy must hold;
// describe then gives it no namespaces, no mounts and no cgroup.
func (p Policy) validateNoNamespaces() error {
	switch {
	case p.Zygote:
		return fmt.Errorf("the container tier has no zygotes")
	case len(p.Mounts) > 0:
		return fmt.Errorf("the container tier mounts nothing, got %d mounts", len(p.Mounts))
	case p.Cgroup != nil:
		return fmt.Errorf("the container tier has no cgroups")
	case p.OutsideUID != p.OutsideGID:
		return fmt.Errorf("uid %d and gid %d differ", p.OutsideUID, p.OutsideGID)
	}
	if err := checkPath("cwd", p.Cwd); err != nil || p.Cwd == "/" {
		return fmt.Errorf("cwd %q: want a private directory", p.Cwd)
	}
	return nil
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
