//go:build amd64

package jail

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// runFilter runs SeccompFilter's bytes on one struct seccomp_data (nr,
// arch, args[0]) in golang.org/x/net/bpf's VM.
func runFilter(t *testing.T, prog []byte, nr, arch uint32, arg0 uint64) uint32 {
	t.Helper()
	return runFilterArgs(t, prog, nr, arch, arg0)
}

// runFilterArgs is runFilter with more arguments. The program run is the
// one decoded from the bytes the zygote installs, not the one they were
// assembled from.
//
// The VM reads packets, whose words are in network byte order; seccomp
// reads struct seccomp_data, whose words are in the host's. The filter only
// loads whole, aligned 32-bit words, so the VM's input is seccomp_data's
// layout with each word stored big-endian: nr, arch, instruction_pointer
// (zero), then each args[i] as its low word at 16+8i and its high word at
// 20+8i, as on little-endian amd64.
func runFilterArgs(t *testing.T, prog []byte, nr, arch uint32, args ...uint64) uint32 {
	t.Helper()
	if len(prog) == 0 || len(prog)%bpfInsnLen != 0 {
		t.Fatalf("program of %d bytes", len(prog))
	}
	var insns []bpf.Instruction
	for i := 0; i < len(prog); i += bpfInsnLen {
		raw := bpf.RawInstruction{
			Op: binary.NativeEndian.Uint16(prog[i:]),
			Jt: prog[i+2], Jf: prog[i+3],
			K: binary.NativeEndian.Uint32(prog[i+4:]),
		}
		in := raw.Disassemble()
		if _, unknown := in.(bpf.RawInstruction); unknown {
			t.Fatalf("instruction %d: unknown opcode %#x", i/bpfInsnLen, raw.Op)
		}
		insns = append(insns, in)
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatalf("filter rejected by the VM: %v", err)
	}
	var data [64]byte
	binary.BigEndian.PutUint32(data[seccompDataNr:], nr)
	binary.BigEndian.PutUint32(data[seccompDataArch:], arch)
	for i, a := range args {
		binary.BigEndian.PutUint32(data[seccompDataArgs+8*i:], uint32(a))
		binary.BigEndian.PutUint32(data[seccompDataArgs+8*i+4:], uint32(a>>32))
	}
	ret, err := vm.Run(data[:])
	if err != nil {
		t.Fatalf("run filter: %v", err)
	}
	return uint32(ret)
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

func TestSeccompFilterSocketFamilies(t *testing.T) {
	prog, err := SeccompFilter()
	if err != nil {
		t.Fatal(err)
	}
	const arch = unix.AUDIT_ARCH_X86_64
	refused := uint32(seccompRetErrno | unix.EAFNOSUPPORT)
	cases := []struct {
		name    string
		nr      uint32
		args    []uint64
		allowed bool
	}{
		{"unix", unix.SYS_SOCKET, []uint64{unix.AF_UNIX, unix.SOCK_STREAM, 0}, true},
		{"inet", unix.SYS_SOCKET, []uint64{unix.AF_INET, unix.SOCK_STREAM, 0}, true},
		{"inet6 udp", unix.SYS_SOCKET, []uint64{unix.AF_INET6, unix.SOCK_DGRAM, 17}, true},
		{"route netlink", unix.SYS_SOCKET, []uint64{unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE}, true},
		{"audit netlink", unix.SYS_SOCKET, []uint64{unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_AUDIT}, false},
		{"netlink protocol high bits", unix.SYS_SOCKET, []uint64{unix.AF_NETLINK, unix.SOCK_RAW, 1 << 32}, false},
		{"vsock", unix.SYS_SOCKET, []uint64{unix.AF_VSOCK, unix.SOCK_STREAM, 0}, false},
		{"alg", unix.SYS_SOCKET, []uint64{unix.AF_ALG, unix.SOCK_SEQPACKET, 0}, false},
		{"rds", unix.SYS_SOCKET, []uint64{unix.AF_RDS, unix.SOCK_SEQPACKET, 0}, false},
		{"tipc", unix.SYS_SOCKET, []uint64{unix.AF_TIPC, unix.SOCK_RDM, 0}, false},
		{"packet", unix.SYS_SOCKET, []uint64{unix.AF_PACKET, unix.SOCK_RAW, 0}, false},
		{"bluetooth", unix.SYS_SOCKET, []uint64{unix.AF_BLUETOOTH, unix.SOCK_RAW, 0}, false},
		{"inet with high bits", unix.SYS_SOCKET, []uint64{1<<32 | unix.AF_INET, unix.SOCK_STREAM, 0}, false},
		{"socketpair unix", unix.SYS_SOCKETPAIR, []uint64{unix.AF_UNIX, unix.SOCK_STREAM, 0}, true},
		{"socketpair tipc", unix.SYS_SOCKETPAIR, []uint64{unix.AF_TIPC, unix.SOCK_STREAM, 0}, false},
		{"socketpair inet", unix.SYS_SOCKETPAIR, []uint64{unix.AF_INET, unix.SOCK_STREAM, 0}, false},
		{"x32 socket", x32Bit | unix.SYS_SOCKET, []uint64{unix.AF_VSOCK, 0, 0}, false},
	}
	for _, c := range cases {
		want := refused
		if c.allowed {
			want = seccompRetAllow
		} else if c.nr&x32Bit != 0 {
			want = seccompRetErrno | errnoEPERM
		}
		if got := runFilterArgs(t, prog, c.nr, arch, c.args...); got != want {
			t.Errorf("%s: %#x, want %#x", c.name, got, want)
		}
	}
	// The rules after the socket block still see the syscall number.
	if got := runFilter(t, prog, unix.SYS_CLONE, arch, unix.CLONE_NEWNET); got != seccompRetErrno|errnoEPERM {
		t.Errorf("clone newnet after the socket rules: %#x", got)
	}
	if got := runFilter(t, prog, unix.SYS_CONNECT, arch, 3); got != seccompRetAllow {
		t.Errorf("connect: %#x, want allow", got)
	}
}

func TestSeccompPolicySocketFamilies(t *testing.T) {
	for _, f := range []func() (string, error){SeccompPolicy, ZygoteSeccompPolicy} {
		p, err := f()
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"ERRNO(97)", "socket(family, type, protocol)", "family != 10", "socketpair(family) { family != 1 }"} {
			if !contains(p, want) {
				t.Errorf("policy lacks %q:\n%s", want, p)
			}
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

// TestSeccompFilterGolden pins the filter's exact instructions, in
// testdata/seccomp_filter_amd64.txt (one per line: code, jt, jf, k, then
// the disassembly). A change to the filter shows there as a reviewable
// diff; run go test ./jail -run TestSeccompFilterGolden -update to accept it.
func TestSeccompFilterGolden(t *testing.T) {
	prog, err := SeccompFilter()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for i := 0; i+8 <= len(prog); i += 8 {
		raw := bpf.RawInstruction{
			Op: binary.NativeEndian.Uint16(prog[i:]),
			Jt: prog[i+2], Jf: prog[i+3],
			K: binary.NativeEndian.Uint32(prog[i+4:]),
		}
		fmt.Fprintf(&b, "%04x %02x %02x %08x  %v\n", raw.Op, raw.Jt, raw.Jf, raw.K, raw.Disassemble())
	}
	golden := filepath.Join("testdata", "seccomp_filter_amd64.txt")
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden (run go test ./jail -run TestSeccompFilterGolden -update): %v", err)
	}
	if b.String() != string(want) {
		t.Errorf("SeccompFilter differs from %s:\n%s", golden, lineDiff(string(want), b.String()))
	}
}
