//go:build !amd64

package jail

// No policy is defined here: kafel's syscall names differ per architecture,
// and only amd64's are checked against nsjail. SeccompPolicy and
// SeccompFilter fail.
const (
	cloneNewMask  = 0
	auditArch     = 0
	sysClone      = 0
	sysClone3     = 0
	sysSocket     = 0
	sysSocketpair = 0
)

var (
	deniedSyscalls     []deniedSyscall
	foreignABISyscalls []uintptr
)

var containerForeignSocket []uintptr
