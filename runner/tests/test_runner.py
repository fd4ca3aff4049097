"""Process tests: runner.py as a real subprocess, request and answer over pipes.

Each test checks one outcome end to end: the frame on the result fd (type, request
id, body bytes), what reached fd 1 and 2, and the exit status.
"""

import json
import os
import signal
import struct
import time
from textwrap import dedent

import msgpack
import pytest
from conftest import BASE_ENV, RUNNER_DIR, execute_frame, popen_runner, runner


def script(text: str) -> str:
    return dedent(text).lstrip("\n")


# --- results ---------------------------------------------------------------


def test_hello_world_seed(run_script):
    out = run_script('def main(): return {"message": "Hello World", "result": 42}')
    assert out.frame() == (1, runner.MSG_RESULT, 1, {"json": b'{"message":"Hello World","result":42}'})
    assert out.returncode == 0
    assert (out.stdout, out.stderr) == (b"", b"")


def test_pandas_seed(run_script):
    out = run_script(
        script(
            """
            import pandas as pd
            import numpy as np

            def main():
                df = pd.DataFrame({"A": [1, 2, 3], "B": [4, 5, 6]})
                return {
                    "shape": df.shape,
                    "sum": df.sum().to_dict(),
                    "mean": df.mean().to_dict()
                }
            """
        )
    )
    assert out.result_json() == b'{"shape":[3,2],"sum":{"A":6,"B":15},"mean":{"A":2.0,"B":5.0}}'


def test_numpy_seed(run_script):
    out = run_script(
        script(
            """
            import numpy as np

            def main():
                arr = np.array([1, 2, 3, 4, 5])
                return {
                    "array": arr.tolist(),
                    "sum": float(np.sum(arr)),
                    "mean": float(np.mean(arr)),
                    "std": float(np.std(arr))
                }
            """
        )
    )
    assert out.result_json() == b'{"array":[1,2,3,4,5],"sum":15.0,"mean":3.0,"std":1.4142135623730951}'


def test_request_id_is_echoed(run_raw):
    out = run_raw(execute_frame("def main(): return 1", request_id=0xDEADBEEF))
    assert out.frame() == (0xDEADBEEF, runner.MSG_RESULT, 1, {"json": b"1"})


def test_default_fds_are_3_and_4(run_script):
    out = run_script("def main(): return 'ok'", default_fds=True)
    assert out.result_json() == b'"ok"'


def test_async_main(run_script):
    out = run_script(
        script(
            """
            import asyncio

            async def main():
                await asyncio.sleep(0)
                return {"async": True}
            """
        )
    )
    assert out.result_json() == b'{"async":true}'


def test_numpy_and_pandas_values_convert(run_script):
    out = run_script(
        script(
            """
            import numpy as np
            import pandas as pd

            def main():
                return {
                    "matrix": np.array([[1.5, np.nan], [np.inf, 2.0]]),
                    "int": np.int64(7),
                    "frame": pd.DataFrame({"a": [1, 2], "t": pd.to_datetime(["2024-01-02", None])}),
                    "series": pd.Series([1.0, None], index=["x", "y"]),
                }
            """
        )
    )
    assert out.result_json() == (
        b'{"matrix":[[1.5,null],[null,2.0]],"int":7,'
        b'"frame":[{"a":1,"t":"2024-01-02T00:00:00"},{"a":2,"t":null}],'
        b'"series":{"x":1.0,"y":null}}'
    )


def test_runner_does_not_import_numpy_or_pandas(run_script):
    out = run_script(
        script(
            """
            import sys

            def main():
                return sorted(m for m in sys.modules if m.split(".")[0] in ("numpy", "pandas", "asyncio"))
            """
        )
    )
    assert out.result_json() == b"[]"


def test_non_ascii_result_is_utf8(run_script):
    out = run_script('def main(): return {"é": "日本", "emoji": "\\U0001f642"}')
    assert out.result_json() == '{"é":"日本","emoji":"🙂"}'.encode()


def test_lone_surrogate_result_is_escaped_ascii(run_script):
    out = run_script('def main(): return ["é", "\\ud800"]')
    assert out.result_json() == b'["\\u00e9","\\ud800"]'


def test_large_result_over_pipe_buffer(run_script):
    out = run_script("def main(): return list(range(100000))")
    assert out.result_json() == json.dumps(list(range(100000)), separators=(",", ":")).encode()


