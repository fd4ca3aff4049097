"""run_request in-process: the entry point the warm engine will call.

Outcomes that the process tests cover end to end are checked here for the details
that are easier to reach in-process (chained exceptions, internal failures, script
code that raises while the result is encoded).
"""

import sys

import pytest
from conftest import runner

RESULT, ERROR = runner.MSG_RESULT, runner.MSG_ERROR


def test_result(in_process):
    assert in_process("def main(): return {'a': (1, 2)}") == (RESULT, {"json": b'{"a":[1,2]}'})


def test_script_module_is_registered(in_process):
    assert in_process(
        "import sys\ndef main(): return sys.modules[__name__] is sys.modules['__script__']"
    ) == (
        RESULT,
        {"json": b"true"},
    )
    assert sys.modules["__script__"].__name__ == "__script__"
    assert sys.argv == ["<script>"]


def test_script_lines_are_in_linecache(in_process):
    # inspect.getsource works because the source is registered with linecache.
    script = "import inspect\n\ndef main():\n    return inspect.getsource(main)\n"
    assert in_process(script) == (RESULT, {"json": b'"def main():\\n    return inspect.getsource(main)\\n"'})


def test_annotations_are_evaluated(in_process):
    # Compiled with dont_inherit=True: no __future__ flag of the runner applies.
    assert in_process("def main() -> 'x': return main.__annotations__['return']") == (
        RESULT,
        {"json": b'"x"'},
    )
    assert in_process("def f() -> int: pass\ndef main(): return f.__annotations__['return'] is int") == (
        RESULT,
        {"json": b"true"},
    )


def test_main_is_a_class(in_process):
    # Callable, so it is called; the instance it returns is not JSON.
    assert in_process("class main:\n    pass\n") == (
        ERROR,
        {
            "type": "invalid_result",
            "message": "main() returned a value that is not JSON-serializable: $: main",
            "traceback": "",
        },
    )


def test_main_with_required_arguments(in_process):
    msg_type, body = in_process("def main(x):\n    return x\n")
    assert (msg_type, body["type"]) == (ERROR, "exception")
    assert body["message"] == "TypeError: main() missing 1 required positional argument: 'x'"
    assert body["traceback"] == "TypeError: main() missing 1 required positional argument: 'x'\n"


def test_chained_exceptions_are_kept_and_filtered(in_process):
    script = (
        "import json\n"
        "class ConfigError(Exception):\n"
        "    pass\n"
        "def main():\n"
        "    try:\n"
        "        json.loads('{')\n"
        "    except ValueError as exc:\n"
        "        raise ConfigError('bad config') from exc\n"
    )
    msg_type, body = in_process(script)
    assert (msg_type, body["type"], body["message"]) == (ERROR, "exception", "ConfigError: bad config")
    assert body["traceback"] == (
        "Traceback (most recent call last):\n"
        '  File "<script>", line 6, in main\n'
        "    json.loads('{')\n"
        "json.decoder.JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)\n"
        "\n"
        "The above exception was the direct cause of the following exception:\n"
        "\n"
        "Traceback (most recent call last):\n"
        '  File "<script>", line 8, in main\n'
        "    raise ConfigError('bad config') from exc\n"
        "__script__.ConfigError: bad config\n"
    )


def test_exception_group(in_process):
    script = "def main():\n    raise ExceptionGroup('many', [ValueError('a'), KeyError('b')])\n"
    msg_type, body = in_process(script)
    assert (body["type"], body["message"]) == ("exception", "ExceptionGroup: many (2 sub-exceptions)")
    assert "ValueError: a" in body["traceback"] and "KeyError: 'b'" in body["traceback"]


def test_exception_with_failing_str(in_process):
    script = "class Odd(Exception):\n    def __str__(self):\n        raise RuntimeError\ndef main():\n    raise Odd()\n"
    msg_type, body = in_process(script)
    assert (body["type"], body["message"]) == ("exception", "Odd: <Odd object; str() failed>")


def test_exception_from_library_keeps_only_script_frames(in_process):
    script = "import numpy as np\ndef main():\n    return np.array([1, 2]).reshape(3)\n"
    msg_type, body = in_process(script)
    assert body == {
        "type": "exception",
        "message": "ValueError: cannot reshape array of size 2 into shape (3,)",
        "traceback": (
            "Traceback (most recent call last):\n"
            '  File "<script>", line 3, in main\n'
            "    return np.array([1, 2]).reshape(3)\n"
            "           ^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
            "ValueError: cannot reshape array of size 2 into shape (3,)\n"
        ),
    }


