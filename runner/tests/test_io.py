"""Args, input files and output collection (issue 12 items 1-3), in the runner alone.

The end-to-end and adversarial cases through both engines are in gateway/e2e/io_test.go;
these pin the runner's own rules, including those the jail makes hard to reach (a
directory that cannot be read, a collection deadline).
"""

import os
import socket
import time
from pathlib import Path

import pytest
from conftest import spawn_runner

import runner


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(runner._sys_modules, runner.SCRIPT_MODULE, raising=False)
    return tmp_path


def run(script: str, args: bytes | None = None, files=(), max_out: int = 0, max_out_bytes: int = 0):
    return runner.run_request(script, 1 << 20, runner.IORequest(args, files, max_out, max_out_bytes))


@pytest.mark.parametrize(
    "script, args, want",
    [
        ("def main(a, b=2): return a + b", b'{"a": 1}', b"3"),
        ("def main(*, k=1, **kw): return [k, sorted(kw)]", b'{"x": 1, "k": 5}', b'[5,["x"]]'),
        ("def main(a=0, /, **kw): return [a, kw]", b'{"a": 1}', b'[0,{"a":1}]'),  # a goes to **kw
        ("class C:\n    def m(self, x): return x\nmain = C().m", b'{"x": 7}', b"7"),
        ("async def main(x): return x", b'{"x": [1, {"y": null}]}', b'[1,{"y":null}]'),
    ],
)
def test_args_bound(workdir, script, args, want):
    assert run(script, args) == (runner.MSG_RESULT, {"json": want})


@pytest.mark.parametrize(
    "script, args, message",
    [
        ("def main(a): return a", b'{"b": 1}', 'main() has no parameter "b"'),
        ("def main(a, b): return a", b"{}", 'main() is missing required arguments "a", "b"'),
        ("def main(*, k): return k", b"{}", 'main() is missing required argument "k"'),
        ("def main(a, /): return a", b'{"a": 1}', 'main() takes "a" as a positional-only parameter; args cannot fill it'),
        ("def main(a, /, b=1): return a", b'{"b": 1}', 'main() has a required positional-only parameter "a" that args cannot fill'),
        ("class C:\n    def m(self): return 1\nmain = C().m", b'{"self": 1}', 'main() has no parameter "self"'),
        # The script cannot talk the check round: __signature__ and __wrapped__ are not read.
        (
            "import inspect\ndef main(): return 1\nmain.__signature__ = inspect.signature(lambda x: 0)",
            b'{"x": 1}',
            'main() has no parameter "x"',
        ),
        ("def main(): return 1", b"[1]", "args must be a JSON object, not list"),
        ("def main(): return 1", b"{", "args are not valid JSON: "),
        ("def main(): return 1", b'{"a": ' + b"[" * 100000 + b"]" * 100000 + b"}", "args are nested too deeply"),
        ("def main(**kw): return 1", b'{"a": ' + b"9" * 5000 + b"}", "args are not valid JSON: "),
        ("def main(**kw): return 1", b'{"' + b"k" * 500 + b'": 1}', ""),
    ],
)
def test_args_refused(workdir, script, args, message):
    msg_type, body = run(script, args)
    if message == "":  # accepted: long names are fine with **kw
        assert msg_type == runner.MSG_RESULT
        return
    assert msg_type == runner.MSG_ERROR and body["type"] == "invalid_args", body
    assert body["message"].startswith(message), body["message"]
    assert len(body["message"]) < 300


def test_args_decoded_before_the_script_runs(workdir):
    # Bad args: the script's import-time code never runs.
    msg_type, body = run("open('ran', 'w').close()\ndef main(): return 1", b"[]")
    assert body["type"] == "invalid_args" and not (workdir / "ran").exists()


def test_a_type_error_inside_main_is_the_scripts(workdir):
    msg_type, body = run("def main(a): raise TypeError('mine')", b'{"a": 1}')
    assert body["type"] == "exception" and body["message"] == "TypeError: mine"


def test_files_written_before_import(workdir):
    script = "HEAD = open('in/data.csv').read()\ndef main(): return [HEAD, list(open('b', 'rb').read())]"
    assert run(script, files=[("in/data.csv", b"a,b\n"), ("b", b"\x00\xff")]) == (
        runner.MSG_RESULT,
        {"json": b'["a,b\\n",[0,255]]'},
    )