def test_large_script(run_script):
    # Far over the 128 KiB that breaks passing a script as an argument.
    out = run_script("S = '" + "x" * 300_000 + "'\ndef main(): return len(S)\n")
    assert out.result_json() == b"300000"


# --- the script's process environment --------------------------------------


def test_name_guard_does_not_call_main_twice(run_script):
    out = run_script(
        script(
            """
            import sys

            def main():
                print("main called")
                return {"name": __name__, "argv": sys.argv, "registered": sys.modules[__name__].main is main}

            if __name__ == "__main__":
                main()
            """
        )
    )
    assert out.result_json() == b'{"name":"__script__","argv":["<script>"],"registered":true}'
    assert out.stdout == b"main called\n"


def test_script_classes_pickle(run_script):
    out = run_script(
        script(
            """
            import pickle

            class Point:
                def __init__(self, x):
                    self.x = x

            def main():
                return pickle.loads(pickle.dumps(Point(3))).x
            """
        )
    )
    assert out.result_json() == b"3"


def test_runner_dir_is_not_on_sys_path(run_script):
    out = run_script(
        script(
            f"""
            import os, sys

            def main():
                return [p for p in sys.path if os.path.realpath(p or ".") == {str(RUNNER_DIR)!r}]
            """
        )
    )
    assert out.result_json() == b"[]"


def test_runner_module_is_not_importable_by_name(run_script):
    out = run_script("import runner\ndef main(): return 1\n")
    err = out.error()
    assert (err["type"], err["message"]) == ("exception", "ModuleNotFoundError: No module named 'runner'")


def test_request_fd_closed_and_result_fd_close_on_exec(run_script):
    out = run_script(
        script(
            """
            import os

            def main():
                request_fd = int(os.environ["PYEXEC_REQUEST_FD"])
                result_fd = int(os.environ["PYEXEC_RESULT_FD"])
                try:
                    os.fstat(request_fd)
                    request = "open"
                except OSError:
                    request = "closed"
                # `[` is a shell builtin, so /proc/self is the shell os.system started.
                shell_has_result_fd = os.system(f"[ -e /proc/self/fd/{result_fd} ]") == 0
                shell_has_stdout = os.system("[ -e /proc/self/fd/1 ]") == 0
                return [request, os.get_inheritable(result_fd), shell_has_result_fd, shell_has_stdout]
            """
        )
    )
    assert out.result_json() == b'["closed",false,false,true]'


def test_stdout_and_stderr_reach_fd_1_and_2(run_script):
    out = run_script(
        script(
            """
            import os, sys

            print("print out")
            print("print err", file=sys.stderr)

            def main():
                os.write(1, b"raw out\\n")
                os.system("echo child out")
                os.system("echo child err >&2")
                print("main out")
                return None
            """
        )
    )
    assert out.result_json() == b"null"
    assert out.stdout == b"print out\nraw out\nchild out\nmain out\n"
    assert out.stderr == b"print err\nchild err\n"


def test_replaced_buffered_stdout_is_flushed_before_exit(run_script):
    out = run_script(
        script(
            """
            import sys

            def main():
                sys.stdout = open(1, "w", buffering=8192, closefd=False)
                print("buffered")
                return 1
            """
        )
    )
    assert out.result_json() == b"1"
    assert out.stdout == b"buffered\n"


def test_forked_child_returning_from_main_writes_no_frame(run_script):
    out = run_script(
        script(
            """
            import os

            def main():
                pid = os.fork()
                if pid == 0:
                    print("child returns")
                    return "child"
                os.waitpid(pid, 0)
                return "parent"
            """
        )
    )
    assert out.result_json() == b'"parent"'  # exactly one frame: decode_frame rejects trailing bytes
    assert out.stdout == b"child returns\n"


def test_atexit_handlers_of_the_script_do_not_run(run_script):
    out = run_script("import atexit\natexit.register(print, 'atexit ran')\ndef main(): return 1\n")
    assert out.result_json() == b"1"
    assert out.stdout == b""


def test_does_not_wait_for_script_threads(run_script):
    started = time.monotonic()
    out = run_script(
        script(
            """
            import threading, time

            def main():
                threading.Thread(target=time.sleep, args=(60,)).start()
                return "done"
            """
        )
    )
    assert out.result_json() == b'"done"'
    assert time.monotonic() - started < 20


