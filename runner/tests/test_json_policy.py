"""Unit tests of the strict JSON policy: every conversion and every refusal."""

import collections
import datetime
import decimal
import enum
import fractions
import math

import numpy as np
import pandas as pd
import pytest
from conftest import runner


def encode(value: object, max_result_bytes: int = 0) -> bytes:
    return runner.encode_result(value, max_result_bytes)


def refusal(value: object) -> str:
    with pytest.raises(runner.InvalidResult) as info:
        runner.encode_result(value, 0)
    return str(info.value)


class Color(enum.IntEnum):
    RED = 1


class Mood(str, enum.Enum):  # noqa: UP042 - the pre-3.11 way, on purpose
    HAPPY = "happy"


class Flavor(enum.StrEnum):
    SWEET = "sweet"


class SneakyInt(int):
    def __int__(self) -> int:
        return 99

    def __repr__(self) -> str:
        return "99"


class SneakyStr(str):
    def __str__(self) -> str:
        return "not me"


class SneakyFloat(float):
    def __float__(self) -> float:
        return 99.0


class MyClass:
    pass


Pair = collections.namedtuple("Pair", "a b")

UTC = datetime.UTC


# --- accepted values: exact JSON bytes --------------------------------------

CONVERSIONS = [
    # plain JSON types
    ("none", None, b"null"),
    ("true", True, b"true"),
    ("false", False, b"false"),
    ("int", -5, b"-5"),
    ("big_int", 10**30, b"1000000000000000000000000000000"),
    ("float", 1.5, b"1.5"),
    ("float_whole", 2.0, b"2.0"),
    ("negative_zero", -0.0, b"-0.0"),
    ("str", 'a"b\n', b'"a\\"b\\n"'),
    ("empty_str", "", b'""'),
    ("non_ascii", "é日", '"é日"'.encode()),
    # non-finite floats
    ("nan", math.nan, b"null"),
    ("inf", math.inf, b"null"),
    ("minus_inf", -math.inf, b"null"),
    # subclasses reduce to their base value
    ("int_enum", Color.RED, b"1"),
    ("str_enum_mixin", Mood.HAPPY, b'"happy"'),
    ("str_enum", Flavor.SWEET, b'"sweet"'),
    ("int_subclass", SneakyInt(5), b"5"),
    ("str_subclass", SneakyStr("me"), b'"me"'),
    ("float_subclass", SneakyFloat(0.5), b"0.5"),
    ("bool_in_list", [True, 1, 1.0], b"[true,1,1.0]"),
    # containers
    ("list", [1, [2, [3]]], b"[1,[2,[3]]]"),
    ("tuple", (1, (2, 3)), b"[1,[2,3]]"),
    ("namedtuple", Pair(1, 2), b"[1,2]"),
    ("empty", {"l": [], "t": (), "d": {}}, b'{"l":[],"t":[],"d":{}}'),
    ("nan_in_list", [1.0, math.nan, math.inf], b"[1.0,null,null]"),
    ("shared_not_cyclic", (lambda x: [x, x])([1]), b"[[1],[1]]"),
    ("ordered_dict", collections.OrderedDict([("b", 1), ("a", 2)]), b'{"b":1,"a":2}'),
    ("defaultdict", collections.defaultdict(int, {"a": 1}), b'{"a":1}'),
    ("counter", collections.Counter("aab"), b'{"a":2,"b":1}'),
    # dict keys
    ("key_int", {1: "a", -2: "b"}, b'{"1":"a","-2":"b"}'),
    ("key_big_int", {10**20: 1}, b'{"100000000000000000000":1}'),
    ("key_float", {1.5: "a", 2.0: "b"}, b'{"1.5":"a","2.0":"b"}'),
    ("key_non_finite", {math.nan: 1, math.inf: 2, -math.inf: 3}, b'{"NaN":1,"Infinity":2,"-Infinity":3}'),
    ("key_bool", {True: 1, False: 0}, b'{"true":1,"false":0}'),
    ("key_none", {None: 1}, b'{"null":1}'),
    ("key_int_enum", {Color.RED: "r"}, b'{"1":"r"}'),
    ("key_str_enum", {Mood.HAPPY: 1}, b'{"happy":1}'),
    ("key_datetime", {datetime.datetime(2024, 1, 2, 3, 4, 5): 1}, b'{"2024-01-02T03:04:05":1}'),
    ("key_date", {datetime.date(2024, 1, 2): 1}, b'{"2024-01-02":1}'),
    ("key_numpy_int", {np.int64(3): 1}, b'{"3":1}'),
    ("key_numpy_float", {np.float32(2.5): 1}, b'{"2.5":1}'),
    ("key_numpy_nan", {np.float64("nan"): 1}, b'{"NaN":1}'),
    ("key_numpy_bool", {np.bool_(True): 1}, b'{"true":1}'),
    ("key_numpy_str", {np.str_("k"): 1}, b'{"k":1}'),
    ("key_numpy_datetime", {np.datetime64("2024-01-02"): 1}, b'{"2024-01-02":1}'),
    ("key_numpy_nat", {np.datetime64("NaT"): 1}, b'{"null":1}'),
    ("key_timestamp", {pd.Timestamp("2024-01-02 03:04"): 1}, b'{"2024-01-02T03:04:00":1}'),
    ("key_pandas_nat", {pd.NaT: 1}, b'{"null":1}'),
    # datetime
    ("datetime", datetime.datetime(2024, 1, 2, 3, 4, 5, 6), b'"2024-01-02T03:04:05.000006"'),
    ("datetime_aware", datetime.datetime(2024, 1, 2, tzinfo=UTC), b'"2024-01-02T00:00:00+00:00"'),
    ("date", datetime.date(2024, 1, 2), b'"2024-01-02"'),
    # numpy scalars
    ("np_bool", np.bool_(False), b"false"),
    ("np_int8", np.int8(-3), b"-3"),
    ("np_uint64_max", np.uint64(2**64 - 1), b"18446744073709551615"),
    ("np_int64", np.int64(7), b"7"),
    ("np_float16", np.float16(0.5), b"0.5"),
    ("np_float32", np.float32(0.1), b"0.10000000149011612"),
    ("np_float64", np.float64(1.25), b"1.25"),
    ("np_longdouble", np.longdouble(0.5), b"0.5"),
    ("np_float_nan", np.float64("nan"), b"null"),
    ("np_float32_inf", np.float32("inf"), b"null"),
    ("np_str", np.str_("s"), b'"s"'),
    ("np_datetime_day", np.datetime64("2024-01-02"), b'"2024-01-02"'),
    ("np_datetime_seconds", np.datetime64("2024-01-02T03:04:05"), b'"2024-01-02T03:04:05"'),
    ("np_datetime_ns", np.datetime64("2024-01-02T03:04:05.000000001"), b'"2024-01-02T03:04:05.000000001"'),
    ("np_nat", np.datetime64("NaT"), b"null"),
    # numpy arrays
    ("array_int_2d", np.array([[1, 2], [3, 4]]), b"[[1,2],[3,4]]"),
    ("array_float", np.array([1.5, np.nan, np.inf, -np.inf]), b"[1.5,null,null,null]"),
    ("array_float32", np.array([0.5], dtype=np.float32), b"[0.5]"),
    ("array_bool", np.array([True, False]), b"[true,false]"),
    ("array_str", np.array(["a", "b"]), b'["a","b"]'),
    ("array_0d", np.array(3.5), b"3.5"),
    ("array_0d_nan", np.array(np.nan), b"null"),
    ("array_empty", np.array([]), b"[]"),
    ("array_empty_rows", np.zeros((2, 0)), b"[[],[]]"),
    ("array_3d", np.arange(8).reshape(2, 2, 2), b"[[[0,1],[2,3]],[[4,5],[6,7]]]"),
    (
        "array_object",
        np.array([1, "a", None, [2, np.int64(3)], np.nan], dtype=object),
        b'[1,"a",null,[2,3],null]',
    ),
    ("array_object_2d", np.array([[1, {"a": 2}], [None, 3.5]], dtype=object), b'[[1,{"a":2}],[null,3.5]]'),
    (
        "array_datetime",
        np.array(["2024-01-02", "NaT"], dtype="datetime64[ns]"),
        b'["2024-01-02T00:00:00.000000000",null]',
    ),
    ("array_datetime_days", np.array(["2024-01-02"], dtype="datetime64[D]"), b'["2024-01-02"]'),
    # pandas
    ("timestamp", pd.Timestamp("2024-01-02 03:04:05"), b'"2024-01-02T03:04:05"'),
    ("timestamp_ns", pd.Timestamp("2024-01-02 03:04:05.000000001"), b'"2024-01-02T03:04:05.000000001"'),
    ("timestamp_tz", pd.Timestamp("2024-01-02", tz="UTC"), b'"2024-01-02T00:00:00+00:00"'),
    ("pandas_nat", pd.NaT, b"null"),
    ("pandas_na", pd.NA, b"null"),
    ("series_str_index", pd.Series([1, 2], index=["a", "b"]), b'{"a":1,"b":2}'),
    ("series_int_index", pd.Series([1.5, np.nan]), b'{"0":1.5,"1":null}'),
    ("series_float_index", pd.Series([1], index=[0.5]), b'{"0.5":1}'),
    (
        "series_datetime_index",
        pd.Series([1, 2], index=pd.to_datetime(["2024-01-01", "2024-01-02"])),
        b'{"2024-01-01T00:00:00":1,"2024-01-02T00:00:00":2}',
    ),
    (
        "series_datetime_values",
        pd.Series(pd.to_datetime(["2024-01-01", None])),
        b'{"0":"2024-01-01T00:00:00","1":null}',
    ),
    ("series_nullable_int", pd.Series([1, None], dtype="Int64"), b'{"0":1,"1":null}'),
    ("series_string", pd.Series(["a", None], dtype="string"), b'{"0":"a","1":null}'),
    ("series_category", pd.Series(["x", "y"], dtype="category"), b'{"0":"x","1":"y"}'),
    ("series_bool", pd.Series([True, False]), b'{"0":true,"1":false}'),
    ("series_empty", pd.Series([], dtype=float), b"{}"),
    ("dataframe", pd.DataFrame({"A": [1, 2], "B": [0.5, np.nan]}), b'[{"A":1,"B":0.5},{"A":2,"B":null}]'),
    ("dataframe_int_columns", pd.DataFrame([[1, 2]]), b'[{"0":1,"1":2}]'),
    (
        "dataframe_mixed",
        pd.DataFrame(
            {
                "t": pd.to_datetime(["2024-01-02", None]),
                "s": ["x", None],
                "n": pd.array([1, None], dtype="Int64"),
                "o": [[1, 2], {"k": np.int64(3)}],
            }
        ),
        b'[{"t":"2024-01-02T00:00:00","s":"x","n":1,"o":[1,2]},{"t":null,"s":null,"n":null,"o":{"k":3}}]',
    ),
    ("dataframe_index_ignored", pd.DataFrame({"a": [1]}, index=["row"]), b'[{"a":1}]'),
    ("dataframe_empty", pd.DataFrame(), b"[]"),
    ("dataframe_no_rows", pd.DataFrame({"a": []}), b"[]"),
    ("index", pd.Index([3, 1]), b"[3,1]"),
    ("datetime_index", pd.to_datetime(["2024-01-02"]), b'["2024-01-02T00:00:00"]'),
    ("multi_index", pd.MultiIndex.from_tuples([(1, "a")]), b'[[1,"a"]]'),
    (
        "nested_pandas",
        {"frame": pd.DataFrame({"a": [1]}), "series": [pd.Series({"k": 1})]},
        b'{"frame":[{"a":1}],"series":[{"k":1}]}',
    ),
]


