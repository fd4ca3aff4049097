"""Golden frames shared with the Go wire package.

wire/golden_test.go writes testdata/*.bin and a manifest golden.json: a
JSON list of {"name", "file", "request_id", "type", "version", "body"}, where byte
strings inside a body are written as {"$bytes": "<base64>"} and map keys are in wire
order. Both implementations must decode every file to the manifest and encode the
manifest to the file's exact bytes.
"""

import base64
import json

import pytest
from conftest import REPO_ROOT, runner

TESTDATA = REPO_ROOT / "wire" / "testdata"
MANIFEST = TESTDATA / "golden.json"


def from_manifest(value: object) -> object:
    """Manifest JSON -> msgpack body value: {"$bytes": b64} becomes bytes; order is kept."""
    if isinstance(value, dict):
        if list(value) == ["$bytes"]:
            return base64.b64decode(value["$bytes"], validate=True)
        return {key: from_manifest(item) for key, item in value.items()}
    if isinstance(value, list):
        return [from_manifest(item) for item in value]
    return value


def load_manifest() -> list[dict]:
    if not MANIFEST.exists():
        return []
    return json.loads(MANIFEST.read_text(encoding="utf-8"))


ENTRIES = load_manifest()


def test_manifest_is_present():
    # Fails (rather than skipping) when the Go side has not written the files.
    assert MANIFEST.exists(), f"{MANIFEST} is missing; run the Go golden test with -update"
    assert ENTRIES, "golden.json lists no frames"
    assert len({entry["name"] for entry in ENTRIES}) == len(ENTRIES)


@pytest.mark.parametrize("entry", ENTRIES, ids=[entry["name"] for entry in ENTRIES])
def test_decode_golden(entry):
    data = (TESTDATA / entry["file"]).read_bytes()
    expected = (entry["request_id"], entry["type"], entry["version"], from_manifest(entry["body"]))
    decoded = runner.decode_frame(data)
    assert decoded == expected
    # Key order is part of the format: compare it too (dict equality ignores order).
    assert list(decoded[3]) == list(entry["body"])


@pytest.mark.parametrize("entry", ENTRIES, ids=[entry["name"] for entry in ENTRIES])
def test_encode_golden(entry):
    data = (TESTDATA / entry["file"]).read_bytes()
    body = from_manifest(entry["body"])
    assert runner.encode_frame(entry["request_id"], entry["type"], body, version=entry["version"]) == data


def golden_bytes(name: str) -> bytes:
    for entry in ENTRIES:
        if entry["name"] == name:
            return (TESTDATA / entry["file"]).read_bytes()
    pytest.fail(f"golden.json has no frame named {name!r}")


def test_runner_reads_the_golden_runner_request(in_process):
    import io

    request_id, script, max_result_bytes = runner.read_request(io.BytesIO(golden_bytes("runner_request")))
    assert (request_id, max_result_bytes) == (1, 8 << 20)
    msg_type, body = in_process(script, max_result_bytes)
    assert runner.encode_frame(request_id, msg_type, body) == runner.encode_frame(
        1, 0x12, {"json": b"[1,2.5,null]"}
    )


def test_runner_writes_the_golden_error_frame(in_process):
    # The runner's own answer for this script is byte for byte the golden error frame.
    msg_type, body = in_process("def main():\n    return {'items': [0, 1, 2, {3}]}\n")
    assert runner.encode_frame(1, msg_type, body) == golden_bytes("error")


def test_runner_ignores_unknown_request_keys():
    # Keys the runner does not know are ignored (PROTOCOL.md), so the supervisor
    # can add fields without a version bump: the golden request with extra keys of
    # every kind, before and after the known ones, reads the same.
    import io

    entry = next(entry for entry in ENTRIES if entry["name"] == "runner_request")
    body = {"future_map": {"nested": [1, {"deeper": b"x"}]}, **from_manifest(entry["body"])}
    body.update(future_str="x", future_nil=None, future_float=2.5, future_array=["a", 1, []])
    frame = runner.encode_frame(entry["request_id"], entry["type"], body)
    assert runner.read_request(io.BytesIO(frame)) == runner.read_request(io.BytesIO(golden_bytes("runner_request")))


def test_golden_hellos_decode_without_features_knowledge():
    # A peer that knows only version and software reads a hello with features the
    # same way as the base hello: the features key is just an unknown key to it.
    def base_view(name: str) -> tuple:
        request_id, msg_type, version, body = runner.decode_frame(golden_bytes(name))
        return request_id, msg_type, version, body.get("version"), type(body.get("software"))

    assert base_view("hello_features") == base_view("hello") == (0, 0x01, 1, 1, str)
    _, _, _, body = runner.decode_frame(golden_bytes("hello_features_answer"))
    assert set(body["features"]) <= set(runner.decode_frame(golden_bytes("hello_features"))[3]["features"])