def test_input_reads_dev_null(run_script):
    out = run_script("def main():\n    return input()\n")
    assert out.error() == {
        "type": "exception",
        "message": "EOFError: EOF when reading a line",
        "traceback": (
            "Traceback (most recent call last):\n"
            '  File "<script>", line 2, in main\n'
            "    return input()\n"
            "           ^^^^^^^\n"
            "EOFError: EOF when reading a line\n"
        ),
    }


# --- error outcomes --------------------------------------------------------


def test_syntax_error(run_script):
    out = run_script("def main():\n    x = 1\n    return x +\n")
    assert out.error() == {
        "type": "syntax_error",
        "message": "line 3: invalid syntax",
        "traceback": '  File "<script>", line 3\n    return x +\n              ^\nSyntaxError: invalid syntax\n',
    }


def test_null_byte_is_syntax_error(run_script):
    err = run_script("def main(): return 1\0\n").error()
    assert (err["type"], err["message"]) == ("syntax_error", "source code string cannot contain null bytes")


def test_missing_main(run_script):
    assert run_script("def helper(): return 1\n").error() == {
        "type": "missing_main",
        "message": "script does not define a callable main()",
        "traceback": "",
    }


def test_main_not_callable(run_script):
    assert run_script("main = {'not': 'callable'}\n").error() == {
        "type": "missing_main",
        "message": "script does not define a callable main(): main is of type dict",
        "traceback": "",
    }


def test_invalid_result(run_script):
    out = run_script('def main(): return {"items": [1, 2, 3, {4}]}')
    assert out.error() == {
        "type": "invalid_result",
        "message": "main() returned a value that is not JSON-serializable: $.items[3]: set",
        "traceback": "",
    }


def test_result_too_large(run_script):
    out = run_script('def main(): return "x" * 20', max_result_bytes=10)
    assert out.error() == {
        "type": "result_too_large",
        "message": "result is 22 bytes, over the limit of 10 bytes",
        "traceback": "",
    }


def test_result_exactly_at_limit(run_script):
    out = run_script('def main(): return "x" * 8', max_result_bytes=10)
    assert out.result_json() == b'"xxxxxxxx"'


def test_exception_in_main_shows_only_script_frames(run_script):
    out = run_script(
        script(
            """
            import json


            def helper(text):
                return json.loads(text)


            def main():
                return helper("{")
            """
        )
    )
    err = out.error()
    message = "json.decoder.JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
    assert err == {
        "type": "exception",
        "message": message,
        "traceback": (
            "Traceback (most recent call last):\n"
            '  File "<script>", line 9, in main\n'
            '    return helper("{")\n'
            "           ^^^^^^^^^^^\n"
            '  File "<script>", line 5, in helper\n'
            "    return json.loads(text)\n"
            "           ^^^^^^^^^^^^^^^^\n" + message + "\n"
        ),
    }
    assert "runner.py" not in err["traceback"]
    assert "decoder.py" not in err["traceback"]


def test_exception_at_import(run_script):
    out = run_script("x = 1\ny = x / 0\n\ndef main():\n    return y\n")
    assert out.error() == {
        "type": "exception",
        "message": "ZeroDivisionError: division by zero",
        "traceback": (
            "Traceback (most recent call last):\n"
            '  File "<script>", line 2, in <module>\n'
            "    y = x / 0\n"
            "        ~~^~~\n"
            "ZeroDivisionError: division by zero\n"
        ),
    }


def test_keyboard_interrupt_is_exception(run_script):
    err = run_script("def main():\n    raise KeyboardInterrupt\n").error()
    assert (err["type"], err["message"]) == ("exception", "KeyboardInterrupt")
    assert err["traceback"].endswith(
        '  File "<script>", line 2, in main\n    raise KeyboardInterrupt\nKeyboardInterrupt\n'
    )


def test_sys_exit_at_import(run_script):
    out = run_script("import sys\nsys.exit(3)\ndef main(): return 1\n")
    assert out.error() == {
        "type": "exited",
        "message": "script called sys.exit(3) before returning a result",
        "traceback": 'Traceback (most recent call last):\n  File "<script>", line 2, in <module>\n    sys.exit(3)\nSystemExit: 3\n',
    }


def test_sys_exit_in_main(run_script):
    err = run_script("import sys\ndef main():\n    sys.exit('bye')\n").error()
    assert (err["type"], err["message"]) == (
        "exited",
        "script called sys.exit('bye') before returning a result",
    )


