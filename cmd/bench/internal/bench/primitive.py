"""The primitive the warm engine is built on, measured alone (make bench).

Run by the benchmark as root with the service's venv Python:

    python3 primitive.py rate CONCURRENCY SECONDS
    python3 primitive.py latency COUNT

It prepares a process as the zygote does (runner/zygote.py): numpy and pandas
imported, a DataFrame built once so that their lazy state is filled, the heap
collected and frozen. From it, one clone(2) into fresh user, mount, PID, network,
IPC and UTS namespaces, the flags of the zygote's clone, bracketed by the
interpreter's fork hooks as the zygote's is; the child _exits at once and the
parent reaps it. No cgroup, no jail, no request: the cost no warm execution can
go below.

rate: CONCURRENCY copies of that process (forked from it after the freeze, as
the zygotes share one image) clone and reap in a loop for SECONDS; prints
{"mode": "rate", "concurrency": c, "clones": n, "seconds": s}.
latency: one process clones and reaps COUNT times, one after the other, after a
few unmeasured ones; prints {"mode": "latency", "samples_ns": [...]}, each the
time from just before the clone to the reaped child.
"""

import ctypes
import gc
import json
import os
import signal
import sys
import time

import numpy as np
import pandas as pd

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
# runner/zygote.py clones with NAMESPACES & ~CLONE_NEWCGROUP: these.
FLAGS = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
SYS_CLONE = 56  # x86_64
WARMUP = 20

_libc = ctypes.PyDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def clone_and_reap() -> None:
    ctypes.pythonapi.PyOS_BeforeFork()
    null = ctypes.c_void_p(0)
    pid = _libc.syscall(ctypes.c_long(SYS_CLONE), ctypes.c_ulong(FLAGS | signal.SIGCHLD), null, null, null, ctypes.c_ulong(0))
    if pid == 0:
        os._exit(0)
    err = ctypes.get_errno()
    ctypes.pythonapi.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, f"clone: {os.strerror(err)}")
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise RuntimeError(f"child exited with status {status}")


def prepare() -> None:
    df = pd.DataFrame({"A": [1, 2, 3], "B": [4, 5, 6]})
    df.sum().to_dict()
    df.mean().to_dict()
    np.arange(3).sum()
    gc.collect()
    gc.freeze()


def rate(concurrency: int, seconds: float) -> dict:
    for _ in range(WARMUP):
        clone_and_reap()
    r, w = os.pipe()
    start = time.monotonic()
    deadline = start + seconds
    workers = []
    for _ in range(concurrency):
        pid = os.fork()
        if pid == 0:
            os.close(r)
            n = 0
            try:
                while time.monotonic() < deadline:
                    clone_and_reap()
                    n += 1
                os.write(w, f"{n}\n".encode())
                os._exit(0)
            except BaseException as exc:
                os.write(2, f"primitive: {exc}\n".encode())
                os._exit(1)
        workers.append(pid)
    os.close(w)
    for pid in workers:
        _, status = os.waitpid(pid, 0)
        if status != 0:
            raise RuntimeError(f"a worker failed (status {status})")
    elapsed = time.monotonic() - start
    with os.fdopen(r) as f:
        counts = [int(line) for line in f.read().split()]
    if len(counts) != concurrency:
        raise RuntimeError(f"{len(counts)} of {concurrency} workers reported")
    return {"mode": "rate", "concurrency": concurrency, "clones": sum(counts), "seconds": elapsed}


def latency(count: int) -> dict:
    for _ in range(WARMUP):
        clone_and_reap()
    samples = []
    for _ in range(count):
        t0 = time.perf_counter_ns()
        clone_and_reap()
        samples.append(time.perf_counter_ns() - t0)
    return {"mode": "latency", "samples_ns": samples}


def main() -> None:
    prepare()
    if len(sys.argv) == 4 and sys.argv[1] == "rate":
        out = rate(int(sys.argv[2]), float(sys.argv[3]))
    elif len(sys.argv) == 3 and sys.argv[1] == "latency":
        out = latency(int(sys.argv[2]))
    else:
        sys.exit("usage: primitive.py rate CONCURRENCY SECONDS | latency COUNT")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
