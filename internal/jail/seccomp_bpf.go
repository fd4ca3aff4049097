package jail

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/net/bpf"
)

// What a seccomp filter returns and the struct seccomp_data it reads
// (linux/seccomp.h).
const (
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

	bpfInsnLen = 8 // struct sock_filter: u16 code, u8 jt, u8 jf, u32 k
)

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
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("seccomp filter: %w", err)
	}
	out := make([]byte, 0, len(raw)*bpfInsnLen)
	for _, in := range raw {
		out = binary.NativeEndian.AppendUint16(out, in.Op)
		out = append(out, in.Jt, in.Jf)
		out = binary.NativeEndian.AppendUint32(out, in.K)
	}
	return out, nil
}

// ld loads the 32-bit word at off of struct seccomp_data (seccomp loads
// whole words only, in the host's byte order).
func ld(off uint32) bpf.Instruction { return bpf.LoadAbsolute{Off: off, Size: 4} }

func seccompProgram() ([]bpf.Instruction, error) {
	if len(deniedSyscalls) == 0 || auditArch == 0 {
		return nil, fmt.Errorf("seccomp filter: %w", errNotSupported)
	}
	prog := []bpf.Instruction{
		ld(seccompDataArch),
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: auditArch, SkipTrue: 1},
		bpf.RetConstant{Val: seccompRetKillProcess},
		ld(seccompDataNr),
	}
	deny := func(nr uintptr, errno uint32) {
		prog = append(prog,
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(nr), SkipTrue: 1},
			bpf.RetConstant{Val: seccompRetErrno | errno})
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
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(sysClone), SkipTrue: 3},
		ld(seccompDataArg0),
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: uint32(cloneNewMask), SkipFalse: 1},
		bpf.RetConstant{Val: seccompRetErrno | errnoEPERM},
		bpf.RetConstant{Val: seccompRetAllow},
	)
	return prog, nil
}

// socketRules is the filter's version of kafelSocketRules. It starts and
// ends with the syscall number in the accumulator. Arguments are compared
// as whole 64-bit values, as kafel does: high word 0, low word allowed.
func socketRules() []bpf.Instruction {
	const deny, allow = "deny", "allow"
	a := &labels{}
	// socket(family, type, protocol)
	a.jeq(uint32(sysSocket), "", "socketpair")
	a.add(ldArg(0, true))
	a.jeq(0, "", deny)
	a.add(ldArg(0, false))
	for _, f := range SocketFamilies {
		if f == afNetlink {
			a.jeq(afNetlink, "netlink", "")
			continue
		}
		a.jeq(uint32(f), allow, "")
	}
	a.jmp(deny)
	a.label("netlink")
	a.add(ldArg(2, true))
	a.jeq(0, "", deny)
	a.add(ldArg(2, false))
	a.jeq(netlinkRoute, allow, deny)
	// socketpair(family, ...)
	a.label("socketpair")
	a.jeq(uint32(sysSocketpair), "", "next")
	a.add(ldArg(0, true))
	a.jeq(0, "", deny)
	a.add(ldArg(0, false))
	a.jeq(afUnix, allow, deny)
	a.label(deny)
	a.add(bpf.RetConstant{Val: seccompRetErrno | errnoEAFNOSUPPORT})
	a.label(allow)
	a.add(bpf.RetConstant{Val: seccompRetAllow})
	// Neither: reload the number for the rules that follow.
	a.label("next")
	a.add(ld(seccompDataNr))
	return a.resolve()
}

// ldArg loads the high or low 32-bit word of argument i (little-endian
// layout: amd64 is the only architecture with a filter).
func ldArg(i int, high bool) bpf.Instruction {
	off := uint32(seccompDataArgs + 8*i)
	if high {
		off += 4
	}
	return ld(off)
}

// labels lets a run of instructions jump forward to named places, which
// golang.org/x/net/bpf leaves to its callers (it takes skip counts); ""
// as a jump target means the next instruction.
type labels struct {
	prog  []bpf.Instruction
	jumps []labelJump
	at    map[string]int
}

type labelJump struct {
	at     int
	jt, jf string
}

func (a *labels) add(in bpf.Instruction) { a.prog = append(a.prog, in) }

// jeq jumps to jt if the accumulator equals k, else to jf.
func (a *labels) jeq(k uint32, jt, jf string) {
	a.jumps = append(a.jumps, labelJump{at: len(a.prog), jt: jt, jf: jf})
	a.add(bpf.JumpIf{Cond: bpf.JumpEqual, Val: k})
}

// jmp jumps unconditionally.
func (a *labels) jmp(to string) {
	a.jumps = append(a.jumps, labelJump{at: len(a.prog), jt: to})
	a.add(bpf.Jump{})
}

func (a *labels) label(name string) {
	if a.at == nil {
		a.at = map[string]int{}
	}
	a.at[name] = len(a.prog)
}

// resolve fills in the jumps' skip counts; it panics on a backward or too
// long jump or an unknown label, which are bugs in the code above, caught
// by the tests.
func (a *labels) resolve() []bpf.Instruction {
	skip := func(from int, to string) uint8 {
		if to == "" {
			return 0
		}
		at, ok := a.at[to]
		d := at - from - 1
		if !ok || d < 0 || d > 255 {
			panic(fmt.Sprintf("bpf jump from %d to %q (%d, %v)", from, to, at, ok))
		}
		return uint8(d)
	}
	for _, j := range a.jumps {
		switch in := a.prog[j.at].(type) {
		case bpf.JumpIf:
			in.SkipTrue, in.SkipFalse = skip(j.at, j.jt), skip(j.at, j.jf)
			a.prog[j.at] = in
		case bpf.Jump:
			in.Skip = uint32(skip(j.at, j.jt))
			a.prog[j.at] = in
		}
	}
	return a.prog
}
