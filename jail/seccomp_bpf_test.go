//go:build amd64

package jail

import (
	"encoding/binary"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// runFilter interprets the subset of classic BPF that SeccompFilter emits
// on one struct seccomp_data (nr, arch, args[0]).
func runFilter(t *testing.T, prog []byte, nr, arch uint32, arg0 uint64) uint32 {
	t.Helper()
	var data [64]byte
	binary.NativeEndian.PutUint32(data[seccompDataNr:], nr)
	binary.NativeEndian.PutUint32(data[seccompDataArch:], arch)
	binary.NativeEndian.PutUint64(data[seccompDataArg0:], arg0)
	var acc uint32
	for pc := 0; ; pc++ {
		if (pc+1)*bpfInsnLen > len(prog) {
			t.Fatalf("program falls off its end at %d", pc)
		}
		in := prog[pc*bpfInsnLen:]
		code := binary.NativeEndian.Uint16(in)
		jt, jf := int(in[2]), int(in[3])
		k := binary.NativeEndian.Uint32(in[4:])
		switch code {
		case bpfLdWAbs:
			acc = binary.NativeEndian.Uint32(data[k:])
		case bpfJeqK:
			if acc == k {
				pc += jt
			} else {
				pc += jf
			}
		case bpfJsetK:
			if acc&k != 0 {
				pc += jt
			} else {
				pc += jf
			}
		case bpfRetK:
			return k
		default:
			t.Fatalf("unexpected opcode %#x at %d", code, pc)
		}
	}
}

func TestSeccompFilter(t *testing.T) {
	prog, err := SeccompFilter()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(prog) / bpfInsnLen; n > 4096 || len(prog)%bpfInsnLen != 0 {
		t.Fatalf("program of %d bytes", len(prog))
	}
	const arch = unix.AUDIT_ARCH_X86_64
	eperm, enosys := uint32(seccompRetErrno|1), uint32(seccompRetErrno|38)
	for _, s := range deniedSyscalls {
		if got := runFilter(t, prog, uint32(s.nr), arch, 0); got != eperm {
			t.Errorf("%s: %#x, want EPERM", s.name, got)
		}
	}
	for _, nr := range foreignABISyscalls {
		if got := runFilter(t, prog, uint32(nr), arch, 0); got != eperm {
			t.Errorf("x32 %#x: %#x, want EPERM", nr, got)
		}
	}
	cases := []struct {
		name     string
		nr, arch uint32
		arg0     uint64
		want     uint32
	}{
		{"read", unix.SYS_READ, arch, 0, seccompRetAllow},
		{"fork-like clone", unix.SYS_CLONE, arch, uint64(unix.SIGCHLD), seccompRetAllow},
		{"thread clone", unix.SYS_CLONE, arch, unix.CLONE_VM | unix.CLONE_THREAD | unix.CLONE_SIGHAND, seccompRetAllow},
		{"clone newuser", unix.SYS_CLONE, arch, unix.CLONE_NEWUSER, eperm},
		{"clone newpid", unix.SYS_CLONE, arch, unix.CLONE_NEWPID | uint64(unix.SIGCHLD), eperm},
		{"clone newtime", unix.SYS_CLONE, arch, unix.CLONE_NEWTIME, eperm},
		{"clone3", unix.SYS_CLONE3, arch, 0, enosys},
		{"i386 abi", 1, unix.AUDIT_ARCH_I386, 0, seccompRetKillProcess},
		{"execve", unix.SYS_EXECVE, arch, 0, seccompRetAllow},
	}
	for _, c := range cases {
		if got := runFilter(t, prog, c.nr, c.arch, c.arg0); got != c.want {
			t.Errorf("%s: %#x, want %#x", c.name, got, c.want)
		}
	}
}

func TestZygoteSeccompPolicy(t *testing.T) {
	strict, err := SeccompPolicy()
	if err != nil {
		t.Fatal(err)
	}
	z, err := ZygoteSeccompPolicy()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"    mount,", "    unshare,", "clone(flags)"} {
		if !contains(strict, name) || contains(z, name) {
			t.Errorf("%q: in strict %v, in zygote %v; want only in strict", name, contains(strict, name), contains(z, name))
		}
	}
	for _, name := range []string{"ptrace", "setns", "bpf", "clone3", "pivot_root", "umount"} {
		if !contains(z, name) {
			t.Errorf("zygote policy lets %s through", name)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