def test_exit_builtin_in_main(run_script):
    err = run_script("def main():\n    exit()\n").error()
    assert (err["type"], err["message"]) == ("exited", "script called sys.exit() before returning a result")


def test_os_exit_writes_no_frame(run_script):
    out = run_script("import os\nprint('before')\nos._exit(7)\n")
    assert (out.returncode, out.answer, out.stdout) == (7, b"", b"before\n")


def test_os_exit_zero_in_main_writes_no_frame(run_script):
    out = run_script("import os\ndef main():\n    os._exit(0)\n")
    assert (out.returncode, out.answer) == (0, b"")


def test_signal_writes_no_frame(run_script):
    out = run_script("import os, signal\ndef main():\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    assert (out.returncode, out.answer) == (-signal.SIGKILL, b"")


# --- bad requests: no answer, a message on stderr, exit status 2 ------------


def raw_frame(body: object, msg_type: int = runner.MSG_EXECUTE, version: int = 1) -> bytes:
    payload = msgpack.packb(body, use_bin_type=True)
    return struct.pack(">IIBB", len(payload), 1, msg_type, version) + payload


BAD_REQUESTS = [
    ("empty", b"", "end of input after 0 of the 10 bytes of the frame header"),
    ("short_header", b"\x00\x00\x00", "end of input after 3 of the 10 bytes of the frame header"),
    ("short_body", raw_frame({"script": "x"})[:-1], "end of input after 9 of the 10 bytes of the frame body"),
    (
        "oversize",
        struct.pack(">IIBB", 64 * 1024 * 1024 + 1, 1, 2, 1),
        "frame body length 67108865 is over the maximum of 67108864",
    ),
    ("wrong_type", raw_frame({}, msg_type=0x03), "request has message type 0x03, want 0x02 (execute)"),
    ("wrong_version", raw_frame({}, version=2), "request has protocol version 2, want 1"),
    ("not_a_map", raw_frame([1, 2]), "frame body is a msgpack list, not a map"),
    (
        "bad_msgpack",
        struct.pack(">IIBB", 1, 1, 2, 1) + b"\xc1",
        "frame body is not valid msgpack: FormatError",
    ),
    (
        "script_not_str",
        raw_frame({"script": b"def main(): pass"}),
        "request field script is a bytes, want str",
    ),
    (
        "negative_limit",
        raw_frame({"script": "", "max_result_bytes": -1}),
        "request field max_result_bytes is -1, want an int >= 0",
    ),
    (
        "bool_limit",
        raw_frame({"script": "", "max_result_bytes": True}),
        "request field max_result_bytes is True, want an int >= 0",
    ),
]


@pytest.mark.parametrize(
    "request_bytes, reason", [case[1:] for case in BAD_REQUESTS], ids=[case[0] for case in BAD_REQUESTS]
)
def test_bad_request(run_raw, request_bytes, reason):
    out = run_raw(request_bytes)
    assert out.returncode == runner.EXIT_BAD_REQUEST
    assert out.answer == b""
    assert out.stdout == b""
    assert out.stderr == f"python-executor runner: bad request: {reason}\n".encode()


def test_missing_keys_take_zero_values(run_raw):
    # An empty script is valid Python that defines no main.
    out = run_raw(raw_frame({}))
    assert out.error()["type"] == "missing_main"


def test_unknown_request_keys_are_ignored(run_raw):
    out = run_raw(raw_frame({"script": "def main(): return 2", "max_result_bytes": 0, "future_field": [1]}))
    assert out.result_json() == b"2"


def test_bad_fd_variable(run_script):
    out = run_script("def main(): return 1", extra_env={"PYEXEC_REQUEST_FD": "three"})
    assert out.returncode == runner.EXIT_BAD_REQUEST
    assert out.answer == b""
    assert (
        out.stderr == b"python-executor runner: bad request: PYEXEC_REQUEST_FD='three' is not an fd number\n"
    )


def test_result_fd_not_open(run_script):
    out = run_script("def main(): return 1", extra_env={"PYEXEC_RESULT_FD": "200"})
    assert out.returncode == runner.EXIT_BAD_REQUEST
    assert out.answer == b""
    assert (
        out.stderr
        == b"python-executor runner: bad request: result fd 200 is not usable: Bad file descriptor\n"
    )


def test_request_fd_not_open(run_script):
    out = run_script("def main(): return 1", extra_env={"PYEXEC_REQUEST_FD": "201"})
    assert out.returncode == runner.EXIT_BAD_REQUEST
    assert out.answer == b""
    assert (
        out.stderr
        == b"python-executor runner: bad request: request fd 201 is not usable: Bad file descriptor\n"
    )


@pytest.mark.parametrize("request_fd, result_fd", [("1", "200"), ("7", "7")])
def test_fd_numbers_are_checked(run_script, request_fd, result_fd):
    out = run_script(
        "def main(): return 1", extra_env={"PYEXEC_REQUEST_FD": request_fd, "PYEXEC_RESULT_FD": result_fd}
    )
    assert out.returncode == runner.EXIT_BAD_REQUEST
    assert (
        out.stderr
        == (
            f"python-executor runner: bad request: request fd {request_fd} and result fd {result_fd} "
            "must be distinct and above 2\n"
        ).encode()
    )


def test_result_fd_closed_by_script(run_script):
    out = run_script(
        "import os\ndef main():\n    os.close(int(os.environ['PYEXEC_RESULT_FD']))\n    return 1\n"
    )
    assert out.returncode == runner.EXIT_WRITE_FAILED
    assert out.answer == b""
    assert (
        out.stderr
        == b"python-executor runner: cannot write the answer: OSError: [Errno 9] Bad file descriptor\n"
    )


def _zombie_children(pid: int) -> int:
    """How many of pid's children are zombies (state Z)."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        children = [int(c) for c in f.read().split()]
    zombies = 0
    for child in children:
        try:
            with open(f"/proc/{child}/stat") as f:
                zombies += f.read().rpartition(")")[2].split()[0] == "Z"
        except FileNotFoundError:
            pass
    return zombies


@pytest.mark.parametrize(
    ("raise_line", "waits"),
    [
        ("raise BlockingIOError(11, 'Resource temporarily unavailable')", True),
        ("raise RuntimeError(\"can't start new thread\")", True),
        ("raise ValueError('not a failed fork')", False),
    ],
)
def test_failed_fork_answer_waits_with_its_zombies(tmp_path, raise_line, waits):
    # After answering that a fork or thread start failed, the runner stays alive
    # (its output closed) with the children it never reaped, so that the
    # supervisor, without a pids cgroup, can count how close to the process limit
    # the execution was; any other answer exits at once.
    text = script(
        f"""
        import os, time

        def main():
            for _ in range(5):
                if os.fork() == 0:
                    os._exit(0)
            time.sleep(0.3)
            {raise_line}
        """
    )
    request_read, request_write = os.pipe()
    result_read, result_write = os.pipe()
    env = dict(BASE_ENV, HOME=str(tmp_path), PYEXEC_REQUEST_FD=str(request_read), PYEXEC_RESULT_FD=str(result_write))
    proc = popen_runner(tmp_path, env, pass_fds=(request_read, result_write))
    os.close(request_read)
    os.close(result_write)
    try:
        os.write(request_write, execute_frame(text))
        os.close(request_write)
        answer = b""
        while len(answer) < runner.HEADER_SIZE or len(answer) < runner.HEADER_SIZE + struct.unpack_from(">I", answer)[0]:
            chunk = os.read(result_read, 65536)
            assert chunk, f"no complete answer: {answer!r} {proc.stderr.read()!r}"
            answer += chunk
        _, msg_type, _, body = runner.decode_frame(answer)
        assert msg_type == runner.MSG_ERROR
        assert body["type"] == "exception"
        if waits:
            # The output is closed, the answer complete, and the process is still
            # there, its five exited children still zombies.
            assert proc.stdout.read() == b""
            assert proc.poll() is None
            assert _zombie_children(proc.pid) == 5
            proc.kill()
            assert proc.wait(timeout=10) == -signal.SIGKILL
        else:
            assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()
        os.close(result_read)
        proc.stdout.close()
        proc.stderr.close()


def test_failed_fork_answer_wait_is_bounded(run_script):
    # Where nobody ends it, the runner still exits on its own.
    started = time.monotonic()
    out = run_script("def main():\n    raise BlockingIOError(11, 'Resource temporarily unavailable')\n")
    assert out.error()["message"].startswith("BlockingIOError")
    assert runner.COUNT_WAIT_SECONDS <= time.monotonic() - started < runner.COUNT_WAIT_SECONDS + 20
