"""A script that attacks the runner it runs in: rebinding what the runner uses,
huge integers. Each must get a correct answer or an error attributed to the
script (never `internal`, which only the service's own failure may be).

Every case runs in a real runner process (the script's rebinding must not leak
into the test process)."""

from textwrap import dedent

import pytest

import runner

# (name, statements run at the script's module level). main() returns a value
# that exercises the result path: a dict with a list, a float and a string.
MONKEYPATCHES = [
    ("json_dumps", "import json\njson.dumps = None"),
    ("json_encoder", "import json, json.encoder\njson.JSONEncoder = None\njson.encoder.c_make_encoder = None"),
    ("json_module_gone", "import sys\nsys.modules['json'] = None"),
    ("builtins_len", "import builtins\nbuiltins.len = None"),
    ("builtins_isinstance", "import builtins\nbuiltins.isinstance = None"),
    ("builtins_str", "import builtins\nbuiltins.str = None"),
    ("builtins_repr", "import builtins\nbuiltins.repr = None"),
    ("builtins_type", "import builtins\nbuiltins.type = None"),
    ("builtins_many", "import builtins\nfor n in ('len', 'isinstance', 'str', 'repr', 'type', 'int', 'float', 'dict', 'list', 'getattr', 'id', 'memoryview', 'enumerate', 'zip'):\n    setattr(builtins, n, None)"),
    ("builtins_deleted", "import builtins\ndel builtins.len, builtins.isinstance"),
    ("stdout_replaced", "import sys\nclass Bad:\n    def write(self, s): raise SystemExit(3)\n    def flush(self): raise SystemExit(3)\nsys.stdout = sys.stderr = sys.__stdout__ = sys.__stderr__ = Bad()"),
    ("stdout_deleted", "import sys\ndel sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__"),
    ("msgpack_functions", "import msgpack\nmsgpack.packb = msgpack.unpackb = msgpack.Packer = None"),
    ("os_write", "import os\nos.write = os._exit = os.getpid = os.set_blocking = None"),
    ("struct_pack", "import struct\nstruct.pack = struct.Struct = None"),
    ("math_isfinite", "import math\nmath.isfinite = None"),
    ("sys_modules", "import sys\nsys.modules = {}"),
    ("traceback_module", "import traceback, linecache\ntraceback.TracebackException = None\nlinecache.getline = linecache.getlines = None"),
    ("int_digits_limit", "import sys\nsys.set_int_max_str_digits(640)"),
]

VALUE = "def main():\n    return {'a': [1, 2.5, None, True], 'b': 'text', 'n': 10 ** 700}\n"
WANT = b'{"a":[1,2.5,null,true],"b":"text","n":1' + b"0" * 700 + b"}"


@pytest.mark.parametrize("name, patch", MONKEYPATCHES, ids=[m[0] for m in MONKEYPATCHES])
def test_monkeypatch_then_return(run_script, name, patch):
    out = run_script(patch + "\n" + VALUE)
    assert out.returncode == 0, out.stderr
    assert out.result_json() == WANT


@pytest.mark.parametrize("name, patch", MONKEYPATCHES, ids=[m[0] for m in MONKEYPATCHES])
def test_monkeypatch_then_raise(run_script, name, patch):
    out = run_script(patch + "\ndef main():\n    raise ValueError('nope')\n")
    assert out.returncode == 0, out.stderr
    error = out.error()
    assert (error["type"], error["message"]) == ("exception", "ValueError: nope")


@pytest.mark.parametrize("name, patch", MONKEYPATCHES, ids=[m[0] for m in MONKEYPATCHES])
def test_monkeypatch_in_main_then_exit(run_script, name, patch):
    body = "\n".join("    " + line for line in patch.splitlines())
    out = run_script(f"import sys\ndef main():\n{body}\n    sys.exit(4)\n")
    assert out.returncode == 0, out.stderr
    error = out.error()
    assert (error["type"], error["message"]) == ("exited", "script called sys.exit(4) before returning a result")


def test_big_integer_is_exact(run_script):
    out = run_script("def main(): return 10 ** 5000")
    assert out.result_json() == b"1" + b"0" * 5000


def test_big_integer_key_and_negative(run_script):
    out = run_script("def main(): return {10 ** 5000: -(10 ** 4400)}")
    assert out.result_json() == b'{"1' + b"0" * 5000 + b'":-1' + b"0" * 4400 + b"}"


def test_big_integer_over_the_cap_is_refused_before_writing(run_script):
    # 2**(2**26) has some 20 million digits: writing them would take minutes;
    # the bit length alone says it cannot fit.
    out = run_script("def main(): return 2 ** (2 ** 26)", max_result_bytes=1 << 20)
    error = out.error()
    assert error["type"] == "result_too_large"
    assert error["message"] == "result holds an integer of at least 20201782 digits, over the limit of 1048576 bytes"


def test_many_big_integers_count_against_the_cap(run_script):
    out = run_script("def main():\n    n = 10 ** 4000\n    return [n] * 1000", max_result_bytes=1 << 20)
    assert out.error()["type"] == "result_too_large"


def test_subclass_with_hostile_str_in_exception(run_script):
    script = dedent(
        """
        class Evil(str):
            def encode(self, *a, **k): raise SystemExit(9)
            def __len__(self): raise SystemExit(9)
        class Boom(Exception):
            def __str__(self): return Evil("evil text")
        def main():
            raise Boom()
        """
    )
    error = run_script(script).error()
    assert (error["type"], error["message"]) == ("exception", "Boom: evil text")


def test_exception_with_hostile_metaclass(run_script):
    script = dedent(
        """
        class Meta(type):
            @property
            def __module__(cls): raise SystemExit(9)
        class Boom(Exception, metaclass=Meta):
            pass
        def main():
            raise Boom("x")
        """
    )
    error = run_script(script).error()
    assert (error["type"], error["message"]) == ("exception", "Boom: x")


def test_runner_internals_in_the_script_process_are_private():
    # The runner's functions look builtins up in a private copy, taken at import.
    assert runner.encode_result.__builtins__ is not __builtins__
    assert runner.encode_result.__globals__["__builtins__"]["len"] is len
