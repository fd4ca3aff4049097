"""python-executor zygote: the warm engine's pre-imported process.

The supervisor starts this file inside an nsjail jail (jail.Policy.Zygote) as

    <venv>/bin/python3 zygote.py

with a SOCK_SEQPACKET Unix socket on the fd named by PYEXEC_CONTROL_FD. Only the
supervisor holds the other end. The protocol (init, ready, orders with their fds,
the children's hello/go and the reports) is specified in runner/ZYGOTE.md, with
golden messages in runner/testdata/zygote.

The zygote imports the preload modules once, warms them up by running a few fixed
workloads of its own through the runner (WARMUP), freezes the garbage collector's view
of them, and then only forks: it never runs user code and never touches an execution's
data. For each order it creates, with one clone(2), a single-use process in the
namespaces the init message names, the PID 1 of its PID namespace that will run the
script; the zygote keeps only its end of the sync socket, to report how the process
ended. The process says hello on its sync socket, waits for the supervisor's go
(meanwhile the supervisor moves it into the execution's cgroup), and reports only a
failed set-up; the zygote reports how it ended.

What a child gets is not decided here: the supervisor derives it from the one
isolation policy that also renders the cold engine's nsjail config (jail.Spec), and
sends the part that is the same for every execution in the init message (ChildSetup:
namespaces, id map, hostname, cwd, environment, capabilities, no_new_privs, the
seccomp program) and the part that depends on the execution's limits in each order
(Order: the fresh mounts, the rlimits). The child applies both as given: it loops
over the mounts and rlimits, installs the BPF bytes, sets the environment. While the
supervisor attaches it, the process maps its ids and makes its mounts; after "go" it
unshares a cgroup namespace (rooted at its execution's cgroup), sets the rlimits,
makes the pipes fds 1-4, closes everything else, re-seeds the PRNGs, drops the
capabilities, sets no_new_privs, installs the seccomp filter, and only then runs the
runner on the script. Before that it forgets the zygote: the zygote's stack is
unwound (_Become), its namespace emptied and `__main__` replaced, so the script finds
nothing of the zygote's state (other executions, the control socket, the init
message) beyond the preloaded modules.

Standard library (ctypes on libc) plus msgpack only.
"""

import ctypes
import gc
import importlib
import linecache
import os
import random  # before any fork, for _reseed: see there
import resource
import select
import signal
import socket
import sys
import types
from typing import Any, NoReturn

import msgpack

import runner

PROTOCOL_VERSION = 2  # runner/ZYGOTE.md
MAX_MESSAGE = 64 * 1024
ORDER_FDS = 5  # stdout, stderr, request, result, sync

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000

PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2
LINUX_CAPABILITY_VERSION_3 = 0x20080522

# The grandchild's fds, as runner.main expects them.
STDOUT_FD, STDERR_FD, REQUEST_FD, RESULT_FD = 1, 2, 3, 4
SYNC_FD = 5  # closed before the script runs

_libc = ctypes.CDLL(None, use_errno=True)


class SetupError(Exception):
    """A step of an execution's set-up failed; nothing of the script ran."""


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(err)}")


def _prctl(option: int, arg2: int = 0, arg3: Any = 0) -> None:
    _check(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), arg3, ctypes.c_ulong(0), ctypes.c_ulong(0)), f"prctl({option})")


def _mount(source: bytes, target: bytes, fstype: bytes, flags: int, data: bytes | None) -> None:
    _check(_libc.mount(source, target, fstype, ctypes.c_ulong(flags), data), f"mount {target.decode()}")


