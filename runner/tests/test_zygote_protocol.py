"""The zygote protocol's golden messages (runner/ZYGOTE.md), from the zygote's side.

The supervisor writes init and order (supervisor/zygote_golden_test.go checks its
encoding against runner/testdata/zygote); here the zygote's own parsers read them.
The zygote writes ready and the reports; here its own encoders must give the golden
bytes, which the Go test decodes with the supervisor's types.
"""

import os
import resource
from pathlib import Path

import msgpack
import pytest
import zygote  # noqa: E402
from conftest import RUNNER_DIR  # noqa: F401  (conftest puts the runner on sys.path)

GOLDEN = RUNNER_DIR / "testdata" / "zygote"
UPDATE = os.environ.get("PYEXEC_UPDATE_GOLDEN") == "1"

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
ALL_NAMESPACES = 0x7E020000  # user, mount, PID, net, IPC, UTS, cgroup
TMPFS_FLAGS = MS_NOSUID | MS_NODEV | MS_NOEXEC


def golden(name: str) -> bytes:
    return (GOLDEN / f"{name}.msgpack").read_bytes()


def check_produced(name: str, got: bytes) -> None:
    path = GOLDEN / f"{name}.msgpack"
    if UPDATE:
        path.write_bytes(got)
    assert got == path.read_bytes(), f"{name} differs from {path}: the protocol changed; update ZYGOTE.md, the version and the golden messages"


def test_init_is_read_as_the_supervisor_wrote_it():
    preload, setup = zygote.parse_init(golden("init"), cap_last=40)
    assert preload == ["numpy", "pandas"]
    assert setup.namespaces == ALL_NAMESPACES
    assert (setup.uid, setup.gid, setup.hostname, setup.cwd) == (65534, 65534, b"sandbox", "/tmp")
    assert setup.env == {"HOME": "/tmp", "PYEXEC_REQUEST_FD": "3", "PYEXEC_RESULT_FD": "4"}
    assert (setup.keep_caps, setup.no_new_privs) == (False, True)
    assert setup._bpf == bytes.fromhex("2000000000000000060000000000ff7f")


def test_order_is_read_as_the_supervisor_wrote_it():
    order = zygote.Order(msgpack.unpackb(golden("order"), raw=False))
    assert [(m.source, m.target, m.fstype, m.flags, m.data) for m in order.mounts] == [
        (b"proc", b"/proc", b"proc", MS_RDONLY | TMPFS_FLAGS, None),
        (b"tmpfs", b"/tmp", b"tmpfs", TMPFS_FLAGS, b"size=67108864,nr_inodes=4096,mode=1777"),
        (b"tmpfs", b"/dev/shm", b"tmpfs", TMPFS_FLAGS, b"size=67108864,nr_inodes=256,mode=1777"),
    ]
    # The resource numbers are the platform's, as Python's resource module has them.
    assert order.rlimits == [
        ("core", resource.RLIMIT_CORE, 0),
        ("cpu", resource.RLIMIT_CPU, 30),
        ("fsize", resource.RLIMIT_FSIZE, 64 << 20),
        ("nofile", resource.RLIMIT_NOFILE, 256),
        ("stack", resource.RLIMIT_STACK, 8 << 20),
    ]
    without = zygote.Order(msgpack.unpackb(golden("order_no_cgroup"), raw=False))
    assert without.rlimits[0] == ("as", resource.RLIMIT_AS, 512 << 20)
    assert ("nproc", resource.RLIMIT_NPROC, 64) in without.rlimits


def test_ready_is_written_as_the_supervisor_reads_it():
    check_produced("ready", zygote.ready_message(["pandas: ImportError: no pandas"], ["hello", "exception"], 2048, 1))


def test_reports_are_written_as_the_supervisor_reads_them():
    check_produced("report", zygote.report_message(9, 1500, 250, 30000))
    check_produced("error", zygote.error_message(zygote.SetupError("mount /tmp: Operation not permitted")))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda m: m.update(v=1),
        lambda m: m.update(mounts=None),
        lambda m: m["mounts"][0].update(flags=-1),
        lambda m: m["mounts"][0].update(target="relative"),
        lambda m: m["rlimits"][0].update(value="0"),
        lambda m: m["rlimits"].append([4, 0]),
    ],
)
def test_a_malformed_order_is_refused(mutate):
    body = msgpack.unpackb(golden("order"), raw=False)
    mutate(body)
    with pytest.raises(zygote.SetupError):
        zygote.Order(body)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda m: m.update(v=1),
        lambda m: m["child"].update(namespaces=0x20000),  # a mount namespace only
        lambda m: m["child"].update(env=["NOEQUALS"]),
        lambda m: m["child"].update(seccomp=b"\x00" * 7),
        lambda m: m["child"].update(no_new_privs=1),
        lambda m: m.pop("child"),
    ],
)
def test_a_malformed_init_is_refused(mutate):
    body = msgpack.unpackb(golden("init"), raw=False)
    mutate(body)
    with pytest.raises(zygote.SetupError):
        zygote.parse_init(msgpack.packb(body), cap_last=40)


def test_golden_directory_holds_only_known_messages():
    assert sorted(p.name for p in Path(GOLDEN).iterdir()) == sorted(
        f"{n}.msgpack" for n in ("init", "order", "order_no_cgroup", "ready", "report", "error")
    )
