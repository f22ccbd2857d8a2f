"""The SQLite backend's JSON (orjson): the values the json module wrote read back the same,
NaN and Infinity are stored as null (as the PostgreSQL backend stores them), values JSON has
no form for are their `str` (as `default=str` made them), and text the json module wrote
(NaN included) still reads."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np

from factbridge.backends.storage.sqlite import SQLiteStorage, _dumps, _loads


@dataclass
class _Point:
    x: int


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def test_values_read_back_as_the_json_module_wrote_them() -> None:
    docs = [
        {"text": "Bộ Y tế nói 50% “sai” ខ្ញុំគិតថា \u2028 \"quoted\" \\ /", "n": 3, "x": 0.1 + 0.2, "tiny": 1e-05, "big": 1.5e300, "neg": -0.0,
         "nested": {"list": [1, 2.5, None, True, False, "s"], "empty": {}, "tuple": (1, 2)}, "2": "int key below"},
        {1: "an int key", 2.5: "a float key", False: "a bool key", None: "a None key"},
        {"when": datetime(2026, 3, 1, 7, 30, tzinfo=UTC), "day": date(2026, 3, 1), "point": _Point(3), "set": {"only"},
         "f64": np.float64(0.25), "f32": np.float32(0.5), "i64": np.int64(7), "array": np.arange(3)},
        {"huge": 2**80, "also": [1, 2]},
        [],
        "a string",
    ]
    for doc in docs:
        assert _loads(_dumps(doc)) == json.loads(_json(doc)), doc
    assert isinstance(_loads(_dumps({"f64": np.float64(0.25)}))["f64"], float)
    assert _loads(_dumps({"when": datetime(2026, 3, 1, tzinfo=UTC)})) == {"when": "2026-03-01 00:00:00+00:00"}  # str(), as before


def test_nan_and_infinity_are_stored_as_null_and_old_text_still_reads() -> None:
    assert _loads(_dumps({"a": math.nan, "b": [math.inf, -math.inf, 1.0]})) == {"a": None, "b": [None, None, 1.0]}
    again = _loads(json.dumps({"a": math.nan, "b": -math.inf, "c": "x"}))  # the json module's NaN and -Infinity tokens
    assert math.isnan(again["a"]) and again["b"] == -math.inf and again["c"] == "x"


def test_documents_round_trip_through_the_store(tmp_path: Path) -> None:
    store = SQLiteStorage(f"sqlite:///{tmp_path / 'docs.db'}")
    store.migrate()
    try:
        docs = {"a": {"v": 0.30000000000000004, "t": "ខ្ញុំ", "l": [1, None]}, "b": {"n": math.nan}}
        store.put_docs("org", "things", [(k, v, None) for k, v in docs.items()])
        got = store.get_docs("org", "things", ["a", "b"])
        assert got == {"a": docs["a"], "b": {"n": None}}
        # a document the json module wrote (before this backend wrote orjson's): NaN included
        store._write(lambda c: c.execute("UPDATE docs SET doc=? WHERE id='b'", (json.dumps({"n": math.nan, "m": 1}),)))
        assert math.isnan(store.get_docs("org", "things", ["b"])["b"]["n"])
        assert dict(store.list_docs("org", "things", order="id"))["a"] == docs["a"]
    finally:
        store.close()
