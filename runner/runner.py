"""python-executor runner: runs one untrusted script inside the jail.

The supervisor starts this file once per execution (the "cold" engine) as

    <venv>/bin/python3 runner.py

with the working directory on a private tmpfs, stdin on /dev/null, and stdout and
stderr on raw pipes that the supervisor reads. The runner never redirects or parses
fd 1 and 2: whatever the script, its C extensions or its child processes print goes
straight to the supervisor.

The request and the answer travel on two extra fds, named by the environment (fd
numbers only, never data):

    PYEXEC_REQUEST_FD  (default 3)  one `execute` frame: {"script": str, "max_result_bytes": int,
                                    optionally "max_images": int, "max_image_bytes": int}
    PYEXEC_RESULT_FD   (default 4)  one `result` frame {"json": bytes, optionally "images":
                                    [{"media_type": str, "data": bytes}], "images_truncated": bool}
                                    or one `error` frame {"type", "message", "traceback"}

Frames are those of wire/PROTOCOL.md: a 10-byte header
struct.pack(">IIBB", body_length, request_id, message_type, version) and a msgpack
map. The answer echoes the request id.

Exit status: 0 after the answer was written; EXIT_BAD_REQUEST (2) when the request
could not be read (a message on stderr, no answer); EXIT_WRITE_FAILED (3) when the
answer could not be written. The script itself can end the process any other way
(os._exit, a signal); then nothing is written and the supervisor reports it.

What this file trusts: nothing the script does. The script runs in this process, so
it can rebind builtins and module functions (json.dumps, os.write, msgpack.packb), or
write forged bytes to the result fd. The runner takes private references to all it
uses before any script runs (see "Private references") and puts the builtins back
before it builds the answer, so such a script still gets its answer. What the runner
cannot control (forged bytes, a runner module the script changed) spoils the script's
own answer only: the supervisor treats every byte it reads from here as hostile, and
never as a failure of the service (result_corrupted, not internal). The runner's job is
to give an honest answer to honest scripts and a well-formed answer in every case it
can still control.

The work is in run_request(), which touches no fd, so that the "warm" engine (a
forked child of a pre-imported zygote) can call it in-process. main() does the fd
I/O around it.

Standard library plus msgpack only. numpy and pandas are handled when, and only
when, the script imported them itself (importing pandas costs ~300 ms).
"""

import builtins
import datetime
import io
import json
import linecache
import math
import os
import stat
import struct
import sys
import time
import traceback
import types
from collections.abc import Coroutine, Iterable
from typing import Any, BinaryIO, NoReturn

import msgpack

# ---------------------------------------------------------------------------
# Private references
# ---------------------------------------------------------------------------

# The script runs in this process and may rebind anything it can reach: a
# builtin (builtins.len = None), a module's function (json.dumps = None,
# os.write = None, msgpack.packb = None), sys.stdout, sys.modules. The runner
# must still answer, so everything it uses after the script started is taken
# here, before any script runs, and only these names are used.
#
# Builtins first: a function's builtins are those of its module's globals when
# the function is created, so every function below sees this private copy, not
# the builtins module the script can change. (The script's own module gets the
# real builtins module explicitly; see _run.)
_REAL_BUILTINS = builtins.__dict__
_BUILTINS_SNAPSHOT = dict(_REAL_BUILTINS)
__builtins__ = dict(_BUILTINS_SNAPSHOT)

_os_write = os.write
_os_exit = os._exit
_os_getpid = os.getpid
_os_set_blocking = os.set_blocking
_os_open = os.open
_os_read = os.read
_os_close = os.close
_os_fstat = os.fstat
_os_stat = os.stat
_os_scandir = os.scandir
_os_fsencode = os.fsencode
_S_ISREG = stat.S_ISREG
_S_ISDIR = stat.S_ISDIR
_monotonic = time.monotonic
_sleep = time.sleep
_json_loads = json.loads
_sys_modules = sys.modules
_set_int_max_str_digits = sys.set_int_max_str_digits
_get_int_max_str_digits = sys.get_int_max_str_digits
_isfinite = math.isfinite
_ModuleType = types.ModuleType
_BytesIO = io.BytesIO
_Coroutine = Coroutine
_TracebackException = traceback.TracebackException
_stack_from_list = traceback.StackSummary.from_list
_format_exception_only = traceback.format_exception_only
_linecache = linecache.cache
_str_join = str.join
# msgpack's and json's C encoders, built once: calling them reads no module
# attribute that the script could have replaced. The JSON encoders get only
# plain values (the converter below makes them), and cycles are refused before
# encoding, so no circular check (markers None), and the default hook refuses.
_PACKER = msgpack.Packer(use_bin_type=True)
_unpackb = msgpack.unpackb


def _c_json_encoder(ensure_ascii: bool, allow_nan: bool, separators: tuple[str, str]) -> Any:
    def no_default(value: object) -> NoReturn:
        raise TypeError(f"{type(value).__name__} is not JSON")

    string = json.encoder.c_encode_basestring_ascii if ensure_ascii else json.encoder.c_encode_basestring
    return json.encoder.c_make_encoder(None, no_default, string, None, separators[1], separators[0], False, False, allow_nan)


_JSON_COMPACT = _c_json_encoder(False, False, (",", ":"))
_JSON_COMPACT_ASCII = _c_json_encoder(True, False, (",", ":"))
# What json.dumps(value) writes for a scalar dict key (allow_nan on: "NaN").
_JSON_KEY = _c_json_encoder(False, True, (", ", ": "))
# json.dumps(text, ensure_ascii=False) of a str, for messages.
_json_quote = json.encoder.c_encode_basestring


def _json_text(encoder: Any, value: object) -> str:
    return _str_join("", encoder(value, 0))


def _restore_builtins() -> None:
    """Put back every builtin the script rebound or deleted.

    The runner's own code does not need this (it has its private copy), but the
    library code it calls to build the answer (json's and traceback's Python
    parts, numpy and pandas while converting) looks builtins up in the real
    module. Called once the script has finished, before the answer is built.
    """
    for name, value in _BUILTINS_SNAPSHOT.items():
        if _REAL_BUILTINS.get(name, _MISSING) is not value:
            _REAL_BUILTINS[name] = value


_MISSING = object()

# ---------------------------------------------------------------------------
# Wire protocol (wire/PROTOCOL.md)
# ---------------------------------------------------------------------------

PROTOCOL_VERSION = 1

# Header: body length, request id, message type, version; all big endian.
HEADER = struct.Struct(">IIBB")
HEADER_SIZE = HEADER.size  # 10

MSG_EXECUTE = 0x02
MSG_RESULT = 0x12
MSG_ERROR = 0x13

# Largest request body the runner accepts. Checked before the body is read, so a
# bogus length cannot make the runner allocate. Scripts are far smaller than this.
MAX_REQUEST_BODY = 64 * 1024 * 1024

# Error codes the runner produces (a subset of PROTOCOL.md's stable codes).
ERR_SYNTAX = "syntax_error"
ERR_MISSING_MAIN = "missing_main"
ERR_INVALID_RESULT = "invalid_result"
ERR_RESULT_TOO_LARGE = "result_too_large"
ERR_EXCEPTION = "exception"
ERR_EXITED = "exited"
ERR_INTERNAL = "internal"

EXIT_BAD_REQUEST = 2
EXIT_WRITE_FAILED = 3

DEFAULT_REQUEST_FD = 3
DEFAULT_RESULT_FD = 4


class FrameError(ValueError):
    """A frame is malformed, truncated, or larger than allowed."""