@pytest.mark.parametrize(
    "value, expected", [case[1:] for case in CONVERSIONS], ids=[case[0] for case in CONVERSIONS]
)
def test_conversion(value, expected):
    assert encode(value) == expected


def test_converted_values_are_plain_json_types():
    plain = runner.to_json_value({"a": (np.int64(1), np.float64(2.5), np.bool_(True), Mood.HAPPY, Color.RED)})
    assert plain == {"a": [1, 2.5, True, "happy", 1]}
    assert [type(item) for item in plain["a"]] == [int, float, bool, str, int]


def test_pandas_seed_value():
    df = pd.DataFrame({"A": [1, 2, 3], "B": [4, 5, 6]})
    value = {"shape": df.shape, "sum": df.sum().to_dict(), "mean": df.mean().to_dict()}
    assert encode(value) == b'{"shape":[3,2],"sum":{"A":6,"B":15},"mean":{"A":2.0,"B":5.0}}'


def test_series_and_dataframe_direct():
    df = pd.DataFrame({"A": [1, 2, 3], "B": [4, 5, 6]})
    assert encode({"sum": df.sum(), "frame": df}) == (
        b'{"sum":{"A":6,"B":15},"frame":[{"A":1,"B":4},{"A":2,"B":5},{"A":3,"B":6}]}'
    )