def test_recursion_error_traceback_is_compact(in_process):
    msg_type, body = in_process("def main():\n    return main()\n")
    assert (body["type"], body["message"]) == (
        "exception",
        "RecursionError: maximum recursion depth exceeded",
    )
    assert "[Previous line repeated" in body["traceback"]
    assert len(body["traceback"]) < 2000


def test_syntax_error_indentation(in_process):
    assert in_process("def main():\nreturn 1\n") == (
        ERROR,
        {
            "type": "syntax_error",
            "message": "line 2: expected an indented block after function definition on line 1",
            "traceback": (
                '  File "<script>", line 2\n'
                "    return 1\n"
                "    ^^^^^^\n"
                "IndentationError: expected an indented block after function definition on line 1\n"
            ),
        },
    )


def test_syntax_error_too_deeply_nested(in_process):
    msg_type, body = in_process("x = " + "+".join(["1"] * 200_000) + "\n")
    assert body == {
        "type": "syntax_error",
        "message": "script is too deeply nested or too large to compile (RecursionError: maximum recursion depth exceeded during compilation)",
        "traceback": "RecursionError: maximum recursion depth exceeded during compilation\n",
    }


def test_sys_exit_variants(in_process):
    cases = {
        "raise SystemExit": "sys.exit()",
        "raise SystemExit(0)": "sys.exit(0)",
        "import sys; sys.exit([1])": "sys.exit([1])",
    }
    for statement, call in cases.items():
        msg_type, body = in_process(f"def main():\n    {statement}\n")
        assert (body["type"], body["message"]) == (
            "exited",
            f"script called {call} before returning a result",
        )


def test_async_main_exception(in_process):
    msg_type, body = in_process("async def main():\n    raise ValueError('in coroutine')\n")
    assert (body["type"], body["message"]) == ("exception", "ValueError: in coroutine")
    assert body["traceback"] == (
        "Traceback (most recent call last):\n"
        '  File "<script>", line 2, in main\n'
        "    raise ValueError('in coroutine')\n"
        "ValueError: in coroutine\n"
    )


def test_script_code_raising_during_encoding_is_the_scripts_exception(in_process):
    script = (
        "import datetime\n"
        "class Zone(datetime.tzinfo):\n"
        "    def utcoffset(self, dt):\n"
        "        raise LookupError('no such zone')\n"
        "def main():\n"
        "    return datetime.datetime(2024, 1, 1, tzinfo=Zone())\n"
    )
    msg_type, body = in_process(script)
    assert (body["type"], body["message"]) == ("exception", "LookupError: no such zone")
    assert body["traceback"] == (
        "Traceback (most recent call last):\n"
        '  File "<script>", line 4, in utcoffset\n'
        "    raise LookupError('no such zone')\n"
        "LookupError: no such zone\n"
    )


def test_script_exit_during_encoding(in_process):
    script = (
        "import sys\n"
        "class Items(list):\n"
        "    def __iter__(self):\n"
        "        sys.exit(4)\n"
        "def main():\n"
        "    return Items([1])\n"
    )
    msg_type, body = in_process(script)
    assert (body["type"], body["message"]) == (
        "exited",
        "script called sys.exit(4) before returning a result",
    )


def test_runner_bug_while_encoding_is_internal(in_process, monkeypatch):
    def broken(value, max_values=0):
        raise RuntimeError("bug")

    monkeypatch.setattr(runner, "to_json_value", broken)
    assert in_process("def main(): return 1") == (
        ERROR,
        {"type": "internal", "message": "runner failed: RuntimeError: bug", "traceback": ""},
    )


def test_run_request_never_raises(in_process, monkeypatch):
    def broken(script):
        raise KeyError("compile")

    monkeypatch.setattr(runner, "_compile_script", broken)
    assert in_process("def main(): return 1") == (
        ERROR,
        {"type": "internal", "message": "runner failed: KeyError: 'compile'", "traceback": ""},
    )


@pytest.mark.parametrize(
    "exc, name",
    [
        (ValueError("x"), "ValueError: x"),
        (KeyboardInterrupt(), "KeyboardInterrupt"),
        (
            __import__("json").JSONDecodeError("m", "d", 0),
            "json.decoder.JSONDecodeError: m: line 1 column 1 (char 0)",
        ),
    ],
)
def test_exception_message(exc, name):
    assert runner.exception_message(exc) == name
