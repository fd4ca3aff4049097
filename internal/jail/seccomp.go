package jail

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// seccompName is the kafel policy's name; it appears in the rendered config.
const seccompName = "python_executor"

// errNotSupported marks what this package does not implement on the
// running architecture.
var errNotSupported = errors.New("not supported on this architecture")

// deniedSyscall is one syscall the jail refuses with EPERM.
type deniedSyscall struct {
	name string  // kafel's name for it on this architecture
	nr   uintptr // its number, from golang.org/x/sys/unix
}

// SeccompPolicy returns the kafel policy Render installs when
// Policy.Seccomp is set. It allows everything by default and makes the
// syscalls a Python script has no business making fail with EPERM (ENOSYS
// for clone3, whose flags seccomp cannot inspect, so that the C library
// falls back to clone, whose flags it can): tracing other processes, mounts
// and namespaces, kernel modules and keyrings, BPF, perf, clock and system
// settings, io_uring. Namespaces stay out of reach even where user
// namespaces would grant the capabilities: unshare and setns are denied, and
// so is clone with any CLONE_NEW* flag.
//
// It returns an error on architectures for which no policy is defined
// (only amd64 is).
func SeccompPolicy() (string, error) {
	return kafelPolicy(nil, false)
}

// ZygoteSeccompPolicy is the kafel policy of the warm engine's zygote jail
// (Policy.Zygote): SeccompPolicy without the denial of mount, unshare and
// clone with CLONE_NEW* flags, which a zygote needs to create its children in
// their own namespaces and they need to finish them before they install the
// strict filter (SeccompFilter) and run any user code. Filters stack, so a
// child ends up with both.
func ZygoteSeccompPolicy() (string, error) {
	return kafelPolicy(zygoteAllowed, true)
}

// zygoteAllowed are the denied syscalls the zygote jail lets through.
var zygoteAllowed = []string{"mount", "unshare"}

// kafelPolicy denies deniedSyscalls but those allowed, and clone with a
// CLONE_NEW* flag unless cloneNamespaces.
func kafelPolicy(allowed []string, cloneNamespaces bool) (string, error) {
	if len(deniedSyscalls) == 0 {
		return "", fmt.Errorf("seccomp policy: %w", errNotSupported)
	}
	var denied []deniedSyscall
	for _, s := range deniedSyscalls {
		if !slices.Contains(allowed, s.name) {
			denied = append(denied, s)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "POLICY %s {\n", seccompName)
	b.WriteString("  ERRNO(1) {\n")
	for i, s := range denied {
		sep := ","
		if i == len(denied)-1 {
			sep = ""
		}
		fmt.Fprintf(&b, "    %s%s\n", s.name, sep)
	}
	b.WriteString("  },\n")
	if !cloneNamespaces {
		fmt.Fprintf(&b, "  ERRNO(1) {\n    clone(flags) { (flags & %#x) != 0 }\n  },\n", cloneNewMask)
	}
	b.WriteString("  ERRNO(38) {\n    clone3\n  }")
	if sysSocket != 0 {
		b.WriteString(",\n" + kafelSocketRules())
	}
	if len(foreignABISyscalls) > 0 {
		// Another ABI sharing this architecture's audit value (x32 on
		// amd64) numbers its syscalls differently; a default-allow policy
		// must name its numbers too.
		b.WriteString(",\n  ERRNO(1) {\n")
		for i, nr := range foreignABISyscalls {
			sep := ","
			if i == len(foreignABISyscalls)-1 {
				sep = ""
			}
			fmt.Fprintf(&b, "    SYSCALL[%#x]%s\n", nr, sep)
		}
		b.WriteString("  }")
	}
	fmt.Fprintf(&b, "\n}\nUSE %s DEFAULT ALLOW\n", seccompName)
	return b.String(), nil
}

// Socket families a script may create: what Python and its C library
// use (unix sockets, IPv4 and IPv6 in the jail's empty network namespace,
// and route netlink, which getaddrinfo and if_nameindex query). Every other
// family fails with EAFNOSUPPORT, as on a kernel built without it: AF_VSOCK
// would reach a VM host's hypervisor from outside every network namespace,
// and AF_ALG, RDS, TIPC and friends are kernel attack surface no script
// needs. socketpair only works for unix sockets in the first place (and
// TIPC), so it is limited to AF_UNIX.
const (
	afUnix       = 1  // AF_UNIX
	afInet       = 2  // AF_INET
	afInet6      = 10 // AF_INET6
	afNetlink    = 16 // AF_NETLINK
	netlinkRoute = 0  // NETLINK_ROUTE, the only netlink protocol allowed

	errnoEAFNOSUPPORT = 97
)

// SocketFamilies are the families socket(2) accepts in the jail; netlink
// only with protocol NETLINK_ROUTE.
var SocketFamilies = []int{afUnix, afInet, afInet6, afNetlink}

// kafelSocketRules is the policy's socket and socketpair block. kafel
// compares whole 64-bit arguments, so a family with stray high bits is
// refused too (it is not one of the allowed values).
func kafelSocketRules() string {
	var allowed []string
	for _, f := range SocketFamilies {
		allowed = append(allowed, fmt.Sprintf("family != %d", f))
	}
	return fmt.Sprintf("  ERRNO(%d) {\n"+
		"    socket(family, type, protocol) { (%s) || (family == %d && protocol != %d) },\n"+
		"    socketpair(family) { family != %d }\n"+
		"  }",
		errnoEAFNOSUPPORT, strings.Join(allowed, " && "), afNetlink, netlinkRoute, afUnix)
}

func sortedUintptrs(s []uintptr) []uintptr {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}