def _write_file(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _field(body: dict, name: str, kind: type, what: str) -> Any:
    value = body.get(name)
    if type(value) is not kind or (kind is int and value < 0):
        raise SetupError(f"{what} field {name} is {value!r}, want {'an int >= 0' if kind is int else kind.__name__}")
    return value


def _strings(body: dict, name: str, what: str) -> list[str]:
    value = _field(body, name, list, what)
    if not all(type(v) is str and "\0" not in v for v in value):
        raise SetupError(f"{what} field {name}: want strings without NUL")
    return value


class ChildSetup:
    """What every child of this zygote gets (the init message's "child" map), checked.
    The zygote applies it as given: it decides nothing of the isolation itself."""

    REQUIRED = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID  # what this file's mechanism relies on

    def __init__(self, body: object, cap_last: int) -> None:
        if not isinstance(body, dict):
            raise SetupError("init field child is not a map")
        what = "child"
        self.namespaces: int = _field(body, "namespaces", int, what)
        if self.namespaces & self.REQUIRED != self.REQUIRED:
            raise SetupError(f"child namespaces {self.namespaces:#x} lack user, mount or PID")
        self.uid: int = _field(body, "uid", int, what)
        self.gid: int = _field(body, "gid", int, what)
        self.hostname: bytes = _field(body, "hostname", str, what).encode()
        self.cwd: str = _field(body, "cwd", str, what)
        self.env: dict[str, str] = {}
        for entry in _strings(body, "env", what):
            name, sep, value = entry.partition("=")
            if not sep or not name:
                raise SetupError(f"child env entry {entry!r}: want NAME=value")
            self.env[name] = value
        self.keep_caps: bool = _field(body, "keep_caps", bool, what)
        self.no_new_privs: bool = _field(body, "no_new_privs", bool, what)
        bpf = body.get("seccomp")
        if type(bpf) is not bytes or len(bpf) % 8 != 0 or len(bpf) // 8 > 4096:
            raise SetupError(f"seccomp filter of {len(bpf) if isinstance(bpf, bytes) else bpf!r} bytes is not a BPF program")
        self._bpf = bpf
        self._filter = ctypes.create_string_buffer(bpf, len(bpf) or 1)
        self._prog = _SockFprog(len(bpf) // 8, ctypes.addressof(self._filter))
        self._cap_last = cap_last

    def lock_down(self) -> None:
        """The last steps before untrusted code: capabilities, no_new_privs, seccomp."""
        if not self.keep_caps:
            for cap in range(self._cap_last + 1):
                _prctl(PR_CAPBSET_DROP, cap)
            _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, ctypes.c_ulong(0))
            header = _CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
            data = (_CapData * 2)()
            _check(_libc.capset(ctypes.byref(header), ctypes.byref(data)), "capset")
        if self.no_new_privs:
            _prctl(PR_SET_NO_NEW_PRIVS, 1, ctypes.c_ulong(0))
        if self._bpf:
            _prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(self._prog))


class Mount:
    """One mount(2) call of an order."""

    def __init__(self, body: object) -> None:
        if not isinstance(body, dict):
            raise SetupError("order mount is not a map")
        what = "order mount"
        self.source: bytes = _field(body, "source", str, what).encode()
        self.target: bytes = _field(body, "target", str, what).encode()
        self.fstype: bytes = _field(body, "fstype", str, what).encode()
        self.flags: int = _field(body, "flags", int, what)
        data: str = _field(body, "data", str, what)
        self.data: bytes | None = data.encode() if data else None
        if not self.target.startswith(b"/") or any(b"\0" in f for f in (self.source, self.target, self.fstype)):
            raise SetupError(f"order mount {body!r}: want an absolute target and no NUL")


class Order:
    """One execution's part of the policy (runner/ZYGOTE.md, order), checked."""

    def __init__(self, body: object) -> None:
        if not isinstance(body, dict) or body.get("v") != PROTOCOL_VERSION:
            raise SetupError(f"order is not a version {PROTOCOL_VERSION} map")
        self.mounts = [Mount(m) for m in _field(body, "mounts", list, "order")]
        self.rlimits: list[tuple[str, int, int]] = []
        for r in _field(body, "rlimits", list, "order"):
            if not isinstance(r, dict):
                raise SetupError("order rlimit is not a map")
            self.rlimits.append((_field(r, "name", str, "rlimit"), _field(r, "resource", int, "rlimit"), _field(r, "value", int, "rlimit")))


