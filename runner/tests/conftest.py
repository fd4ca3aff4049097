"""Shared helpers for the runner tests.

`runner` is imported from the directory above (runner/runner.py). Process tests
spawn that same file as a real subprocess, the way the supervisor does (minus the
jail): the request and result travel on two os.pipe() pairs, stdin is /dev/null,
stdout and stderr are pipes.
"""

import fcntl
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

RUNNER_DIR = Path(__file__).resolve().parent.parent
RUNNER_PATH = RUNNER_DIR / "runner.py"
REPO_ROOT = RUNNER_DIR.parent

sys.path.insert(0, str(RUNNER_DIR))

import runner  # noqa: E402  (needs the path above)

# The environment the supervisor gives the jailed runner, nothing inherited.
BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "LANG": "C.UTF-8",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


@dataclass
class Outcome:
    """What one runner process did."""

    returncode: int
    stdout: bytes
    stderr: bytes
    answer: bytes  # every byte written to the result fd
    request_fd: int
    result_fd: int

    def frame(self) -> tuple[int, int, int, dict]:
        return runner.decode_frame(self.answer)

    def body(self) -> dict:
        """The body of the one answer frame, after checking the frame's envelope."""
        request_id, msg_type, version, body = self.frame()
        assert (request_id, version) == (1, 1)
        assert self.returncode == 0, self.stderr
        return body

    def result_json(self) -> bytes:
        request_id, msg_type, version, body = self.frame()
        assert msg_type == runner.MSG_RESULT, body
        assert self.returncode == 0, self.stderr
        assert list(body) == ["json"]
        return body["json"]

    def error(self) -> dict:
        request_id, msg_type, version, body = self.frame()
        assert msg_type == runner.MSG_ERROR, body
        assert self.returncode == 0, self.stderr
        assert list(body) == ["type", "message", "traceback"]
        return body


def execute_frame(script: str, max_result_bytes: int = 0, request_id: int = 1) -> bytes:
    return runner.encode_frame(
        request_id, runner.MSG_EXECUTE, {"script": script, "max_result_bytes": max_result_bytes}
    )


def popen_runner(cwd: Path, env: dict, **popen_fds) -> subprocess.Popen:
    """runner.py started as the supervisor starts it, minus the jail: stdin is
    /dev/null, stdout and stderr are pipes; the fds to pass are the caller's."""
    return subprocess.Popen(
        [sys.executable, str(RUNNER_PATH)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=env,
        **popen_fds,
    )


def spawn_runner(
    request: bytes,
    cwd: Path,
    *,
    default_fds: bool = False,
    extra_env: dict | None = None,
    timeout: float = 60.0,
) -> Outcome:
    """Run runner.py once: write `request` to its request fd, collect everything.

    With default_fds the pipes are placed on fds 3 and 4 in the child and the
    PYEXEC_*_FD variables are left unset; otherwise they keep the numbers
    os.pipe() gave them (pass_fds) and the variables name them.
    """
    request_read, request_write = os.pipe()
    result_read, result_write = os.pipe()
    env = dict(BASE_ENV, HOME=str(cwd))
    close_after_spawn = [request_read, result_write]
    if default_fds:
        child_request_fd, child_result_fd = 3, 4
        # Copies above 9 first, so that placing one end on 3 or 4 in the child
        # cannot clobber the other end (os.pipe() may itself have returned 3 or 4).
        high_request = fcntl.fcntl(request_read, fcntl.F_DUPFD_CLOEXEC, 10)
        high_result = fcntl.fcntl(result_write, fcntl.F_DUPFD_CLOEXEC, 10)
        close_after_spawn += [high_request, high_result]

        def place_fds() -> None:  # in the child, before exec; dup2 clears close-on-exec
            os.dup2(high_request, 3)
            os.dup2(high_result, 4)

        popen_fds = dict(close_fds=False, preexec_fn=place_fds)
    else:
        child_request_fd, child_result_fd = request_read, result_write
        env["PYEXEC_REQUEST_FD"] = str(request_read)
        env["PYEXEC_RESULT_FD"] = str(result_write)
        popen_fds = dict(pass_fds=(request_read, result_write))
    env.update(extra_env or {})

    proc = popen_runner(cwd, env, **popen_fds)
    for fd in close_after_spawn:
        os.close(fd)

    # The answer is read on a thread so that a large answer cannot deadlock
    # against stdout/stderr being collected below.
    answer_chunks: list[bytes] = []

    def read_answer() -> None:
        while True:
            chunk = os.read(result_read, 65536)
            if not chunk:
                return
            answer_chunks.append(chunk)

    reader = threading.Thread(target=read_answer, daemon=True)
    reader.start()
    try:
        view = memoryview(request)
        while view:
            view = view[os.write(request_write, view) :]
    except BrokenPipeError:
        pass  # the runner gave up on the request early; its exit status tells why
    finally:
        os.close(request_write)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    reader.join(timeout)
    os.close(result_read)
    return Outcome(
        proc.returncode, stdout, stderr, b"".join(answer_chunks), child_request_fd, child_result_fd
    )


@pytest.fixture
def run_script(tmp_path: Path) -> Callable[..., Outcome]:
    """run_script(script, max_result_bytes=0, **spawn options) -> Outcome."""

    def run(script: str, max_result_bytes: int = 0, **options) -> Outcome:
        return spawn_runner(execute_frame(script, max_result_bytes), tmp_path, **options)

    return run


@pytest.fixture
def run_raw(tmp_path: Path) -> Callable[..., Outcome]:
    """run_raw(request_bytes, **spawn options) -> Outcome."""

    def run(request: bytes, **options) -> Outcome:
        return spawn_runner(request, tmp_path, **options)

    return run


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., tuple[int, dict]]]:
    """run_request in this process, with the process state it touches restored."""
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.delitem(sys.modules, runner.SCRIPT_MODULE, raising=False)

    def run(script: str, max_result_bytes: int = 0) -> tuple[int, dict]:
        return runner.run_request(script, max_result_bytes)

    yield run
    sys.modules.pop(runner.SCRIPT_MODULE, None)