def test_lone_surrogate_falls_back_to_ascii_escapes():
    data = encode({"k\udc80": "é\ud800"})
    assert data == b'{"k\\udc80":"\\u00e9\\ud800"}'
    data.decode("utf-8")  # always valid UTF-8


def test_large_dataframe_is_fast_enough():
    frame = pd.DataFrame(np.arange(200_000 * 5, dtype=float).reshape(200_000, 5), columns=list("abcde"))
    data = encode(frame)
    assert data.startswith(b'[{"a":0.0,"b":1.0,"c":2.0,"d":3.0,"e":4.0},')
    assert data.count(b"{") == 200_000


# --- refusals: "<path>: <what>" ----------------------------------------------


def _generator():
    yield 1


REFUSALS = [
    ("set", {"items": [1, 2, 3, {4}]}, "$.items[3]: set"),
    ("bytes_root", b"x", "$: bytes"),
    ("quoted_key", {"a b": [MyClass()]}, '$["a b"][0]: MyClass'),
    ("frozenset", [frozenset()], "$[0]: frozenset"),
    ("bytearray", bytearray(b"x"), "$: bytearray"),
    ("complex", {"z": 1j}, "$.z: complex"),
    ("decimal", decimal.Decimal("1.5"), "$: Decimal"),
    ("fraction", fractions.Fraction(1, 3), "$: Fraction"),
    ("object", object(), "$: object"),
    ("timedelta", datetime.timedelta(1), "$: timedelta"),
    ("time", datetime.time(1, 2), "$: time"),
    ("range", range(3), "$: range"),
    ("generator", _generator(), "$: generator"),
    ("function", len, "$: builtin_function_or_method"),
    ("class", MyClass, "$: type"),
    ("int_key_path", {1: {2}}, '$["1"]: set'),
    ("non_ascii_key_path", {"é": {2}}, '$["é"]: set'),
    ("underscore_key_path", {"_x1": [{3}]}, "$._x1[0]: set"),
    ("empty_key_path", {"": {2}}, '$[""]: set'),
    ("deep_path", {"a": [{"b": (1, {"c d": {1}})}]}, '$.a[0].b[1]["c d"]: set'),
    ("tuple_key", {(1, 2): 3}, "$: key of type tuple"),
    ("tuple_key_nested", {"a": {(1, 2): 3}}, "$.a: key of type tuple"),
    ("bytes_key", {b"k": 1}, "$: key of type bytes"),
    ("object_key", {MyClass(): 1}, "$: key of type MyClass"),
    ("duplicate_key", {1: "a", "1": "b"}, '$: duplicate key "1" after conversion to a string'),
    ("duplicate_key_bool", {True: 1, "true": 2}, '$: duplicate key "true" after conversion to a string'),
    ("np_complex", np.complex128(1j), "$: complex128"),
    ("np_timedelta", np.timedelta64(1, "D"), "$: timedelta64"),
    ("np_bytes", np.bytes_(b"x"), "$: bytes_"),
    ("array_complex", np.array([1j]), "$[0]: complex"),
    ("array_bytes", np.array([b"x"]), "$[0]: bytes"),
    ("array_timedelta", np.array([1], dtype="timedelta64[s]"), "$[0]: timedelta64"),
    ("array_object_set", np.array([1, {2}], dtype=object), "$[1]: set"),
    ("array_object_2d_set", np.array([[1, 2], [{3}, 4]], dtype=object), "$[1][0]: set"),
    ("pandas_timedelta", pd.Timedelta(1), "$: Timedelta"),
    ("pandas_period", pd.Period("2024-01"), "$: Period"),
    ("pandas_categorical", pd.Categorical(["a"]), "$: Categorical"),
    ("series_bad_value", pd.Series([1, {2}], index=["a", "b"]), "$.b: set"),
    (
        "series_multi_index",
        pd.Series([1], index=pd.MultiIndex.from_tuples([(1, 2)])),
        "$: index label of type tuple",
    ),
    (
        "series_duplicate_index",
        pd.Series([1, 2], index=["a", "a"]),
        '$: duplicate index label "a" after conversion to a string',
    ),
    ("series_timedelta_values", pd.Series(pd.to_timedelta([1], unit="s")), '$["0"]: Timedelta'),
    ("dataframe_bad_cell", pd.DataFrame({"a": [1, 2], "b": [None, {3}]}), "$[1].b: set"),
    ("dataframe_bad_cell_quoted", pd.DataFrame({"a b": [1j]}), '$[0]["a b"]: complex'),
    (
        "dataframe_duplicate_columns",
        pd.DataFrame([[1, 2]], columns=["a", "a"]),
        '$: duplicate column label "a" after conversion to a string',
    ),
    (
        "dataframe_duplicate_after_str",
        pd.DataFrame([[1, 2]], columns=[1, "1"]),
        '$: duplicate column label "1" after conversion to a string',
    ),
    (
        "dataframe_multi_columns",
        pd.DataFrame([[1]], columns=pd.MultiIndex.from_tuples([("a", "b")])),
        "$: column label of type tuple",
    ),
    ("nested_dataframe", {"df": pd.DataFrame({"x": [b"1"]})}, "$.df[0].x: bytes"),
]