def _set_rlimits(order: Order) -> None:
    for name, which, value in order.rlimits:
        try:
            resource.setrlimit(which, (value, value))
        except (OSError, ValueError) as exc:
            raise SetupError(f"setrlimit({name}, {value}): {exc}") from None


def _enter_namespaces(setup: ChildSetup, order: Order, uid: int, gid: int) -> None:
    """In the execution's process, just created in fresh namespaces (setup.namespaces
    but the cgroup one): its id maps, hostname, mounts and working directory."""
    _write_file("/proc/self/setgroups", "deny")
    _write_file("/proc/self/uid_map", f"{setup.uid} {uid} 1")
    _write_file("/proc/self/gid_map", f"{setup.gid} {gid} 1")
    if setup.namespaces & CLONE_NEWUTS:
        _check(_libc.sethostname(setup.hostname, ctypes.c_size_t(len(setup.hostname))), "sethostname")
    _mount(b"none", b"/", b"", MS_REC | MS_PRIVATE, None)
    for m in order.mounts:
        # As nsjail does: a read-only mount is made writable, then remounted
        # read-only, so that only the mount is, as in a cold jail, not the
        # filesystem.
        _mount(m.source, m.target, m.fstype, m.flags & ~MS_RDONLY, m.data)
        if m.flags & MS_RDONLY:
            _mount(b"none", m.target, b"", m.flags | MS_REMOUNT | MS_BIND, None)
    os.chdir(setup.cwd)  # on the new mounts, not the zygote's


def _place_fds(fds: list[int], sync: socket.socket) -> None:
    """Make fds (stdout, stderr, request, result) 1-4 and close every other fd but 0
    and the sync socket, which moves to fd 5."""
    high = [os.dup(fd) for fd in (*fds, sync.fileno())]  # above every target: no dup2 clobbers a source
    for target, fd in zip((STDOUT_FD, STDERR_FD, REQUEST_FD, RESULT_FD, SYNC_FD), high, strict=True):
        os.dup2(fd, target, inheritable=target != SYNC_FD)
    sync.detach()
    os.closerange(SYNC_FD + 1, 1 << 20)


def _reseed() -> None:
    # os.fork already re-seeds `random`; numpy's legacy global generator was seeded
    # once, in the zygote, and would be shared by every execution. `random` is
    # imported at the top, in the zygote: one with nothing preloaded (the slim kind)
    # imports nothing else that loads it, and the child could not open the module's
    # file here, after its RLIMIT_NOFILE (a request's open_files) is set.
    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


def _execution(job: list) -> NoReturn:
    """The single-use process of one order, PID 1 of its namespaces: finish the
    set-up, run the script. A failure before the script runs is reported on the
    sync socket, so that the supervisor tells it from anything a script can do.
    The zygote reports how it ended. job is [sync, order, fds, setup, uid,
    gid], emptied here so that the caller's reference keeps nothing alive."""
    sync, order, fds, setup, uid, gid = job
    job.clear()
    try:
        _drop_other_executions()
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        sync.sendall(b"hello")
        # The namespaces' set-up overlaps the supervisor's cgroup attach.
        _enter_namespaces(setup, order, uid, gid)
        if sync.recv(16) != b"go":
            os._exit(0)  # the supervisor gave up on this execution
        if setup.namespaces & CLONE_NEWCGROUP:
            # In its cgroup now: the cgroup namespace is rooted there.
            _check(_libc.unshare(ctypes.c_int(CLONE_NEWCGROUP)), "unshare cgroup namespace")
        _place_fds(fds, sync)
        sync = socket.socket(fileno=SYNC_FD)
        _set_rlimits(order)
        # The policy's environment, exactly: nothing of the zygote's.
        os.environ.clear()
        os.environ.update(setup.env)
        _reseed()
        setup.lock_down()
    except BaseException as exc:
        try:
            sync.sendall(error_message(exc))
        except OSError:
            pass
        os._exit(125)
    sync.close()
    _prefault()
    run, exit_ = runner.main, os._exit
    # The script sees nothing of the zygote beyond the preloaded modules: not
    # its globals (the zygote is __main__ here, and frames lead to them), not
    # its locals (main and _serve have returned: see _Become).
    del sync, order, fds, setup
    _forget_zygote()
    try:
        run()  # does not return
    finally:
        exit_(125)