def encode_frame(request_id: int, msg_type: int, body: dict, version: int = PROTOCOL_VERSION) -> bytes:
    """Return one frame: the 10-byte header followed by the msgpack body.

    Text is msgpack str and bytes are msgpack bin (use_bin_type=True); the map keeps
    the insertion order of `body`, which golden files depend on.
    """
    payload = _PACKER.pack(body)
    if len(payload) > 0xFFFFFFFF:
        raise FrameError(f"frame body is {len(payload)} bytes, too large for the header")
    return HEADER.pack(len(payload), request_id, msg_type, version) + payload


def _decode_body(payload: bytes) -> dict:
    """Decode a frame body, which must be exactly one msgpack map."""
    try:
        body = _unpackb(payload, raw=False)
    except Exception as exc:  # msgpack raises several types for bad input; all mean "malformed"
        detail = str(exc) or type(exc).__name__
        raise FrameError(f"frame body is not valid msgpack: {detail}") from None
    if not isinstance(body, dict):
        raise FrameError(f"frame body is a msgpack {type(body).__name__}, not a map")
    return body


def decode_frame(data: bytes, max_body_len: int = MAX_REQUEST_BODY) -> tuple[int, int, int, dict]:
    """Decode exactly one frame held in `data`.

    Returns (request_id, msg_type, version, body). The message type and version are
    not judged here: that is the caller's business.
    """
    if len(data) < HEADER_SIZE:
        raise FrameError(f"frame is {len(data)} bytes, shorter than the {HEADER_SIZE}-byte header")
    body_len, request_id, msg_type, version = HEADER.unpack_from(data)
    if body_len > max_body_len:
        raise FrameError(f"frame body length {body_len} is over the maximum of {max_body_len}")
    if len(data) != HEADER_SIZE + body_len:
        raise FrameError(
            f"frame header announces a {body_len}-byte body, but {len(data) - HEADER_SIZE} bytes follow"
        )
    return request_id, msg_type, version, _decode_body(data[HEADER_SIZE:])


def _read_exact(stream: BinaryIO, size: int, what: str) -> bytes:
    """Read exactly `size` bytes, looping over short reads; EOF before that is an error."""
    chunks = []
    remaining = size
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:
            raise FrameError(f"end of input after {size - remaining} of the {size} bytes of the {what}")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(stream: BinaryIO, max_body_len: int = MAX_REQUEST_BODY) -> tuple[int, int, int, dict]:
    """Read one frame from a binary stream; returns what decode_frame returns.

    The body length is checked against `max_body_len` before the body is read.
    Nothing past the frame is read.
    """
    header = _read_exact(stream, HEADER_SIZE, "frame header")
    body_len, request_id, msg_type, version = HEADER.unpack(header)
    if body_len > max_body_len:
        raise FrameError(f"frame body length {body_len} is over the maximum of {max_body_len}")
    payload = _read_exact(stream, body_len, "frame body")
    return request_id, msg_type, version, _decode_body(payload)


def read_request(stream: BinaryIO) -> tuple[int, str, int]:
    """Read and check the one `execute` frame; returns (request_id, script, max_result_bytes).

    Missing keys take their zero value (PROTOCOL.md); keys of the wrong type are errors.
    max_result_bytes 0 means "no limit of the runner's own". The image caps
    (max_images, max_image_bytes) are read by request_image_caps from the same body,
    kept in _request_images.
    """
    request_id, script, max_result_bytes, _ = read_request_io(stream)
    return request_id, script, max_result_bytes


def read_request_io(stream: BinaryIO) -> tuple[int, str, int, "IORequest"]:
    """read_request, plus the args and files of the request (the "io" feature)."""
    request_id, msg_type, version, body = read_frame(stream, MAX_REQUEST_BODY)
    if version != PROTOCOL_VERSION:
        raise FrameError(f"request has protocol version {version}, want {PROTOCOL_VERSION}")
    if msg_type != MSG_EXECUTE:
        raise FrameError(f"request has message type 0x{msg_type:02x}, want 0x{MSG_EXECUTE:02x} (execute)")
    script = body.get("script", "")
    if not isinstance(script, str):
        raise FrameError(f"request field script is a {type(script).__name__}, want str")
    max_result_bytes = body.get("max_result_bytes", 0)
    if type(max_result_bytes) is not int or max_result_bytes < 0:
        raise FrameError(f"request field max_result_bytes is {max_result_bytes!r}, want an int >= 0")
    _request_images[:] = request_image_caps(body)
    return request_id, script, max_result_bytes, IORequest.from_body(body)


def request_image_caps(body: dict) -> tuple[int, int]:
    """The request's (max_images, max_image_bytes); (0, 0) = no images wanted."""
    caps = []
    for name in ("max_images", "max_image_bytes"):
        value = body.get(name, 0)
        if type(value) is not int or value < 0:
            raise FrameError(f"request field {name} is {value!r}, want an int >= 0")
        caps.append(value)
    return (caps[0], caps[1]) if caps[0] and caps[1] else (0, 0)


# The image caps of the request read last (read_request), for main().
_request_images = [0, 0]


def write_frame(fd: int, request_id: int, msg_type: int, body: dict) -> None:
    """Write one frame to `fd`, looping over partial writes."""
    data = memoryview(encode_frame(request_id, msg_type, body))
    while data:
        written = _os_write(fd, data)
        data = data[written:]


# ---------------------------------------------------------------------------
# The JSON policy (docs/ARCHITECTURE.md#the-runners-contract)
# ---------------------------------------------------------------------------

# A result nested deeper than this many containers is refused. It also keeps the
# recursive walk below far from Python's recursion limit.
MAX_DEPTH = 100


class InvalidResult(Exception):
    """The value is not JSON under the policy.

    `what` says what is wrong (usually just the type name); path segments are added
    by each enclosing container while the exception travels up, innermost first, so
    the path costs nothing unless a value is refused.
    """

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what
        self._segments: list[str] = []

    def add_index(self, index: int) -> None:
        self._segments.append(f"[{index}]")

    def add_key(self, key: str) -> None:
        # Plain ASCII identifiers read best as .name; anything else is JSON-quoted.
        if key.isascii() and key.isidentifier():
            self._segments.append(f".{key}")
        else:
            self._segments.append(f"[{_json_quote(key)}]")

    @property
    def path(self) -> str:
        return "$" + "".join(reversed(self._segments))

    def __str__(self) -> str:
        return f"{self.path}: {self.what}"


class ResultTooLarge(Exception):
    """The encoded result is over the limit."""

    def __init__(self, size: int, limit: int, values: bool = False, digits: bool = False) -> None:
        if values:
            # Counted before encoding: every value takes at least two bytes.
            super().__init__(f"result holds more than {size} values, so it cannot fit the limit of {limit} bytes")
        elif digits:
            super().__init__(f"result holds an integer of at least {size} digits, over the limit of {limit} bytes")
        else:
            super().__init__(f"result is {size} bytes, over the limit of {limit} bytes")
        self.size = size
        self.limit = limit


# Returned by _Converter.scalar for values that are not scalars under the policy.
_NOT_SCALAR = object()

# Integers past this size have their digits counted against the result cap.
_BIG_INT = 10**18
_LOG10_2 = 0.30102999566398120


def _duplicate(label: str, name: str) -> str:
    return f"duplicate {label} {_json_quote(name)} after conversion to a string"


