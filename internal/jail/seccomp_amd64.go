package jail

import "golang.org/x/sys/unix"

// cloneNewMask is every CLONE_NEW* flag: clone with any of them fails.
const cloneNewMask = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS |
	unix.CLONE_NEWIPC | unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET |
	unix.CLONE_NEWTIME

// deniedSyscalls are refused with EPERM. The names are kafel's for amd64
// (umount2 is "umount" there); the tests check that nsjail 3.6 compiles them.
var deniedSyscalls = []deniedSyscall{
	{"acct", unix.SYS_ACCT},
	{"add_key", unix.SYS_ADD_KEY},
	{"adjtimex", unix.SYS_ADJTIMEX},
	{"bpf", unix.SYS_BPF},
	{"chroot", unix.SYS_CHROOT},
	{"clock_adjtime", unix.SYS_CLOCK_ADJTIME},
	{"clock_settime", unix.SYS_CLOCK_SETTIME},
	{"delete_module", unix.SYS_DELETE_MODULE},
	{"finit_module", unix.SYS_FINIT_MODULE},
	{"fsconfig", unix.SYS_FSCONFIG},
	{"fsmount", unix.SYS_FSMOUNT},
	{"fsopen", unix.SYS_FSOPEN},
	{"fspick", unix.SYS_FSPICK},
	{"init_module", unix.SYS_INIT_MODULE},
	{"io_uring_enter", unix.SYS_IO_URING_ENTER},
	{"io_uring_register", unix.SYS_IO_URING_REGISTER},
	{"io_uring_setup", unix.SYS_IO_URING_SETUP},
	{"ioperm", unix.SYS_IOPERM},
	{"iopl", unix.SYS_IOPL},
	{"kexec_file_load", unix.SYS_KEXEC_FILE_LOAD},
	{"kexec_load", unix.SYS_KEXEC_LOAD},
	{"keyctl", unix.SYS_KEYCTL},
	{"lookup_dcookie", unix.SYS_LOOKUP_DCOOKIE},
	{"mount", unix.SYS_MOUNT},
	{"mount_setattr", unix.SYS_MOUNT_SETATTR},
	{"move_mount", unix.SYS_MOVE_MOUNT},
	{"name_to_handle_at", unix.SYS_NAME_TO_HANDLE_AT},
	{"nfsservctl", unix.SYS_NFSSERVCTL},
	{"open_by_handle_at", unix.SYS_OPEN_BY_HANDLE_AT},
	{"open_tree", unix.SYS_OPEN_TREE},
	{"perf_event_open", unix.SYS_PERF_EVENT_OPEN},
	{"pidfd_getfd", unix.SYS_PIDFD_GETFD},
	{"pivot_root", unix.SYS_PIVOT_ROOT},
	{"process_vm_readv", unix.SYS_PROCESS_VM_READV},
	{"process_vm_writev", unix.SYS_PROCESS_VM_WRITEV},
	{"ptrace", unix.SYS_PTRACE},
	{"quotactl", unix.SYS_QUOTACTL},
	{"quotactl_fd", unix.SYS_QUOTACTL_FD},
	{"reboot", unix.SYS_REBOOT},
	{"request_key", unix.SYS_REQUEST_KEY},
	{"setns", unix.SYS_SETNS},
	{"settimeofday", unix.SYS_SETTIMEOFDAY},
	{"swapoff", unix.SYS_SWAPOFF},
	{"swapon", unix.SYS_SWAPON},
	{"syslog", unix.SYS_SYSLOG},
	{"umount", unix.SYS_UMOUNT2},
	{"unshare", unix.SYS_UNSHARE},
	{"uselib", unix.SYS_USELIB},
	{"userfaultfd", unix.SYS_USERFAULTFD},
	{"vhangup", unix.SYS_VHANGUP},
}

// x32Bit marks x32 syscalls. They share AUDIT_ARCH_X86_64, so kafel's
// architecture check lets them through to the default action.
const x32Bit = 0x40000000

// foreignABISyscalls are the x32 numbers of everything denied above, plus
// x32's own numbers for ptrace and process_vm_*. Kernels built without x32
// (most) never see them.
var foreignABISyscalls = x32Numbers()

func x32Numbers() []uintptr {
	var nrs []uintptr
	for _, s := range deniedSyscalls {
		nrs = append(nrs, x32Bit|s.nr)
	}
	nrs = append(nrs,
		x32Bit|unix.SYS_CLONE, x32Bit|unix.SYS_CLONE3,
		// The family check below is for the native ABI only.
		x32Bit|unix.SYS_SOCKET, x32Bit|unix.SYS_SOCKETPAIR,
		x32Bit|521, // x32 ptrace
		x32Bit|539, // x32 process_vm_readv
		x32Bit|540, // x32 process_vm_writev
	)
	return sortedUintptrs(nrs)
}

// auditArch is seccomp_data.arch of the native ABI; the syscall numbers
// below are clone's and clone3's.
const (
	auditArch     = unix.AUDIT_ARCH_X86_64
	sysClone      = unix.SYS_CLONE
	sysClone3     = unix.SYS_CLONE3
	sysSocket     = unix.SYS_SOCKET
	sysSocketpair = unix.SYS_SOCKETPAIR
)

// containerForeignSocket is x32's socket(2), refused in the container tier
// with the native one.
var containerForeignSocket = []uintptr{x32Bit | unix.SYS_SOCKET}
