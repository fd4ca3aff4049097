"""Unit tests of the frame codec: encode_frame, decode_frame, read_frame, read_request, write_frame."""

import io
import os
import struct
import threading

import msgpack
import pytest
from conftest import runner


def header(body_len: int, request_id: int = 1, msg_type: int = runner.MSG_EXECUTE, version: int = 1) -> bytes:
    return struct.pack(">IIBB", body_len, request_id, msg_type, version)


def test_encode_frame_bytes():
    frame = runner.encode_frame(0x01020304, runner.MSG_RESULT, {"json": b"[1]"})
    assert frame == (
        b"\x00\x00\x00\x0b"  # body length 11
        b"\x01\x02\x03\x04"  # request id
        b"\x12"  # result
        b"\x01"  # version 1
        b"\x81\xa4json\xc4\x03[1]"  # {"json": bin "[1]"}
    )


def test_encode_frame_other_version():
    assert runner.encode_frame(0, 0x01, {}, version=7) == header(1, 0, 0x01, 7) + b"\x80"


def test_error_body_key_order_and_wire_types():
    body = runner.error_body("exception", "ValueError: x", "tb")
    frame = runner.encode_frame(1, runner.MSG_ERROR, body)
    assert frame[10:] == b"\x83\xa4type\xa9exception\xa7message\xadValueError: x\xa9traceback\xa2tb"


def test_error_body_clips_and_sanitises():
    body = runner.error_body("exception", "m" * 100_000 + "\ud800", "t" * 1_000_000)
    assert len(body["message"]) < runner.MAX_MESSAGE_CHARS + 100
    assert body["message"].startswith("m" * 100) and body["message"].endswith("m\\ud800")
    assert "characters omitted" in body["message"]
    assert len(body["traceback"]) < runner.MAX_TRACEBACK_CHARS + 100
    runner.encode_frame(1, runner.MSG_ERROR, body)  # encodable: valid UTF-8 throughout


def test_decode_frame_round_trip():
    body = {"script": "def main(): pass", "max_result_bytes": 1 << 23, "data": b"\xff"}
    frame = runner.encode_frame(9, runner.MSG_EXECUTE, body)
    assert runner.decode_frame(frame) == (9, runner.MSG_EXECUTE, 1, body)


DECODE_ERRORS = [
    ("short_header", b"\x00" * 9, "frame is 9 bytes, shorter than the 10-byte header"),
    ("missing_body", header(2) + b"\x80", "frame header announces a 2-byte body, but 1 bytes follow"),
    ("trailing_bytes", header(1) + b"\x80\x80", "frame header announces a 1-byte body, but 2 bytes follow"),
    ("not_a_map", header(1) + b"\x90", "frame body is a msgpack list, not a map"),
    ("int_body", header(1) + b"\x05", "frame body is a msgpack int, not a map"),
    ("truncated_msgpack", header(2) + b"\x81\xa1", "frame body is not valid msgpack: "),
    ("extra_in_body", header(2) + b"\x80\x80", "frame body is not valid msgpack: "),
    ("int_keys", header(3) + b"\x81\x01\x02", "frame body is not valid msgpack: "),
]


@pytest.mark.parametrize("data, message", [c[1:] for c in DECODE_ERRORS], ids=[c[0] for c in DECODE_ERRORS])
def test_decode_frame_errors(data, message):
    with pytest.raises(runner.FrameError) as info:
        runner.decode_frame(data)
    assert str(info.value).startswith(message)


def test_decode_frame_checks_maximum():
    with pytest.raises(runner.FrameError) as info:
        runner.decode_frame(header(100) + b"\x80" * 100, max_body_len=99)
    assert str(info.value) == "frame body length 100 is over the maximum of 99"