class _Converter:
    """One conversion of one value to plain JSON types (dict, list, str, int, float, bool, None).

    numpy and pandas are looked up in sys.modules once, at the start: if the script
    did not import them, its result cannot contain their types, and the runner must
    not pay for importing them.
    """

    def __init__(self, max_values: int = 0) -> None:
        self.numpy = _sys_modules.get("numpy")
        self.pandas = _sys_modules.get("pandas")
        # A value that shares references (a = [a0, a0]; a = [a, a]; ...) can be
        # tiny in memory and astronomically large as JSON: count the values
        # converted and stop once they alone could not fit the result cap
        # (0 = no cap).
        self.max_values = max_values
        self.values = 0
        # ids of the containers being converted right now (the path from the root), to
        # refuse a container that contains itself instead of walking it forever.
        self.ancestors: set[int] = set()
        # A container met again at the same depth converts to the same thing: its
        # conversion is reused and its values counted again without a walk, so a
        # value sharing references stops at the cap after a few levels instead of
        # walking millions of nodes. (The value keeps every container alive, so
        # an id names one container for the whole conversion.)
        self.done: dict[tuple[int, int], tuple[object, int]] = {}

    def scalar(self, value: object) -> object:
        """The plain Python value of a scalar the policy accepts, or _NOT_SCALAR.

        Floats keep NaN and infinities here (dict keys need them); convert() turns them
        into None. Subclasses are reduced with the base class's own method (int.__int__,
        str.__str__, ...), so an IntEnum gives its int and a (str, Enum) member its
        string, and no subclass can substitute a value of its own.
        """
        if value is None or value is True or value is False:
            return value
        if isinstance(value, str):
            return str.__str__(value)
        if isinstance(value, int):  # bool was handled above
            return int.__int__(value)
        if isinstance(value, float):  # includes numpy.float64, a float subclass
            return float.__float__(value)
        np = self.numpy
        if np is not None and isinstance(value, np.generic):
            if isinstance(value, np.bool_):
                return bool(value)
            if isinstance(value, np.timedelta64):  # before integer: it is a numpy integer subclass
                return _NOT_SCALAR
            if isinstance(value, np.integer):
                return int(value)
            if isinstance(value, np.floating):
                return float(value)
            if isinstance(value, np.datetime64):
                return None if np.isnat(value) else str(np.datetime_as_string(value))
            return _NOT_SCALAR  # complex, bytes_, void, ...
        pd = self.pandas
        if pd is not None:
            # Before the datetime checks: NaT is a datetime subclass, Timestamp too.
            if value is pd.NaT or value is pd.NA:
                return None
            if isinstance(value, pd.Timestamp):
                return pd.Timestamp.isoformat(value)  # keeps nanoseconds
        if isinstance(value, datetime.datetime):  # before date: datetime is a date subclass
            return datetime.datetime.isoformat(value)
        if isinstance(value, datetime.date):
            return datetime.date.isoformat(value)
        return _NOT_SCALAR

    def key(self, key: object, label: str) -> str:
        """A dict key (or index/column label) as a JSON object key.

        Strings stay; None, bool, int and float become what json.dumps writes for
        them as keys (None -> "null", True -> "true", 1.5 -> "1.5", NaN -> "NaN");
        dates and timestamps become ISO 8601. Anything else is refused.
        """
        plain = self.scalar(key)
        if plain is _NOT_SCALAR:
            raise InvalidResult(f"{label} of type {type(key).__name__}")
        if isinstance(plain, str):
            return plain
        return _json_text(_JSON_KEY, plain)  # None, bool, int or float; allow_nan is on for keys

    def convert(self, value: object, depth: int) -> object:
        """Convert `value`, which sits inside `depth` containers."""
        self._count(1)
        # Fast path for the common exact types.
        kind = type(value)
        if kind is str or kind is bool or value is None:
            return value
        if kind is int:
            if value > _BIG_INT or value < -_BIG_INT:
                self._count_digits(value)
            return value
        if kind is float:
            return value if _isfinite(value) else None

        plain = self.scalar(value)
        if plain is not _NOT_SCALAR:
            if isinstance(plain, float) and not _isfinite(plain):
                return None
            if isinstance(plain, int) and (plain > _BIG_INT or plain < -_BIG_INT):
                self._count_digits(plain)
            return plain

        if not self._is_container(value):
            raise InvalidResult(type(value).__name__)
        if depth >= MAX_DEPTH:
            raise InvalidResult(f"{type(value).__name__} nested deeper than {MAX_DEPTH} levels")
        seen = self.done.get((id(value), depth))
        if seen is not None:
            plain, count = seen
            self._count(count)
            return plain
        if id(value) in self.ancestors:
            raise InvalidResult(f"{type(value).__name__} that contains itself")
        self.ancestors.add(id(value))
        before = self.values
        try:
            plain = self._convert_container(value, depth)
        finally:
            self.ancestors.discard(id(value))
        self.done[(id(value), depth)] = (plain, self.values - before)
        return plain

    def _count(self, n: int) -> None:
        """Count n more values against the cap."""
        if self.max_values:
            self.values += n
            if self.values > self.max_values:
                raise ResultTooLarge(self.max_values, 2 * self.max_values, values=True)

    def _count_digits(self, value: int) -> None:
        """Account for a big integer's decimal digits before any is written.

        Writing an integer's digits takes time quadratic in their number, so one
        that cannot fit the result cap is refused from its bit length, and the
        digits count against the cap like values do (two bytes each).
        """
        if not self.max_values:
            return
        digits = int((value.bit_length() - 1) * _LOG10_2) + 1  # never more than the real count
        limit = 2 * self.max_values
        if digits > limit:
            raise ResultTooLarge(digits, limit, digits=True)
        self.values += digits // 2
        if self.values > self.max_values:
            raise ResultTooLarge(self.max_values, limit, values=True)

    def _is_container(self, value: object) -> bool:
        if isinstance(value, (list, tuple, dict)):
            return True
        np, pd = self.numpy, self.pandas
        if np is not None and isinstance(value, np.ndarray):
            return True
        if pd is not None and isinstance(value, (pd.DataFrame, pd.Series, pd.Index)):
            return True
        return False

    def _convert_container(self, value: Any, depth: int) -> object:
        if isinstance(value, (list, tuple)):
            return self._convert_items(value, depth)
        if isinstance(value, dict):
            return self._convert_pairs(value.keys(), value.values(), depth, "key")
        np, pd = self.numpy, self.pandas
        if np is not None and isinstance(value, np.ndarray):
            return self._convert_ndarray(value, depth)
        if pd is not None:
            if isinstance(value, pd.DataFrame):
                return self._convert_dataframe(value, depth)
            if isinstance(value, pd.Series):
                # tolist() boxes values the way pandas shows them (Timestamp, NaT, NA, ...).
                return self._convert_pairs(value.index.tolist(), value.tolist(), depth, "index label")
            if isinstance(value, pd.Index):
                return self._convert_items(value.tolist(), depth)
        raise InvalidResult(type(value).__name__)  # unreachable: _is_container said yes

    def _convert_items(self, items: Iterable[object], depth: int) -> list:
        out = []
        for index, item in enumerate(items):
            try:
                out.append(self.convert(item, depth + 1))
            except InvalidResult as exc:
                exc.add_index(index)
                raise
        return out

    def _convert_pairs(
        self, keys: Iterable[object], values: Iterable[object], depth: int, label: str
    ) -> dict:
        out: dict = {}
        for key, item in zip(keys, values, strict=True):
            name = self.key(key, label)
            if name in out:
                # Two keys that are distinct in Python (1 and "1") would collapse into one
                # JSON key and silently lose a value: refuse instead.
                raise InvalidResult(_duplicate(label, name))
            try:
                out[name] = self.convert(item, depth + 1)
            except InvalidResult as exc:
                exc.add_key(name)
                raise
        return out

    def _convert_ndarray(self, array: Any, depth: int) -> object:  # array: numpy.ndarray
        if array.ndim == 0:
            # A 0-d array holds a single value: convert that value.
            return self.convert(array[()], depth)
        if array.dtype.kind in "biufcUS":
            # Booleans, numbers and strings: ndarray.tolist() gives nested lists of
            # Python values much faster than a walk over numpy scalars; the walk then
            # applies the policy (NaN -> null, complex and bytes refused).
            return self._convert_items(array.tolist(), depth)
        # object, datetime64, timedelta64, structured: element by element, so each
        # element meets the policy as itself (tolist would turn datetime64[ns] into ints).
        return self._convert_items(array, depth)

    def _convert_dataframe(self, frame: Any, depth: int) -> list:  # frame: pandas.DataFrame
        # A list of records: one {column: value} dict per row.
        if depth + 1 >= MAX_DEPTH:
            raise InvalidResult(f"{type(frame).__name__} nested deeper than {MAX_DEPTH} levels")
        columns: list[str] = []
        for label in frame.columns:
            name = self.key(label, "column label")
            if name in columns:
                raise InvalidResult(_duplicate("column label", name))
            columns.append(name)
        # Column by column: Series.tolist() boxes each column's values once.
        column_values = [frame.iloc[:, position].tolist() for position in range(len(columns))]
        records = []
        for row in range(len(frame)):
            record = {}
            for name, values in zip(columns, column_values, strict=True):
                try:
                    record[name] = self.convert(values[row], depth + 2)
                except InvalidResult as exc:
                    exc.add_key(name)
                    exc.add_index(row)
                    raise
            records.append(record)
        return records