@pytest.mark.parametrize(
    "name",
    ["", "../x", "a/../../x", "/etc/passwd", "a//b", "a/./b", "a\\b", "a\nb", "x" * 256, "a/" * 8 + "b", "\udcff"],
)
def test_bad_file_names_refused(workdir, name):
    msg_type, body = run("def main(): return 1", files=[(name, b"x")])
    assert body["type"] == "invalid_request", body
    assert os.listdir(workdir) == []


def test_duplicate_names_refused(workdir):
    msg_type, body = run("def main(): return 1", files=[("a", b"1"), ("a", b"2")])
    assert body == runner.error_body("invalid_request", 'file name "a" is given twice')


def test_file_and_directory_of_the_same_name(workdir):
    msg_type, body = run("def main(): return 1", files=[("a", b"1"), ("a/b", b"2")])
    assert body["type"] == "invalid_request" and "could not be written" in body["message"]


def collect(workdir: Path, count: int = 100, size: int = 1 << 20, time_limit: float = 2.0):
    return runner.collect_output(str(workdir), count, size, time_limit)


def test_collect_regular_files_sorted(workdir):
    (workdir / "output" / "sub").mkdir(parents=True)
    (workdir / "output" / "b.txt").write_text("b")
    (workdir / "output" / "sub" / "a.csv").write_text("a")
    (workdir / "output" / "a").write_bytes(b"\x00")
    assert collect(workdir) == (
        [{"name": "a", "data": b"\x00"}, {"name": "b.txt", "data": b"b"}, {"name": "sub/a.csv", "data": b"a"}],
        False,
    )


def test_collect_nothing(workdir):
    assert collect(workdir) == ([], False)
    (workdir / "output").write_text("a file, not a directory")
    assert collect(workdir) == ([], False)


def test_collect_skips_links_and_special_files(workdir):
    out = workdir / "output"
    out.mkdir()
    secret = workdir / "secret"
    secret.write_text("secret")
    (out / "link").symlink_to(secret)
    (out / "dirlink").symlink_to(workdir)
    (out / "dangling").symlink_to(workdir / "nope")
    os.mkfifo(out / "fifo")  # opening it for reading would block
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(out / "sock"))
    (out / "real").write_text("r")
    files, truncated = collect(workdir)
    assert files == [{"name": "real", "data": b"r"}] and not truncated
    sock.close()


def test_output_symlink_not_followed(workdir):
    (workdir / "elsewhere").mkdir()
    (workdir / "elsewhere" / "x").write_text("x")
    (workdir / "output").symlink_to(workdir / "elsewhere")
    assert collect(workdir) == ([], False)


def test_sparse_and_huge_refused_by_size(workdir):
    out = workdir / "output"
    out.mkdir()
    with open(out / "sparse", "wb") as f:
        f.truncate(1 << 40)
    (out / "small").write_text("s")
    start = time.monotonic()
    assert collect(workdir, size=1000) == ([{"name": "small", "data": b"s"}], True)
    assert time.monotonic() - start < 1


def test_caps_count_and_bytes(workdir):
    out = workdir / "output"
    out.mkdir()
    for i in range(5):
        (out / f"f{i}").write_bytes(b"x" * 10)
    assert [f["name"] for f in collect(workdir, count=3)[0]] == ["f0", "f1", "f2"]
    files, truncated = collect(workdir, size=25)
    assert [f["name"] for f in files] == ["f0", "f1"] and truncated


def test_deep_tree_bounded(workdir):
    path = workdir / "output"
    for _ in range(40):
        path = path / "d"
        path.mkdir(parents=True)
        (path / "f").write_text("f")
    files, truncated = collect(workdir)
    assert truncated and len(files) == runner.MAX_OUTPUT_DEPTH - 1


def test_odd_names(workdir):
    out = workdir / "output"
    out.mkdir()
    with open(os.path.join(os.fsencode(out), b"bad\xff\nname"), "w") as f:
        f.write("x")
    files, _ = collect(workdir)
    assert files == [{"name": "bad\\xff\nname", "data": b"x"}]