@pytest.mark.parametrize(
    "value, message", [case[1:] for case in REFUSALS], ids=[case[0] for case in REFUSALS]
)
def test_refusal(value, message):
    assert refusal(value) == message


def test_refusal_exposes_path_and_what():
    with pytest.raises(runner.InvalidResult) as info:
        runner.to_json_value({"items": [1, 2, 3, {4}]})
    assert (info.value.path, info.value.what) == ("$.items[3]", "set")


# --- depth and cycles --------------------------------------------------------


def nested_lists(levels: int) -> list:
    value: list = []
    for _ in range(levels - 1):
        value = [value]
    return value


def test_100_levels_are_accepted():
    assert encode(nested_lists(100)) == b"[" * 100 + b"]" * 100


def test_101_levels_are_refused():
    assert refusal(nested_lists(101)) == "$" + "[0]" * 100 + ": list nested deeper than 100 levels"


def test_deep_dicts_are_refused_without_recursion_error():
    value: dict = {}
    for _ in range(5000):
        value = {"a": value}
    assert refusal(value) == "$" + ".a" * 100 + ": dict nested deeper than 100 levels"


def innermost(value: list) -> list:
    while value:
        value = value[0]
    return value


def test_array_dimensions_count_as_levels():
    cube = np.zeros((1,) * 32)  # numpy's maximum number of dimensions
    assert encode(cube) == b"[" * 32 + b"0.0" + b"]" * 32
    fits = nested_lists(68)
    innermost(fits).append(cube)  # 68 + 32 = 100 levels
    assert encode(fits) == b"[" * 100 + b"0.0" + b"]" * 100
    too_deep = nested_lists(69)
    innermost(too_deep).append(cube)  # 69 + 32 = 101 levels
    assert refusal(too_deep) == "$" + "[0]" * 100 + ": list nested deeper than 100 levels"