def _prefault() -> None:
    """Run the hello warm-up once more, in the child, before the request is read.
    A child's first writes to the zygote's pages (reference counts, caches) each copy
    a page: for the hello example some 120 copy-on-write faults, about half a
    millisecond, most of the runner's time. In a spare that wait is spent before any
    request exists, so it leaves the request's path; in a child launched for a
    request the same faults would have come a moment later anyway. Trusted code, the
    zygote's own fixed workload: it prints nothing, and its traces go as in _warm_up.
    Best effort: a failure changes nothing of the execution."""
    argv = sys.argv
    try:
        runner.run_request(WARMUP[0][2], WARMUP_RESULT_BYTES, images=WARMUP_IMAGES)
    except BaseException:
        pass
    sys.modules.pop(runner.SCRIPT_MODULE, None)
    linecache.cache.pop(runner.SCRIPT_FILENAME, None)
    sys.argv = argv


def _drop_other_executions() -> None:
    # The zygote's bookkeeping of other executions: their sockets' fds are
    # closed later (_place_fds); the objects go now, without closing anything.
    for other in _executions.values():
        other.detach()
    _executions.clear()


def _forget_zygote() -> None:
    """Empty the zygote module's namespace in an execution's process. Code of
    this file still running afterwards uses only its locals."""
    namespace, collect = globals(), gc.collect
    sys.modules["__main__"] = types.ModuleType("__main__")
    namespace.clear()
    # What only cycles kept (frames of the unwound stack and their locals)
    # goes now. Only objects made since gc.freeze() are examined: a few, not
    # the preloaded heap.
    collect()


class _Become(BaseException):
    """Raised in a new execution's process to unwind the zygote's stack (the
    frames of main and _serve, with the init message, the control socket and
    the order loop's state) before the execution starts; caught at the
    module's top level. A BaseException: nothing on the way catches it."""

    def __init__(self, job: list) -> None:
        super().__init__()
        self.job = job


# The zygote's own libc calls that must hold the GIL across a fork, as os.fork does.
_libc_gil = ctypes.PyDLL(None, use_errno=True)
_libc_gil.syscall.restype = ctypes.c_long
SYS_CLONE = 56  # x86_64


def _clone(flags: int) -> int:
    """fork(2) into new namespaces in one clone(2): os.fork's bracketing around a raw
    clone. The zygote is single-threaded. Returns 0 in the child.

    Unlike fork(3), a raw clone leaves the C library's cached thread id of the main
    thread as it was in the zygote. That id is 1 in both (main checks that the zygote
    is PID 1 of its namespace, the child is PID 1 of its own), so it stays right."""
    ctypes.pythonapi.PyOS_BeforeFork()
    pid = _libc_gil.syscall(ctypes.c_long(SYS_CLONE), ctypes.c_ulong(flags | signal.SIGCHLD), ctypes.c_void_p(0), ctypes.c_void_p(0), ctypes.c_void_p(0), ctypes.c_ulong(0))
    if pid == 0:
        ctypes.pythonapi.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    ctypes.pythonapi.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, f"clone: {os.strerror(err)}")
    return pid


# Executions in flight: their process's pid and the zygote's end of their sync
# socket, on which the zygote reports how the process ended. Touched only by the
# main loop.
_executions: dict[int, socket.socket] = {}

# The zygote reaps in its main loop, woken by SIGCHLD through a wakeup pipe, not in
# a Python signal handler: a handler runs only when the main thread gets back to
# Python code, and a zygote blocked in recvmsg for its next order could leave a dead
# child unreported (its execution waiting) until that order came. The C-level
# handler writes to the pipe at delivery; REAP_INTERVAL bounds the wait regardless.
REAP_INTERVAL = 1.0


