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
	prog = append(prog,
		bpfInsn{code: bpfJeqK, jf: 3, k: uint32(sysClone)},
		bpfInsn{code: bpfLdWAbs, k: seccompDataArg0},
		bpfInsn{code: bpfJsetK, jf: 1, k: uint32(cloneNewMask)},
		bpfInsn{code: bpfRetK, k: seccompRetErrno | errnoEPERM},
		bpfInsn{code: bpfRetK, k: seccompRetAllow},
	)
	return prog, nil
}