class TrickleStream:
    """A stream that hands out one byte per read() and records every read size."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.reads: list[int] = []

    def read(self, size: int) -> bytes:
        self.reads.append(size)
        chunk, self.data = self.data[:1], self.data[1:]
        return chunk


def test_read_frame_loops_over_short_reads():
    frame = runner.encode_frame(5, runner.MSG_EXECUTE, {"script": "x"})
    stream = TrickleStream(frame)
    assert runner.read_frame(stream) == (5, runner.MSG_EXECUTE, 1, {"script": "x"})
    assert stream.data == b""


def test_read_frame_reads_nothing_past_the_frame():
    first = runner.encode_frame(1, runner.MSG_EXECUTE, {"script": "a"})
    second = runner.encode_frame(2, runner.MSG_EXECUTE, {"script": "b"})
    stream = io.BytesIO(first + second)
    assert runner.read_frame(stream)[0] == 1
    assert stream.tell() == len(first)


def test_read_frame_checks_maximum_before_reading_the_body():
    stream = TrickleStream(header(0xFFFFFFFF) + b"\x80")
    with pytest.raises(runner.FrameError) as info:
        runner.read_frame(stream, max_body_len=1024)
    assert str(info.value) == "frame body length 4294967295 is over the maximum of 1024"
    assert stream.data == b"\x80"  # the body was never read


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "end of input after 0 of the 10 bytes of the frame header"),
        (b"\x00\x00", "end of input after 2 of the 10 bytes of the frame header"),
        (header(5) + b"\x85", "end of input after 1 of the 5 bytes of the frame body"),
    ],
)
def test_read_frame_eof(data, message):
    with pytest.raises(runner.FrameError) as info:
        runner.read_frame(io.BytesIO(data))
    assert str(info.value) == message


def test_read_frame_default_maximum_is_64_mib():
    with pytest.raises(runner.FrameError) as info:
        runner.read_frame(io.BytesIO(header(64 * 1024 * 1024 + 1)))
    assert str(info.value) == "frame body length 67108865 is over the maximum of 67108864"


def request(body: dict, msg_type: int = runner.MSG_EXECUTE, version: int = 1) -> io.BytesIO:
    return io.BytesIO(runner.encode_frame(3, msg_type, body, version=version))


def test_read_request():
    assert runner.read_request(request({"script": "s", "max_result_bytes": 10})) == (3, "s", 10)


def test_read_request_zero_values_and_unknown_keys():
    assert runner.read_request(request({"other": 1})) == (3, "", 0)


@pytest.mark.parametrize(
    "stream, message",
    [
        (request({}, msg_type=0x13), "request has message type 0x13, want 0x02 (execute)"),
        (request({}, version=0), "request has protocol version 0, want 1"),
        (request({"script": 1}), "request field script is a int, want str"),
        (request({"script": None}), "request field script is a NoneType, want str"),
        (request({"max_result_bytes": "1"}), "request field max_result_bytes is '1', want an int >= 0"),
        (request({"max_result_bytes": 1.0}), "request field max_result_bytes is 1.0, want an int >= 0"),
        (request({"max_result_bytes": -5}), "request field max_result_bytes is -5, want an int >= 0"),
        (request({"max_result_bytes": False}), "request field max_result_bytes is False, want an int >= 0"),
    ],
)
def test_read_request_errors(stream, message):
    with pytest.raises(runner.FrameError) as info:
        runner.read_request(stream)
    assert str(info.value) == message


def test_write_frame_larger_than_a_pipe_buffer():
    body = {"json": b"x" * 1_000_000}
    read_fd, write_fd = os.pipe()
    received: list[bytes] = []

    def drain() -> None:
        with open(read_fd, "rb") as reader:
            received.append(reader.read())

    thread = threading.Thread(target=drain)
    thread.start()
    runner.write_frame(write_fd, 4, runner.MSG_RESULT, body)
    os.close(write_fd)
    thread.join(10)
    assert runner.decode_frame(received[0], max_body_len=2_000_000) == (4, runner.MSG_RESULT, 1, body)


def test_msgpack_uses_str_for_text_and_bin_for_bytes():
    frame = runner.encode_frame(1, runner.MSG_ERROR, {"type": "x", "json": b"x"})
    assert msgpack.unpackb(frame[10:], raw=True) == {b"type": b"x", b"json": b"x"}
    assert frame[10:] == b"\x82\xa4type\xa1x\xa4json\xc4\x01x"