def report_message(status: int, utime_us: int, stime_us: int, maxrss_kb: int) -> bytes:
    """The zygote's report on an execution's sync socket once its process was reaped."""
    return msgpack.packb({"status": status, "utime_us": utime_us, "stime_us": stime_us, "maxrss_kb": maxrss_kb})


def error_message(exc: BaseException) -> bytes:
    """The child's report on its sync socket when its set-up failed."""
    return msgpack.packb({"error": f"set-up of the script's process: {type(exc).__name__}: {exc}"})


def ready_message(failed: list[str], warmed: list[str], huge_kb: int, threads: int) -> bytes:
    """The zygote's answer to init once it is ready for orders."""
    return msgpack.packb({"v": PROTOCOL_VERSION, "failed": failed, "warmed": warmed, "huge_kb": huge_kb, "threads": threads}, use_bin_type=True)


def parse_init(data: bytes, cap_last: int) -> tuple[list[str], ChildSetup]:
    """The init message's preload list and child set-up, checked."""
    try:
        init = msgpack.unpackb(data, raw=False)
    except Exception as exc:
        raise SetupError(f"init is not msgpack: {exc}") from None
    if not isinstance(init, dict) or init.get("v") != PROTOCOL_VERSION:
        raise SetupError(f"init is not a version {PROTOCOL_VERSION} map")
    return _strings(init, "preload", "init"), ChildSetup(init.get("child"), cap_last)


def _reap() -> None:
    while True:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        sync = _executions.pop(pid, None)
        if sync is None:
            continue
        try:
            sync.send(report_message(status, int(usage.ru_utime * 1e6), int(usage.ru_stime * 1e6), usage.ru_maxrss), socket.MSG_DONTWAIT)
        except OSError:
            pass
        sync.close()


def _receive(control: socket.socket) -> tuple[bytes, list[int]]:
    data, fds, flags, _ = socket.recv_fds(control, MAX_MESSAGE, ORDER_FDS + 1)
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        for fd in fds:
            os.close(fd)
        raise SetupError("truncated message")
    return data, fds


def _serve(control: socket.socket, setup: ChildSetup, wakeup: int) -> None:
    uid, gid = os.getuid(), os.getgid()
    while True:
        readable, _, _ = select.select([control, wakeup], [], [], REAP_INTERVAL)
        if wakeup in readable:
            try:
                while os.read(wakeup, 4096):
                    pass
            except BlockingIOError:
                pass
        _reap()
        if control not in readable:
            continue
        try:
            data, fds = _receive(control)
        except SetupError as exc:
            _log(f"dropped an order: {exc}")
            continue
        if not data:
            return  # the supervisor closed its end
        try:
            if len(fds) != ORDER_FDS:
                raise SetupError(f"order with {len(fds)} fds, want {ORDER_FDS}")
            order = Order(msgpack.unpackb(data, raw=False))
            sync = socket.socket(fileno=fds[4])
        except Exception as exc:
            for fd in fds:
                os.close(fd)
            _log(f"dropped an order: {exc}")
            continue
        try:
            pid = _clone(setup.namespaces & ~CLONE_NEWCGROUP)
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            _log(f"dropped an order: {exc}")
            continue
        if pid == 0:
            try:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                control.close()
                job = [sync, order, fds[:4], setup, uid, gid]
            except BaseException:
                os._exit(125)
            raise _Become(job)
        _executions[pid] = sync
        for fd in fds[:4]:
            os.close(fd)


