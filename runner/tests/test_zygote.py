"""The zygote's preparation before it forks: the warm-up and the huge-page collapse.

The zygote's fork path (namespaces, rlimits, seccomp) runs only inside a jail and is
covered by the supervisor's warm-engine integration tests; what is checked here is
what the zygote does to its own state, in-process.
"""

import linecache
import os
import subprocess
import sys

import pytest
from conftest import RUNNER_DIR, runner  # noqa: F401  (conftest puts the runner on sys.path)

# isort: split
import zygote  # noqa: E402


@pytest.fixture
def clean_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["zygote.py"])


def test_warm_up_runs_every_workload_of_the_preloaded_modules(clean_argv):
    import numpy  # noqa: F401
    import pandas  # noqa: F401

    done, failed = zygote._warm_up({"numpy", "pandas"})
    assert failed == []
    assert done == ["hello", "exception", "numpy", "pandas"]


def test_warm_up_skips_the_workloads_of_modules_not_preloaded(clean_argv):
    done, failed = zygote._warm_up({"numpy"})
    assert (done, failed) == (["hello", "exception", "numpy"], [])
    done, failed = zygote._warm_up(set())
    assert (done, failed) == (["hello", "exception"], [])


def test_warm_up_leaves_no_trace_for_the_executions(clean_argv):
    sys.modules.pop(runner.SCRIPT_MODULE, None)
    linecache.cache.pop(runner.SCRIPT_FILENAME, None)
    zygote._warm_up({"numpy", "pandas"})
    # An execution must start as in the cold engine: no script module, no script
    # source in linecache, the zygote's argv.
    assert runner.SCRIPT_MODULE not in sys.modules
    assert runner.SCRIPT_FILENAME not in linecache.cache
    assert sys.argv == ["zygote.py"]


def test_prefault_leaves_no_trace_and_prints_nothing(clean_argv, capfd):
    sys.modules.pop(runner.SCRIPT_MODULE, None)
    linecache.cache.pop(runner.SCRIPT_FILENAME, None)
    zygote._prefault()
    assert runner.SCRIPT_MODULE not in sys.modules
    assert runner.SCRIPT_FILENAME not in linecache.cache
    assert sys.argv == ["zygote.py"]
    assert capfd.readouterr() == ("", "")


def _faults_of_a_hello_in_a_child(prefault: bool) -> int:
    """Minor faults of the hello example's run in a fresh fork of this process, after
    _prefault or not."""
    import resource

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            if prefault:
                zygote._prefault()
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            runner.run_request(zygote.WARMUP[0][2], zygote.WARMUP_RESULT_BYTES, images=zygote.WARMUP_IMAGES)
            os.write(write, str(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before).encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        return int(os.read(read, 64))
    finally:
        os.close(read)
        os.waitpid(pid, 0)


def test_prefault_takes_the_copy_on_write_faults_off_the_run(clean_argv):
    # As in a zygote: warmed up and frozen, then forked.
    import gc

    zygote._warm_up(set())
    gc.freeze()
    try:
        cold = min(_faults_of_a_hello_in_a_child(False) for _ in range(3))
        warm = max(_faults_of_a_hello_in_a_child(True) for _ in range(3))
    finally:
        gc.unfreeze()
    assert cold >= 20, f"a child's first hello took only {cold} faults: nothing to measure"
    assert warm * 4 <= cold, f"after _prefault a hello took {warm} faults, without it {cold}"


def test_warm_up_reports_a_workload_that_fails(clean_argv, monkeypatch):
    monkeypatch.setattr(
        zygote,
        "WARMUP",
        (
            ("", "hello", "def main():\n    return 1\n", ""),
            ("", "broken", "def main():\n    raise RuntimeError('no')\n", ""),
            ("", "exception", "def main():\n    return 'did not raise'\n", runner.ERR_EXCEPTION),
        ),
    )
    done, failed = zygote._warm_up(set())
    assert done == ["hello"]
    assert len(failed) == 2
    assert failed[0].startswith("warm-up broken: exception") and "no" in failed[0]
    assert failed[1].startswith("warm-up exception")


# Run in a process of its own: the measure is that process's resident anonymous
# memory, which nothing else in it may move.
_FREE_HEAP_PROBE = """
import ctypes, sys
sys.path.insert(0, sys.argv[1])
import zygote

def anon_kb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:"))

libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
# 32 MiB in blocks far below malloc's mmap threshold: all of it on the heap.
blocks = [libc.malloc(16384) for _ in range(2048)]
for block in blocks:
    ctypes.memset(block, 1, 16384)
for block in blocks[:-1]:
    libc.free(block)  # the last one keeps the heap's top in use: no plain trim of the top
before = anon_kb()
zygote._release_free_heap()
print(before - anon_kb())
"""


def test_release_free_heap_returns_the_heap_s_free_pages():
    out = subprocess.run(
        [sys.executable, "-c", _FREE_HEAP_PROBE, str(RUNNER_DIR)], capture_output=True, text=True, timeout=60, check=True
    )
    released_kb = int(out.stdout)
    # Of the 32 MiB freed inside the heap, malloc kept all resident; nearly all goes back.
    assert released_kb >= 24 * 1024, f"only {released_kb} KiB released"


def test_settle_frees_freezes_trims_then_collapses(monkeypatch):
    calls = []
    monkeypatch.setattr(zygote.gc, "collect", lambda: calls.append("collect"))
    monkeypatch.setattr(zygote.gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(zygote, "_release_free_heap", lambda: calls.append("trim"))
    monkeypatch.setattr(zygote, "_collapse_huge_pages", lambda: calls.append("collapse") or 4096)
    assert zygote._settle() == 4096
    assert calls == ["collect", "freeze", "trim", "collapse"]


def test_main_settles_the_zygote_before_it_reports_ready():
    # main() cannot run here (it must be PID 1 of a jail); its source must call
    # _settle() once, after the warm-up and before the ready message.
    import inspect

    source = inspect.getsource(zygote.main)
    assert source.count("_settle()") == 1
    assert source.index("_warm_up(") < source.index("_settle()") < source.index("ready_message(")


def _thp_mode() -> str:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            text = f.read()
    except OSError:
        return "never"
    return text[text.index("[") + 1 : text.index("]")]


def test_collapse_backs_anonymous_memory_with_huge_pages():
    # 8 MiB of touched anonymous memory holds at least three aligned 2 MiB ranges.
    block = bytearray(os.urandom(1024)) * (8 * 1024)
    huge_kb = zygote._collapse_huge_pages()
    assert huge_kb >= 0
    release = tuple(int(x) for x in os.uname().release.split(".")[:2] if x.isdigit())
    if _thp_mode() != "never" and release >= (6, 1):
        # MADV_COLLAPSE (Linux 6.1) works whatever the THP mode, except "never".
        assert huge_kb >= 2048, "no huge page after MADV_COLLAPSE"
    else:
        assert huge_kb == 0
    assert block[:1024] == block[-1024:]  # the memory is intact
