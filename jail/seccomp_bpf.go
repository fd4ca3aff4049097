package jail

import (
	"encoding/binary"
	"fmt"
)

// Classic BPF as seccomp runs it (linux/filter.h, linux/seccomp.h).
const (
	bpfLdWAbs  = 0x20 // BPF_LD | BPF_W | BPF_ABS
	bpfJeqK    = 0x15 // BPF_JMP | BPF_JEQ | BPF_K
	bpfJsetK   = 0x45 // BPF_JMP | BPF_JSET | BPF_K
	bpfRetK    = 0x06 // BPF_RET | BPF_K
	bpfInsnLen = 8    // struct sock_filter: u16 code, u8 jt, u8 jf, u32 k

	seccompRetKillProcess = 0x80000000
	seccompRetErrno       = 0x00050000
	seccompRetAllow       = 0x7fff0000

	// Offsets in struct seccomp_data.
	seccompDataNr   = 0
	seccompDataArch = 4
	seccompDataArg0 = 16 // low 32 bits on little-endian architectures
	seccompDataArgs = 16 // args[i] at seccompDataArgs + 8*i

	errnoEPERM  = 1
	errnoENOSYS = 38
)

type bpfInsn struct {
	code   uint16
	jt, jf uint8
	k      uint32
}

// SeccompFilter returns the strict filter of SeccompPolicy compiled to
// classic BPF, as the bytes of a struct sock_filter array in the host's byte
// order, ready for prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER) or
// seccomp(2). The warm engine's zygote children install it themselves
// before any user code runs; it denies exactly what the kafel policy
// denies, from the same list, and kills the process on a foreign
// architecture (the i386 ABI on amd64), as kafel does.
func SeccompFilter() ([]byte, error) {
	prog, err := seccompProgram()
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(prog)*bpfInsnLen)
	for _, in := range prog {
		out = binary.NativeEndian.AppendUint16(out, in.code)
		out = append(out, in.jt, in.jf)
		out = binary.NativeEndian.AppendUint32(out, in.k)
	}
	return out, nil
}

func seccompProgram() ([]bpfInsn, error) {
	if len(deniedSyscalls) == 0 || auditArch == 0 {
		return nil, fmt.Errorf("seccomp filter: %w", errNotSupported)
	}
	prog := []bpfInsn{
		{code: bpfLdWAbs, k: seccompDataArch},
		{code: bpfJeqK, jt: 1, k: auditArch},
		{code: bpfRetK, k: seccompRetKillProcess},
		{code: bpfLdWAbs, k: seccompDataNr},
	}
	deny := func(nr uintptr, errno uint32) {
		prog = append(prog,
			bpfInsn{code: bpfJeqK, jf: 1, k: uint32(nr)},
			bpfInsn{code: bpfRetK, k: seccompRetErrno | errno})
	}
	var nrs []uintptr
	for _, s := range deniedSyscalls {
		nrs = append(nrs, s.nr)
	}
	for _, nr := range sortedUintptrs(append(nrs, foreignABISyscalls...)) {
		deny(nr, errnoEPERM)
	}
	// clone3's flags live in memory seccomp cannot read: ENOSYS makes the
	// C library fall back to clone, whose flags it can.
	deny(sysClone3, errnoENOSYS)
	if sysSocket != 0 {
		prog = append(prog, socketRules()...)
	}
	prog = append(prog,
		bpfInsn{code: bpfJeqK, jf: 3, k: uint32(sysClone)},
		bpfInsn{code: bpfLdWAbs, k: seccompDataArg0},
		bpfInsn{code: bpfJsetK, jf: 1, k: uint32(cloneNewMask)},
		bpfInsn{code: bpfRetK, k: seccompRetErrno | errnoEPERM},
		bpfInsn{code: bpfRetK, k: seccompRetAllow},
	)
	return prog, nil
}

// socketRules is the filter's version of kafelSocketRules. It starts and
// ends with the syscall number in the accumulator. Arguments are compared
// as whole 64-bit values, as kafel does: high word 0, low word allowed.
func socketRules() []bpfInsn {
	const deny, allow = "deny", "allow"
	a := &bpfAsm{}
	// socket(family, type, protocol)
	a.jeq(uint32(sysSocket), "", "socketpair")
	a.ldArg(0, true)
	a.jeq(0, "", deny)
	a.ldArg(0, false)
	for _, f := range SocketFamilies {
		if f == afNetlink {
			a.jeq(afNetlink, "netlink", "")
			continue
		}
		a.jeq(uint32(f), allow, "")
	}
	a.jmp(deny)
	a.label("netlink")
	a.ldArg(2, true)
	a.jeq(0, "", deny)
	a.ldArg(2, false)
	a.jeq(netlinkRoute, allow, deny)
	// socketpair(family, ...)
	a.label("socketpair")
	a.jeq(uint32(sysSocketpair), "", "next")
	a.ldArg(0, true)
	a.jeq(0, "", deny)
	a.ldArg(0, false)
	a.jeq(afUnix, allow, deny)
	a.label(deny)
	a.ret(seccompRetErrno | errnoEAFNOSUPPORT)
	a.label(allow)
	a.ret(seccompRetAllow)
	// Neither: reload the number for the rules that follow.
	a.label("next")
	a.ld(seccompDataNr)
	return a.assemble()
}

// bpfAsm assembles a straight run of classic BPF with forward jumps to
// labels; "" as a jump target means the next instruction.
type bpfAsm struct {
	prog   []bpfInsn
	jumps  []bpfJump
	labels map[string]int
}

type bpfJump struct {
	at     int
	jt, jf string
}

func (a *bpfAsm) ld(off uint32) { a.prog = append(a.prog, bpfInsn{code: bpfLdWAbs, k: off}) }

// ldArg loads the high or low 32-bit word of argument i (little-endian
// layout: amd64 is the only architecture with a filter).
func (a *bpfAsm) ldArg(i int, high bool) {
	off := uint32(seccompDataArgs + 8*i)
	if high {
		off += 4
	}
	a.ld(off)
}

func (a *bpfAsm) jeq(k uint32, jt, jf string) {
	a.jumps = append(a.jumps, bpfJump{at: len(a.prog), jt: jt, jf: jf})
	a.prog = append(a.prog, bpfInsn{code: bpfJeqK, k: k})
}

// jmp jumps unconditionally (a JEQ whose both branches go to the label).
func (a *bpfAsm) jmp(to string) { a.jeq(0, to, to) }

func (a *bpfAsm) ret(k uint32) { a.prog = append(a.prog, bpfInsn{code: bpfRetK, k: k}) }

func (a *bpfAsm) label(name string) {
	if a.labels == nil {
		a.labels = map[string]int{}
	}
	a.labels[name] = len(a.prog)
}

// assemble resolves the jumps; it panics on a backward or too long jump or
// an unknown label, which are bugs in the code above, caught by the tests.
func (a *bpfAsm) assemble() []bpfInsn {
	off := func(from int, to string) uint8 {
		if to == "" {
			return 0
		}
		at, ok := a.labels[to]
		d := at - from - 1
		if !ok || d < 0 || d > 255 {
			panic(fmt.Sprintf("bpf jump from %d to %q (%d, %v)", from, to, at, ok))
		}
		return uint8(d)
	}
	for _, j := range a.jumps {
		a.prog[j.at].jt = off(j.at, j.jt)
		a.prog[j.at].jf = off(j.at, j.jf)
	}
	return a.prog
}