# Workloads the zygote runs once, through the runner's own run_request, after the
# preload and before gc.freeze(). Importing a module does not finish its set-up: the
# first DataFrame a process builds fills pandas' and numpy's lazy state (submodules
# imported on first use, dtype and ufunc dispatch caches, the interpreter's method
# cache), and so do the runner's first compile and result encoding. Without this
# every execution redoes that work in its own copy of the zygote, about 2 ms of CPU
# and a few hundred copied pages each time for the pandas example. Trusted code,
# fixed here; a script never runs in the zygote. Each entry: (module it needs or "",
# name, script, the error type it must end with or "" for a result).
WARMUP = (
    ("", "hello", "def main():\n    return {'message': 'Hello World', 'result': [1, 2.5, None, True]}\n", ""),
    ("", "exception", "def main():\n    raise ValueError('warm-up')\n", runner.ERR_EXCEPTION),
    (
        "numpy",
        "numpy",
        "import numpy as np\n"
        "def main():\n"
        "    a = np.arange(12, dtype=np.float64).reshape(3, 4)\n"
        "    rng = np.random.default_rng(0)\n"
        "    return {'a': a, 'sum': a.sum(axis=0), 'mean': float(a.mean()), 'dot': a @ a.T,\n"
        "            'r': rng.random(3), 'i': np.int64(7), 'f': np.float32(0.5), 'b': np.bool_(True)}\n",
        "",
    ),
    (
        "pandas",
        "pandas",
        "import pandas as pd\n"
        "import numpy as np\n"
        "def main():\n"
        "    df = pd.DataFrame({'A': [1, 2, 3], 'B': [4, 5, 6]})\n"
        "    s = pd.DataFrame({'k': ['x', 'y', 'x'], 'v': [1.5, 2.5, 3.5], 't': pd.date_range('2024-01-01', periods=3)})\n"
        "    return {'shape': df.shape, 'sum': df.sum().to_dict(), 'mean': df.mean().to_dict(),\n"
        "            'describe': df.describe().to_dict(), 'group': s.groupby('k')['v'].sum().to_dict(),\n"
        "            'frame': s, 'series': df['A'] * 2, 'records': df.to_dict(orient='records')}\n",
        "",
    ),
    (
        # The first figure a process draws loads the fonts (FreeType faces, glyph
        # caches), the Agg canvas and the PNG writer; drawn here once, every
        # child's first plot starts from that. capture_figures closes it.
        "matplotlib.pyplot",
        "matplotlib",
        "import matplotlib.pyplot as plt\n"
        "import pandas as pd\n"
        "def main():\n"
        "    df = pd.DataFrame({'x': [1, 2, 3], 'y': [3.0, 1.0, 2.0]})\n"
        "    ax = df.plot(x='x', y='y', title='warm-up')\n"
        "    ax.set_xlabel('x')\n"
        "    plt.figure()\n"
        "    plt.bar(['a', 'b'], [1, 2])\n"
        "    plt.legend(['b'])\n"
        "    return None\n",
        "",
    ),
)
WARMUP_RESULT_BYTES = 1 << 20
# The images the warm-up asks for: the supervisor's caps (engine.MaxImages, MaxImageBytes).
WARMUP_IMAGES = (16, 4 << 20)


def _warm_up(preloaded: set[str]) -> tuple[list[str], list[str]]:
    """Run the WARMUP workloads whose module is preloaded. Returns the names that ran
    as expected and a description of each that did not. Leaves none of run_request's
    process-wide traces (sys.argv, the script's module, its linecache entry): an
    execution starts from the same state as in the cold engine."""
    argv = sys.argv
    done: list[str] = []
    failed: list[str] = []
    for module, name, script, error in WARMUP:
        if module and module not in preloaded:
            continue
        msg_type, body = runner.run_request(script, WARMUP_RESULT_BYTES, images=WARMUP_IMAGES)
        if (msg_type, body.get("type", "")) == ((runner.MSG_ERROR, error) if error else (runner.MSG_RESULT, "")):
            done.append(name)
        else:
            failed.append(f"warm-up {name}: {body.get('type', '')} {body.get('message', '')}".strip())
    sys.modules.pop(runner.SCRIPT_MODULE, None)
    linecache.cache.pop(runner.SCRIPT_FILENAME, None)
    sys.argv = argv
    return done, failed