def to_json_value(value: object, max_values: int = 0) -> object:
    """Convert `value` to plain JSON types under the policy; raises InvalidResult,
    or ResultTooLarge past max_values values (0 = no cap)."""
    return _Converter(max_values).convert(value, 0)


def encode_result(value: object, max_result_bytes: int) -> bytes:
    """The UTF-8 JSON text of `value` under the policy.

    Raises InvalidResult when the value is not JSON under the policy, and
    ResultTooLarge when the text is over max_result_bytes (0 means no limit).
    """
    # Python refuses to write an int of more than 4300 digits (a guard against
    # quadratic conversions of untrusted input); a result is no such input: its
    # size is bounded by the cap, checked digit by digit in the conversion, and
    # its time by the execution's timeout. The script's own setting is put back.
    digits_limit = _get_int_max_str_digits()
    _set_int_max_str_digits(0)
    try:
        # Every value but the last is written with at least two bytes (itself and
        # a separator), so more than max_result_bytes // 2 values cannot fit.
        plain = to_json_value(value, (max_result_bytes + 1) // 2)
        # allow_nan=False is a second guard: the conversion already replaced NaN/Infinity.
        text = _json_text(_JSON_COMPACT, plain)
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate in some string cannot be UTF-8; write \udxxx escapes instead,
            # so the bytes are always valid UTF-8.
            data = _json_text(_JSON_COMPACT_ASCII, plain).encode("ascii")
    finally:
        _set_int_max_str_digits(digits_limit)
    if max_result_bytes > 0 and len(data) > max_result_bytes:
        raise ResultTooLarge(len(data), max_result_bytes)
    return data


# ---------------------------------------------------------------------------
# Arguments and files (the "io" feature; docs/ARCHITECTURE.md#the-runners-contract)
# ---------------------------------------------------------------------------

ERR_INVALID_ARGS = "invalid_args"
ERR_INVALID_REQUEST = "invalid_request"

# The name rules of wire.CheckFileName, checked again here: the runner writes
# what it is given, so it refuses what the supervisor should have refused.
MAX_FILE_NAME_BYTES = 255
MAX_FILE_DEPTH = 8

# Output collection. The script (and anything it left running) controls
# output/: every entry is looked at with lstat and opened with O_NOFOLLOW,
# only regular files are read, a file is refused by its size before it is
# read, and the walk is bounded in depth, entries and time.
OUTPUT_DIR = "output"
MAX_OUTPUT_DEPTH = 16
MAX_OUTPUT_ENTRIES = 10000
# The longest output name the supervisor takes (MaxOutputNameBytes in
# internal/engine/sandbox.go): escaped names (\xNN for a byte that is not
# UTF-8) can be four times their length on disk.
MAX_OUTPUT_NAME_BYTES = 4096
OUTPUT_TIME_LIMIT = 2.0  # seconds of collection at most
_READ_CHUNK = 1 << 20
# The open flags, computed now: a script that sets os.O_NOFOLLOW = 0 must not
# make the collection follow links.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class IORequest:
    """The args and files of one request, as read from the execute frame.

    args is None (call main() with no arguments) or the JSON text of an object;
    files a list of (name, data); max_files_out and max_files_out_bytes cap what is
    collected from output/ (0 = collect nothing).
    """

    __slots__ = ("args", "files", "max_files_out", "max_files_out_bytes")

    def __init__(self, args=None, files=(), max_files_out=0, max_files_out_bytes=0) -> None:
        self.args = args
        self.files = list(files)
        self.max_files_out = max_files_out
        self.max_files_out_bytes = max_files_out_bytes

    @classmethod
    def from_body(cls, body: dict) -> "IORequest":
        args = body.get("args")
        if args is not None and not isinstance(args, bytes):
            raise FrameError(f"request field args is a {type(args).__name__}, want bytes")
        raw_files = body.get("files")
        if raw_files is None:
            raw_files = []
        if not isinstance(raw_files, list):
            raise FrameError(f"request field files is a {type(raw_files).__name__}, want a list")
        files = []
        for item in raw_files:
            if not isinstance(item, dict):
                raise FrameError("request field files holds something that is not a map")
            name, data = item.get("name"), item.get("data", b"")
            if not isinstance(name, str) or not isinstance(data, bytes):
                raise FrameError("request field files holds a file without a str name and bytes data")
            files.append((name, data))
        limits = []
        for key in ("max_files_out", "max_files_out_bytes"):
            value = body.get(key, 0)
            if type(value) is not int or value < 0:
                raise FrameError(f"request field {key} is {value!r}, want an int >= 0")
            limits.append(value)
        return cls(args, files, limits[0], limits[1])


class _RequestRefused(Exception):
    """The request's args or files cannot be used; becomes an error frame of `kind`."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _quote_name(name: str) -> str:
    return _json_quote(name if len(name) <= 64 else name[:64]) + ("..." if len(name) > 64 else "")


def check_file_name(name: str) -> str | None:
    """Why `name` is not an acceptable input file name (the rules of wire.CheckFileName), or None."""
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return f"file name {_quote_name(name)} is not valid UTF-8"
    if name == "":
        return "a file name must not be empty"
    if size > MAX_FILE_NAME_BYTES:
        return f"file name {_quote_name(name)} is longer than {MAX_FILE_NAME_BYTES} bytes"
    if name.startswith("/"):
        return f"file name {_quote_name(name)} is absolute; names are relative to the working directory"
    if any(ord(c) < 0x20 or c in "\x7f\\" for c in name):
        return f"file name {_quote_name(name)} holds a control character or a backslash"
    parts = name.split("/")
    if len(parts) > MAX_FILE_DEPTH:
        return f"file name {_quote_name(name)} is more than {MAX_FILE_DEPTH} levels deep"
    for part in parts:
        if part in ("", ".", ".."):
            return f"file name {_quote_name(name)} has an empty, '.' or '..' component"
    return None


def decode_args(text: bytes) -> dict:
    """The args object, decoded before the script exists (so the script cannot
    influence the verdict); raises _RequestRefused(invalid_args)."""
    try:
        value = _json_loads(text.decode("utf-8"))
    except RecursionError:
        raise _RequestRefused(ERR_INVALID_ARGS, "args are nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise _RequestRefused(ERR_INVALID_ARGS, f"args are not valid JSON: {_safe_str(exc)}") from None
    if type(value) is not dict:
        raise _RequestRefused(ERR_INVALID_ARGS, f"args must be a JSON object, not {_type_name(value)}")
    return value


def write_input_files(files: list) -> None:
    """Write the request's files into the working directory; raises _RequestRefused.

    The directory is fresh and no script has run yet, but the files are still
    created exclusively and without following links.
    """
    seen = set()
    for name, _ in files:
        problem = check_file_name(name)
        if problem is None and name in seen:
            problem = f"file name {_quote_name(name)} is given twice"
        if problem is not None:
            raise _RequestRefused(ERR_INVALID_REQUEST, problem)
        seen.add(name)
    for name, data in files:
        parts = name.split("/")
        try:
            for depth in range(1, len(parts)):
                directory = "/".join(parts[:depth])
                try:
                    os.mkdir(directory, 0o755)
                except FileExistsError:
                    if not _S_ISDIR(_os_stat(directory, follow_symlinks=False).st_mode):
                        raise
            fd = _os_open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[_os_write(fd, view):]
            finally:
                _os_close(fd)
        except OSError as exc:
            # No space (tmp_mb), too many files (the inode limit), a file over
            # file_size_mb, a name that is also a directory: the request does not
            # fit the execution's limits.
            reason = exc.strerror or type(exc).__name__
            raise _RequestRefused(ERR_INVALID_REQUEST, f"input file {_quote_name(name)} could not be written: {reason}") from None


_CO_VARARGS = 0x04
_CO_VARKEYWORDS = 0x08
_FUNCTION_CODE = types.FunctionType.__dict__["__code__"].__get__
_FUNCTION_DEFAULTS = types.FunctionType.__dict__["__defaults__"].__get__
_FUNCTION_KWDEFAULTS = types.FunctionType.__dict__["__kwdefaults__"].__get__
_METHOD_FUNC = types.MethodType.__dict__["__func__"].__get__
_FunctionType = types.FunctionType
_MethodType = types.MethodType


def check_binding(main: object, args: dict) -> None:
    """Raise _RequestRefused(invalid_args) when main(**args) cannot bind.

    A plain function (or a bound method of one) is judged from its code object and
    defaults, read through the types' own descriptors: no attribute of the script's
    (__signature__, __wrapped__, a metaclass) takes part. Any other callable is
    called as is: its own TypeError is then the script's exception.
    """
    skip = 0
    function = main
    if type(main) is _MethodType:
        function, skip = _METHOD_FUNC(main), 1
    if type(function) is not _FunctionType:
        return
    code = _FUNCTION_CODE(function)
    defaults = _FUNCTION_DEFAULTS(function) or ()
    kwdefaults = _FUNCTION_KWDEFAULTS(function) or {}
    positional = code.co_varnames[: code.co_argcount]
    keyword_only = code.co_varnames[code.co_argcount : code.co_argcount + code.co_kwonlyargcount]
    first_default = len(positional) - len(defaults)
    posonly = positional[: code.co_posonlyargcount]
    accepted = set(positional[max(skip, code.co_posonlyargcount) :]) | set(keyword_only)
    takes_any = bool(code.co_flags & _CO_VARKEYWORDS)
    for key in args:
        if key in accepted:
            continue
        if key in posonly and not takes_any:
            raise _RequestRefused(ERR_INVALID_ARGS, f"main() takes {_quote_name(key)} as a positional-only parameter; args cannot fill it")
        if not takes_any:
            raise _RequestRefused(ERR_INVALID_ARGS, f"main() has no parameter {_quote_name(key)}")
    missing = []
    for position in range(skip, len(positional)):
        name = positional[position]
        if position < code.co_posonlyargcount and position < first_default:
            raise _RequestRefused(ERR_INVALID_ARGS, f"main() has a required positional-only parameter {_quote_name(name)} that args cannot fill")
        if position < first_default and name not in args:
            missing.append(name)
    missing += [name for name in keyword_only if name not in kwdefaults and name not in args]
    if missing:
        names = ", ".join(_quote_name(name) for name in missing)
        raise _RequestRefused(ERR_INVALID_ARGS, f"main() is missing required argument{'s' if len(missing) > 1 else ''} {names}")


def _output_name(parts: list) -> str:
    # Names are bytes on disk; invalid UTF-8 becomes \xNN escapes, so the name is
    # always valid text (newlines and other characters are kept as they are).
    return _os_fsencode("/".join(parts)).decode("utf-8", "backslashreplace")


def collect_output(workdir: str, max_count: int, max_bytes: int, time_limit: float = OUTPUT_TIME_LIMIT) -> tuple[list, bool]:
    """The regular files under <workdir>/output as [{"name", "data"}], and whether any were left out.

    Hostile-input safe: output/ and every directory under it are opened with
    O_NOFOLLOW | O_DIRECTORY (a symlink is never followed), every entry is lstat'ed
    and only regular files are opened (O_NOFOLLOW | O_NONBLOCK, then checked again
    with fstat, so a file swapped for a FIFO or a link between the two is not read),
    a file larger than the bytes left is refused by its size, unread, and the walk
    stops at MAX_OUTPUT_DEPTH levels, MAX_OUTPUT_ENTRIES entries or time_limit
    seconds. Symlinks and special files are skipped; files left out by a cap make
    the second value True. Names are sorted, so the answer does not depend on the
    directory's order.
    """
    if max_count <= 0 or max_bytes <= 0:
        return [], False
    deadline = _monotonic() + time_limit
    flags = _DIR_FLAGS
    try:
        base = _os_open(workdir, flags)
    except OSError:
        return [], False
    try:
        try:
            top = _os_open(OUTPUT_DIR, flags, dir_fd=base)
        except OSError:  # none, not a directory, or a symlink (ELOOP): nothing to collect
            return [], False
    finally:
        _os_close(base)
    out: list = []
    truncated = False
    left = max_bytes
    entries = 0
    pending = [(top, [], 0)]
    try:
        while pending:
            dir_fd, prefix, depth = pending.pop()
            try:
                names = []
                with _os_scandir(dir_fd) as listing:
                    for entry in listing:
                        entries += 1
                        if entries > MAX_OUTPUT_ENTRIES or _monotonic() > deadline:
                            truncated = True
                            break
                        names.append(entry.name)
                names.sort()
                subdirs = []
                # Escaped names can collide where the names on disk do not (the
                # byte 0xff and the text "\\xff"): the supervisor takes a name
                # once, and never as both a file and a directory, so the second
                # of a pair is left out.
                seen = set()
                for name in names:
                    if _monotonic() > deadline:
                        truncated = True
                        break
                    shown = _output_name([name])
                    if shown in seen or len(_output_name(prefix + [name]).encode()) > MAX_OUTPUT_NAME_BYTES:
                        truncated = True
                        continue
                    try:
                        st = _os_stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    except OSError:
                        continue
                    if _S_ISDIR(st.st_mode):
                        if depth + 1 >= MAX_OUTPUT_DEPTH:
                            truncated = True
                            continue
                        try:
                            subdirs.append((_os_open(name, flags, dir_fd=dir_fd), prefix + [name], depth + 1))
                        except OSError:
                            continue
                        seen.add(shown)
                        continue
                    if not _S_ISREG(st.st_mode):
                        continue  # symlink, FIFO, socket, device: never opened
                    if len(out) >= max_count or st.st_size > left:
                        truncated = True  # refused by its size (sparse or huge), unread
                        continue
                    data = _read_regular(dir_fd, name, st, left, deadline)
                    if data is None:
                        truncated = True
                        continue
                    seen.add(shown)
                    left -= len(data)
                    out.append({"name": _output_name(prefix + [name]), "data": data})
                # Depth first, in name order.
                pending.extend(reversed(subdirs))
            finally:
                _os_close(dir_fd)
            if truncated and (entries > MAX_OUTPUT_ENTRIES or _monotonic() > deadline):
                break
    finally:
        for dir_fd, _, _ in pending:
            _os_close(dir_fd)
    out.sort(key=lambda item: item["name"])
    return out, truncated


def _read_regular(dir_fd: int, name: str, st: os.stat_result, left: int, deadline: float) -> bytes | None:
    """The bytes of a regular file, or None when it is not the file lstat saw, grew past
    the bytes left, or the deadline passed while reading."""
    try:
        fd = _os_open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        now = _os_fstat(fd)
        if not _S_ISREG(now.st_mode) or now.st_ino != st.st_ino or now.st_dev != st.st_dev or now.st_size > left:
            return None
        chunks = []
        total = 0
        while True:
            if _monotonic() > deadline:
                return None
            chunk = _os_read(fd, min(_READ_CHUNK, left - total + 1))
            if not chunk:
                break
            total += len(chunk)
            if total > left:
                return None  # it grew while being read
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        _os_close(fd)


# ---------------------------------------------------------------------------
# Running the script
# ---------------------------------------------------------------------------

SCRIPT_FILENAME = "<script>"
SCRIPT_MODULE = "__script__"

# Error texts are capped so that a huge exception message cannot make the answer
# frame larger than the supervisor accepts. The middle is cut: the start names
# the problem, the end holds the innermost frame and the exception line.
MAX_MESSAGE_CHARS = 8 * 1024
MAX_TRACEBACK_CHARS = 64 * 1024


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    omitted = len(text) - 2 * half
    return f"{text[:half]}\n... [{omitted} characters omitted] ...\n{text[-half:]}"


def _valid_text(text: str) -> str:
    # msgpack str must be UTF-8; lone surrogates (possible in any user string) become
    # visible \udxxx escapes instead of breaking the encoder.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_body(error_type: str, message: str, traceback_text: str = "") -> dict:
    """The body of an `error` frame; key order is part of the golden bytes."""
    return {
        "type": error_type,
        "message": _valid_text(_clip(message, MAX_MESSAGE_CHARS)),
        "traceback": _valid_text(_clip(traceback_text, MAX_TRACEBACK_CHARS)),
    }


def _safe_str(value: object) -> str:
    # str() of a user object runs user code, which may raise anything (even
    # SystemExit), or return a str subclass with methods of its own: the text is
    # copied into a plain str.
    try:
        return str.__str__(str(value))
    except BaseException:
        return f"<{_type_name(value)} object; str() failed>"


def _safe_repr(value: object) -> str:
    try:
        return str.__str__(repr(value))
    except BaseException:
        return f"<{_type_name(value)} object; repr() failed>"


def _type_name(value: object) -> str:
    # type.__qualname__ read through type's own descriptor: a metaclass cannot
    # substitute it.
    return _TYPE_QUALNAME(type(value))


_TYPE_QUALNAME = type.__dict__["__qualname__"].__get__
_TYPE_MODULE = type.__dict__["__module__"].__get__


def _exception_name(exc: BaseException) -> str:
    """The exception's type name as Python prints it, without the script's module name.

    Built-in exceptions are bare ("ValueError"), library ones are qualified
    ("json.decoder.JSONDecodeError"), the script's own are bare ("MyError").
    """
    kind = type(exc)
    try:
        module = _TYPE_MODULE(kind)
    except BaseException:
        module = None
    name = _TYPE_QUALNAME(kind)
    if type(module) is not str or module in ("builtins", "__main__", SCRIPT_MODULE):
        return name
    return f"{module}.{name}"


def exception_message(exc: BaseException) -> str:
    """Return "ExcType: text", or just "ExcType" when the exception has no text."""
    text = _safe_str(exc)
    name = _exception_name(exc)
    return f"{name}: {text}" if text else name


def _has_script_frames(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == SCRIPT_FILENAME:
            return True
        tb = tb.tb_next
    return False


def script_traceback(exc: BaseException) -> str:
    """The traceback text of `exc`, formatted by Python, with only the script's frames.

    Runner frames and library internals (json, pandas, asyncio, ...) are dropped; the
    script's lines come from linecache, where run_request registered the source.
    Chained exceptions ("The above exception was the direct cause of...", "During
    handling of the above exception...") and exception groups are kept, each filtered
    the same way, because the cause is often the useful part. The last line is
    Python's own, so an exception class defined by the script reads
    "__script__.MyError: ..." there (the error message says just "MyError: ...").
    """
    summary = _TracebackException(type(exc), exc, exc.__traceback__, compact=True)
    pending = [summary]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        kept = [frame for frame in current.stack if frame.filename == SCRIPT_FILENAME]
        current.stack = _stack_from_list(kept)
        for nested in (current.__cause__, current.__context__, *(current.exceptions or ())):
            if nested is not None:
                pending.append(nested)
    return "".join(summary.format())


def _script_failure(exc: BaseException) -> tuple[int, dict]:
    """The answer for an exception that escaped the script (at import, in main, or in
    script code called while encoding the result)."""
    exited = isinstance(exc, SystemExit)
    try:
        if exited:
            code = exc.code
            call = "sys.exit()" if code is None else f"sys.exit({_safe_repr(code)})"
            message = f"script called {call} before returning a result"
        else:
            message = exception_message(exc)
    except BaseException:
        # The exception's own attributes run script code (a property, a
        # metaclass); its type name cannot.
        message = _exception_name(exc)
    try:
        # Formatting runs the traceback and linecache modules, which the script
        # may have broken: then the answer goes without a traceback.
        text = script_traceback(exc)
    except BaseException:
        text = ""
    # KeyboardInterrupt and other BaseExceptions are reported like exceptions.
    return MSG_ERROR, error_body(ERR_EXITED if exited else ERR_EXCEPTION, message, text)


def _internal_failure(exc: BaseException) -> tuple[int, dict]:
    # A failure of the runner's own code: name it, but keep the runner's frames out
    # of the answer. Once the script has run, the script may be the cause (it can
    # change anything in this process), so the supervisor never takes this for a
    # failure of the service (it answers result_corrupted).
    return MSG_ERROR, error_body(ERR_INTERNAL, f"runner failed: {exception_message(exc)}")


def _compile_script(script: str) -> types.CodeType:
    # Registered with linecache so that tracebacks (and inspect.getsource) show the
    # script's lines; mtime None marks it as not a file, so checkcache() keeps it.
    _linecache[SCRIPT_FILENAME] = (len(script), None, script.splitlines(keepends=True), SCRIPT_FILENAME)
    # dont_inherit: no __future__ flags of the runner leak into the script.
    return compile(script, SCRIPT_FILENAME, "exec", dont_inherit=True)


def _syntax_failure(exc: BaseException) -> tuple[int, dict]:
    if isinstance(exc, SyntaxError):
        text = exc.msg or _safe_str(exc)
        message = f"line {exc.lineno}: {text}" if exc.lineno else text
        # format_exception_only shows the file, line, the offending text and a caret.
        detail = "".join(_format_exception_only(type(exc), exc))
        return MSG_ERROR, error_body(ERR_SYNTAX, message, detail)
    if isinstance(exc, ValueError):  # e.g. null bytes, on Python versions that raise ValueError
        return MSG_ERROR, error_body(ERR_SYNTAX, _safe_str(exc), exception_message(exc) + "\n")
    # RecursionError or MemoryError from the compiler: the script nests too deeply
    # (e.g. 100000 chained operators), or is simply too big.
    message = f"script is too deeply nested or too large to compile ({exception_message(exc)})"
    return MSG_ERROR, error_body(ERR_SYNTAX, message, exception_message(exc) + "\n")


# ---------------------------------------------------------------------------
# Figures (wire/PROTOCOL.md, "Feature images")
# ---------------------------------------------------------------------------

_PYPLOT = "matplotlib.pyplot"
# The largest raster a figure may have, in pixels, checked before drawing it: the
# Agg canvas allocates 4 bytes per pixel up front, and a figure's size is the
# script's to choose (plt.figure(figsize=(1e4, 1e4)) would ask for terabytes).
# The supervisor's engine.MaxImagePixels.
MAX_IMAGE_PIXELS = 16 << 20
PNG_MEDIA_TYPE = "image/png"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def capture_figures(max_images: int, max_bytes: int) -> tuple[list[dict], bool]:
    """Render the open pyplot figures, in figure-number order, as PNGs.

    Returns ([{"media_type", "data"}], truncated): at most max_images images of at
    most max_bytes in all; truncated is True when a figure was left out (one too
    many, over the byte budget, or a raster over MAX_IMAGE_PIXELS, which is never
    drawn). Closes every figure afterwards, so that the zygote's warm-up leaves none
    behind. Raises whatever drawing raises: the script's figure, the script's fault.
    """
    plt = _sys_modules[_PYPLOT]
    images: list[dict] = []
    truncated = False
    used = 0
    try:
        for number in sorted(plt.get_fignums()):
            if len(images) >= max_images:
                truncated = True
                break
            figure = plt.figure(number)
            dpi = float(figure.dpi)
            width, height = (float(x) * dpi for x in figure.get_size_inches())
            if not (_isfinite(width) and _isfinite(height)) or width * height > MAX_IMAGE_PIXELS:
                truncated = True
                continue
            buffer = _BytesIO()
            # dpi and bbox fixed here, not taken from rcParams: the size checked
            # above is the size drawn.
            figure.savefig(buffer, format="png", dpi=dpi, bbox_inches=None)
            data = buffer.getvalue()
            if type(data) is not bytes or not data.startswith(_PNG_SIGNATURE):
                raise ValueError(f"figure {number} did not render as a PNG")
            if used + len(data) > max_bytes:
                truncated = True
                continue
            used += len(data)
            images.append({"media_type": PNG_MEDIA_TYPE, "data": data})
    finally:
        plt.close("all")
    return images, truncated


def prepare_matplotlib() -> None:
    """Make MPLCONFIGDIR (set by the jail's environment) exist and hold the font
    cache built at setup (scripts/setup.sh), linked from the venv: matplotlib then
    neither warns about a missing directory nor spends a second rebuilding the cache
    at its first import. In the full tier the directory is a fresh tmpfs of its own
    outside /tmp (the supervisor's MPLConfigJailPath), so /tmp starts empty; in the
    container tier it is under the execution's private directory. Cheap (a mkdir
    and a symlink), and does nothing where there is no such directory or cache.
    Called before any script runs."""
    target = os.environ.get("MPLCONFIGDIR", "")
    source = os.path.join(sys.prefix, "share", "python-executor", "matplotlib")
    if not target:
        return
    try:
        os.makedirs(target, mode=0o700, exist_ok=True)
        names = os.listdir(source)
    except OSError:
        return
    for name in names:
        try:
            os.symlink(os.path.join(source, name), os.path.join(target, name))
        except OSError:
            pass


def _run(
    script: str, max_result_bytes: int, io: IORequest | None = None, images: tuple[int, int] = (0, 0)
) -> tuple[int, dict]:
    # Args are decoded and files written before the script exists: whether the
    # request is usable is decided where the script has no say.
    args = None
    workdir = None
    if io is not None:
        try:
            if io.args is not None:
                args = decode_args(io.args)
            write_input_files(io.files)
            if io.max_files_out > 0:
                workdir = os.getcwd()
        except _RequestRefused as exc:
            return MSG_ERROR, error_body(exc.kind, str(exc))
    try:
        code = _compile_script(script)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return _syntax_failure(exc)

    # A fresh module that is not __main__, so `if __name__ == "__main__": main()`
    # does not call main() a second time; in sys.modules so that pickle and
    # multiprocessing can find the script's functions and classes by module name.
    module = _ModuleType(SCRIPT_MODULE)
    # The real builtins module, not the runner's private copy (exec would hand the
    # script the caller's builtins): the script's changes to builtins are its own.
    module.__dict__["__builtins__"] = builtins
    _sys_modules[SCRIPT_MODULE] = module
    sys.argv = [SCRIPT_FILENAME]

    try:
        exec(code, module.__dict__)
        main = module.__dict__.get("main")
        if main is None:
            return MSG_ERROR, error_body(ERR_MISSING_MAIN, "script does not define a callable main()")
        if not callable(main):
            message = f"script does not define a callable main(): main is of type {_type_name(main)}"
            return MSG_ERROR, error_body(ERR_MISSING_MAIN, message)
        if args is None:
            value = main()
        else:
            try:
                check_binding(main, args)
            except _RequestRefused as exc:
                _restore_builtins()
                return MSG_ERROR, error_body(exc.kind, str(exc))
            value = main(**args)
        if isinstance(value, _Coroutine):
            # `async def main()`: run it to completion. asyncio is imported only here,
            # as most scripts never need it.
            import asyncio

            value = asyncio.run(value)
    except BaseException as exc:  # every way out of the script is an outcome, even KeyboardInterrupt
        _restore_builtins()
        return _script_failure(exc)

    _restore_builtins()
    try:
        data = encode_result(value, max_result_bytes)
    except InvalidResult as exc:
        message = f"main() returned a value that is not JSON-serializable: {exc}"
        return MSG_ERROR, error_body(ERR_INVALID_RESULT, message)
    except ResultTooLarge as exc:
        return MSG_ERROR, error_body(ERR_RESULT_TOO_LARGE, str(exc))
    except BaseException as exc:
        # Encoding can run script code (a tzinfo's utcoffset, a list subclass's
        # __iter__, ...). With a script frame in the traceback the script raised;
        # without one, it is a failure of the runner (or of numpy/pandas internals).
        if isinstance(exc, SystemExit) or _has_script_frames(exc):
            return _script_failure(exc)
        return _internal_failure(exc)
    body: dict = {"json": data}
    if images[0] > 0 and _PYPLOT in _sys_modules:
        try:
            pngs, truncated = capture_figures(images[0], images[1])
        except BaseException as exc:
            # Drawing runs the script's artists, formatters and callbacks, on the
            # data it chose: a failure there is the script's.
            _restore_builtins()
            return _script_failure(exc)
        if pngs:
            body["images"] = pngs
        if truncated:
            body["images_truncated"] = True
    # Output files are collected last, after anything of the script's (figure
    # drawing included) has run.
    if workdir is not None:
        files, files_truncated = collect_output(workdir, io.max_files_out, io.max_files_out_bytes)
        if files:
            body["files"] = files
        if files_truncated:
            body["files_truncated"] = True
    return MSG_RESULT, body


def run_request(
    script: str, max_result_bytes: int, io: IORequest | None = None, images: tuple[int, int] = (0, 0)
) -> tuple[int, dict]:
    """Run `script` and return the answer as (message type, body).

    The message type is MSG_RESULT with body {"json": bytes} (and, when images =
    (max_images, max_image_bytes) asks for them, "images" and "images_truncated"
    for the matplotlib figures left open, and with io's max_files_out "files" and
    "files_truncated" for what the script left in output/) or MSG_ERROR with body
    {"type", "message", "traceback"}. Never raises: a failure of the runner's own code
    becomes an `internal` error. Process-wide effects: sys.argv, sys.modules["__script__"]
    and linecache are set for the script, and the script itself can change anything.
    """
    try:
        return _run(script, max_result_bytes, io, images)
    except BaseException as exc:
        try:
            return _internal_failure(exc)
        except BaseException:
            return MSG_ERROR, {"type": ERR_INTERNAL, "message": "runner failed", "traceback": ""}


# ---------------------------------------------------------------------------
# Process entry point: fd I/O around run_request
# ---------------------------------------------------------------------------


class _SetupError(Exception):
    pass


def _fd_from_env(name: str, default: int) -> int:
    text = os.environ.get(name, "")
    if text == "":
        return default
    if not (text.isascii() and text.isdigit()):
        raise _SetupError(f"{name}={text!r} is not an fd number")
    return int(text)


def _read_request_fd(fd: int) -> tuple[int, str, int, IORequest]:
    """Read the request from `fd` and close it (before the script runs)."""
    try:
        # The supervisor's end may have left the pipe non-blocking; a read must wait.
        os.set_blocking(fd, True)
        # buffering=0: read exactly one frame and nothing after it.
        request = open(fd, "rb", buffering=0)
    except OSError as exc:
        raise _SetupError(f"request fd {fd} is not usable: {exc.strerror}") from None
    with request:
        try:
            return read_request_io(request)
        except OSError as exc:
            raise _SetupError(f"cannot read the request from fd {fd}: {exc.strerror}") from None


def _remove_runner_dir_from_path() -> None:
    # Python puts the directory of runner.py first on sys.path; the script must not
    # import the runner's neighbours by accident (or on purpose).
    runner_dir = os.path.realpath(os.path.dirname(os.path.abspath(__file__)))
    sys.path[:] = [entry for entry in sys.path if os.path.realpath(entry or ".") != runner_dir]


def _fresh_main_module() -> None:
    # `import __main__` gives the script an empty module in both engines: not
    # this file (run as __main__ by the cold engine), not a zygote's state.
    # The old module stays referenced here: the runner's functions use its
    # namespace.
    global _OLD_MAIN
    _OLD_MAIN = _sys_modules.get("__main__")
    _sys_modules["__main__"] = _ModuleType("__main__")


_OLD_MAIN = None


def _flush_standard_streams() -> None:
    # So that everything the script printed is in the pipes before the answer is
    # written. The streams may have been replaced by the script (and its flush may
    # raise anything, even SystemExit); that must not stop the answer.
    for name in ("stdout", "stderr", "__stdout__", "__stderr__"):
        try:
            getattr(sys, name).flush()
        except BaseException:
            pass


def _fail(status: int, message: str) -> NoReturn:
    # Before the script runs, and when the answer cannot be written, the only
    # channel left is stderr (which the supervisor logs).
    try:
        _os_write(2, f"python-executor runner: {message}\n".encode("utf-8", "backslashreplace"))
    except BaseException:
        pass
    _os_exit(status)


# How long the runner waits, after answering that a fork or thread start failed,
# for the supervisor to count the execution's processes and end it. The supervisor
# does so as soon as it has read the answer; this only bounds the wait without one.
COUNT_WAIT_SECONDS = 1.0


def _failed_to_start_process(msg_type: int, body: dict) -> bool:
    """Whether the answer is a failed fork or thread start (EAGAIN): what the
    process limit makes an uncaught exception of. The supervisor's classifier
    matches the same messages (engine.answerIsBlockingIO)."""
    if msg_type != MSG_ERROR or body.get("type") != ERR_EXCEPTION:
        return False
    message = body.get("message", "")
    return message.startswith("BlockingIOError") or message.startswith("RuntimeError: can't start new thread")


def _wait_to_be_counted() -> None:
    """Stay alive, output closed, until the supervisor ends the execution.

    Without a pids cgroup the supervisor tells the process limit from any other
    EAGAIN by counting the execution's processes when the answer arrives. This
    process is PID 1 of the execution's namespace and never reaps: every process
    of the execution that has died is a zombie, still counted (as RLIMIT_NPROC
    counts it), until this process exits, which reaps them all and kills the rest.
    A fork bomb's processes die within milliseconds of their own failed forks,
    so an exit right after the answer would leave nothing to count.
    """
    for fd in (1, 2):
        try:
            _os_close(fd)
        except OSError:
            pass
    try:
        _sleep(COUNT_WAIT_SECONDS)
    except BaseException:
        pass


def main() -> None:
    try:
        request_fd = _fd_from_env("PYEXEC_REQUEST_FD", DEFAULT_REQUEST_FD)
        result_fd = _fd_from_env("PYEXEC_RESULT_FD", DEFAULT_RESULT_FD)
        if request_fd <= 2 or result_fd <= 2 or request_fd == result_fd:
            raise _SetupError(
                f"request fd {request_fd} and result fd {result_fd} must be distinct and above 2"
            )
        try:
            # Close-on-exec: programs the script runs (os.system, subprocess) must not
            # inherit the result channel. (A fork() without exec still does.)
            os.set_inheritable(result_fd, False)
        except OSError as exc:
            raise _SetupError(f"result fd {result_fd} is not usable: {exc.strerror}") from None
        # What does not depend on the request is done before reading it: a warm
        # engine's spare does it while it waits for a request, off the request's path.
        _remove_runner_dir_from_path()
        _fresh_main_module()
        prepare_matplotlib()
        request_id, script, max_result_bytes, io = _read_request_fd(request_fd)
    except (_SetupError, FrameError) as exc:
        _fail(EXIT_BAD_REQUEST, f"bad request: {exc}")

    runner_pid = _os_getpid()
    msg_type, body = run_request(script, max_result_bytes, io, (_request_images[0], _request_images[1]))
    _flush_standard_streams()

    if _os_getpid() != runner_pid:
        # A child the script forked with os.fork() has returned from main() as well.
        # Only the process the supervisor started may answer: exactly one frame.
        _os_exit(0)

    try:
        # The script may have made the fd non-blocking; a short write would lose the answer.
        _os_set_blocking(result_fd, True)
        write_frame(result_fd, request_id, msg_type, body)
    except BaseException as exc:
        _fail(EXIT_WRITE_FAILED, f"cannot write the answer: {exception_message(exc)}")
    if _failed_to_start_process(msg_type, body):
        _wait_to_be_counted()
    # The answer is complete: close the output and the result channel now, so the
    # supervisor sees the end of all three at once rather than after the exit's
    # teardown (unmapping the address space comes before the kernel closes the fds),
    # and can answer the caller while this process is still exiting. A copy held by
    # a process the script started keeps its pipe open, as before.
    for fd in (1, 2, result_fd):
        try:
            _os_close(fd)
        except OSError:
            pass
    # os._exit, not sys.exit: no atexit handlers of the script, no waiting for its
    # non-daemon threads.
    _os_exit(0)


if __name__ == "__main__":
    main()