def test_escaped_names_that_collide_are_given_once(workdir):
    # The byte 0xff escapes to the text "\\xff": a file and a directory, or two
    # files, that differ on disk must not reach the supervisor under one name.
    out = workdir / "output"
    out.mkdir()
    (out / "\\xff").write_text("literal")
    os.mkdir(os.path.join(os.fsencode(out), b"\xff"))
    with open(os.path.join(os.fsencode(out), b"\xff", b"inner"), "w") as f:
        f.write("inner")
    (out / "\\xfe").mkdir()
    (out / "\\xfe" / "x").write_text("x")
    with open(os.path.join(os.fsencode(out), b"\xfe"), "w") as f:
        f.write("byte")
    files, truncated = collect(workdir)
    names = [f["name"] for f in files]
    assert truncated and names == ["\\xfe/x", "\\xff"], names


def test_names_over_the_supervisors_bound_are_left_out(workdir):
    path = os.fsencode(workdir / "output")
    os.mkdir(path)
    for _ in range(4):  # four directories of 255 escaped bytes: 4 * 1020 bytes
        path = os.path.join(path, b"\xff" * 255)
        os.mkdir(path)
    # Each directory adds 1020 bytes and a slash: a name of 12 bytes makes 4096.
    for name in (b"f", b"a" * 12, b"b" * 13):
        with open(os.path.join(path, name), "w") as f:
            f.write("f")
    files, truncated = collect(workdir)
    assert truncated and [len(f["name"].encode()) for f in files] == [4096, 4085]


def test_collection_deadline(workdir):
    out = workdir / "output"
    out.mkdir()
    for i in range(200):
        (out / f"f{i}").write_text("x")
    files, truncated = collect(workdir, time_limit=0.0)
    assert truncated and files == []


def test_files_in_the_result_frame(workdir):
    script = "import os\ndef main():\n    os.mkdir('output')\n    open('output/r.txt', 'w').write('hi')\n    return 1"
    assert run(script, max_out=10, max_out_bytes=100) == (
        runner.MSG_RESULT,
        {"json": b"1", "files": [{"name": "r.txt", "data": b"hi"}]},
    )
    # Not asked for: not collected.
    assert run(script.replace("os.mkdir('output')", "os.makedirs('output', exist_ok=True)")) == (
        runner.MSG_RESULT,
        {"json": b"1"},
    )


def test_collection_survives_a_script_that_rebinds_os(workdir, monkeypatch):
    for name in ("open", "read", "scandir", "O_NOFOLLOW", "O_DIRECTORY"):  # put back after the test
        monkeypatch.setattr(os, name, getattr(os, name))
    monkeypatch.chdir(workdir)
    (workdir / "secret").write_text("secret")
    script = (
        "import os\ndef main():\n    os.mkdir('output')\n    open('output/x', 'w').write('x')\n"
        "    os.symlink(os.path.abspath('secret'), 'output/link')\n"
        "    os.O_NOFOLLOW = os.O_DIRECTORY = 0\n    os.open = os.read = os.scandir = None\n    os.chdir('/')\n    return 1"
    )
    assert run(script, max_out=10, max_out_bytes=100)[1].get("files") == [{"name": "x", "data": b"x"}]


def test_process_round_trip(tmp_path):
    request = runner.encode_frame(
        9,
        runner.MSG_EXECUTE,
        {
            "script": "import os\ndef main(n):\n    os.mkdir('output')\n    open('output/o', 'w').write(open('i').read() * n)\n    return n",
            "max_result_bytes": 100,
            "args": b'{"n": 2}',
            "files": [{"name": "i", "data": b"ab"}],
            "max_files_out": 4,
            "max_files_out_bytes": 100,
        },
    )
    outcome = spawn_runner(request, tmp_path)
    assert outcome.returncode == 0, outcome.stderr
    assert outcome.frame()[3] == {"json": b"2", "files": [{"name": "o", "data": b"abab"}]}


@pytest.mark.parametrize(
    "body, message",
    [
        ({"args": "{}"}, "request field args is a str, want bytes"),
        ({"files": {}}, "request field files is a dict, want a list"),
        ({"files": [1]}, "request field files holds something that is not a map"),
        ({"files": [{"name": b"x", "data": b""}]}, "request field files holds a file without a str name and bytes data"),
        ({"max_files_out": -1}, "request field max_files_out is -1, want an int >= 0"),
    ],
)
def test_bad_io_request_fields(body, message):
    with pytest.raises(runner.FrameError, match=message):
        runner.IORequest.from_body(body)