def test_dataframe_needs_two_levels():
    value: object = pd.DataFrame({"a": [1]})
    for _ in range(98):
        value = [value]
    assert encode(value).count(b"[") == 99  # 98 lists + the records list: 100 levels with the records
    assert refusal([value]) == "$" + "[0]" * 99 + ": DataFrame nested deeper than 100 levels"


def test_list_containing_itself():
    value: list = [1]
    value.append(value)
    assert refusal({"x": value}) == "$.x[1]: list that contains itself"


def test_dict_containing_itself():
    value: dict = {}
    value["self"] = value
    assert refusal(value) == "$.self: dict that contains itself"


def test_object_array_containing_itself():
    value = np.empty(1, dtype=object)
    value[0] = value
    assert refusal(value) == "$[0]: ndarray that contains itself"


# --- size limit ----------------------------------------------------------------


def test_size_limit_counts_encoded_bytes():
    assert encode("é" * 4, max_result_bytes=10) == '"éééé"'.encode()  # 10 bytes
    with pytest.raises(runner.ResultTooLarge) as info:
        encode("é" * 5, max_result_bytes=11)
    assert str(info.value) == "result is 12 bytes, over the limit of 11 bytes"
    assert (info.value.size, info.value.limit) == (12, 11)


def test_zero_limit_means_unlimited():
    assert len(encode("x" * 1_000_000, max_result_bytes=0)) == 1_000_002