def _release_free_heap() -> None:
    """Give the kernel back the pages malloc keeps free inside the heap, not only at
    its top (malloc_trim(0)). The warm-up's large buffers leave megabytes of free heap
    behind that glibc keeps resident: each zygote would hold them while idle, every
    fork copy their page-table entries, every exit unmap them again. Called before
    the huge-page collapse, which refills only the 2 MiB ranges it backs. Best
    effort: a libc without malloc_trim keeps its pages."""
    try:
        trim = _libc.malloc_trim
    except AttributeError:
        return
    trim.argtypes = [ctypes.c_size_t]
    trim(0)


MADV_COLLAPSE = 25  # Linux 6.1
HUGE_PAGE = 2 << 20
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def _collapse_huge_pages() -> int:
    """Back the zygote's anonymous memory (the interpreter's heap and arenas, some 40
    MiB after a pandas import) with 2 MiB pages where it can, and return how many KiB
    are. fork(2) copies one entry per huge page instead of 512 and exit(2) unmaps it
    in one step; a child's first write to one still copies only the 4 KiB it
    touches. MADV_COLLAPSE needs no THP sysfs setting, and leaves the VMA's flags
    alone, so the children's own new memory stays in small pages. Best effort: older
    kernels and hosts without THP refuse it and nothing changes."""
    try:
        with open("/proc/self/maps") as maps:
            lines = maps.readlines()
    except OSError:
        return 0
    for line in lines:
        fields = line.split()
        if len(fields) < 2 or "w" not in fields[1] or not fields[1].endswith("p"):
            continue
        if len(fields) > 5 and fields[5] != "[heap]":
            continue  # file mappings and the stack
        start, end = (int(x, 16) for x in fields[0].split("-"))
        start = (start + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1)
        end &= ~(HUGE_PAGE - 1)
        if end > start:
            _libc.madvise(start, end - start, MADV_COLLAPSE)
    try:
        with open("/proc/self/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("AnonHugePages:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _settle() -> int:
    """Leave the preloaded, warmed-up interpreter as its children will share it, and
    return how many KiB huge pages back. The order matters: the collection frees what
    the warm-up left; freezing keeps the survivors out of every child's collections (a
    collection would write to each object's header, a copy-on-write fault per page);
    the trim then returns the heap's free pages, which the collapse would otherwise
    fill back in with huge pages."""
    gc.collect()
    gc.freeze()
    _release_free_heap()
    return _collapse_huge_pages()


def _log(message: str) -> None:
    try:
        os.write(2, f"python-executor zygote: {message}\n".encode("utf-8", "backslashreplace"))
    except OSError:
        pass


def main() -> None:
    if os.getpid() != 1:
        _log("the zygote must be PID 1 of its jail's PID namespace (see _clone)")
        sys.exit(2)
    control_fd = int(os.environ.get("PYEXEC_CONTROL_FD", "3"))
    # The scripts' environment is the cold engine's: no variable of the zygote's own.
    os.environ.pop("PYEXEC_CONTROL_FD", None)
    control = socket.socket(fileno=control_fd)
    os.set_inheritable(control_fd, False)
    with open("/proc/sys/kernel/cap_last_cap") as f:
        cap_last = int(f.read())
    try:
        preload, setup = parse_init(control.recv(MAX_MESSAGE), cap_last)
    except SetupError as exc:
        _log(f"bad init message: {exc}")
        sys.exit(2)
    failed = []
    preloaded = set()
    # Before the preload: importing matplotlib reads the font cache from there.
    runner.prepare_matplotlib()
    for name in preload:
        try:
            importlib.import_module(name)
            preloaded.add(name)
        except Exception as exc:
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
    warmed, warm_failed = _warm_up(preloaded)
    failed += warm_failed
    huge_kb = _settle()
    wakeup, wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wakeup_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # the wakeup pipe does the work
    threads = len(os.listdir("/proc/self/task"))
    control.send(ready_message(failed, warmed, huge_kb, threads))
    _serve(control, setup, wakeup)


if __name__ == "__main__":
    _job = None
    try:
        main()
    except _Become as become:
        _job, become.job = become.job, None
        become.__traceback__ = None
    if _job is not None:
        try:
            _execution(_job)
        finally:
            os._exit(125)