def test_shared_references_stop_at_the_result_cap() -> None:
    # 2**60 leaves as JSON, a few hundred bytes in memory: refused quickly by
    # counting values, not after (never) finishing the walk.
    import time

    value: list = [0]
    for _ in range(60):
        value = [value, value]
    start = time.monotonic()
    with pytest.raises(runner.ResultTooLarge) as info:
        runner.encode_result(value, 1 << 20)
    assert time.monotonic() - start < 5
    assert "more than 524288 values" in str(info.value)


def test_shared_references_are_converted_once(monkeypatch) -> None:
    # A container met again at the same depth is not walked again: the value
    # of 64 levels of [v, v] reaches the 8 MiB cap after converting one
    # container per level (it walked millions before), with the same refusal.
    walked = []
    convert_container = runner._Converter._convert_container

    def counting(self, value, depth):
        walked.append(depth)
        return convert_container(self, value, depth)

    monkeypatch.setattr(runner._Converter, "_convert_container", counting)
    value: list = [0]
    for _ in range(64):
        value = [value, value]
    with pytest.raises(runner.ResultTooLarge) as info:
        runner.encode_result(value, 8 << 20)
    assert "more than 4194304 values" in str(info.value)
    assert len(walked) <= 65, f"{len(walked)} containers walked"
    # Shared but finite: the same JSON as unshared lists.
    w = [1, 2]
    assert encode({"a": w, "b": w, "c": [w, [w]]}) == b'{"a":[1,2],"b":[1,2],"c":[[1,2],[[1,2]]]}'
