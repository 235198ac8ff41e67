"""`jsontext`: `json`'s own compact text and errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sessiongate.store import jsontext

VALUES: list[Any] = [
    {"id": "a", "users": ["ü", "x\"y"], "n": 12000, "f": 1.5, "none": None, "t": True,
     "nested": {"k": [1, {"z": "\x1e\x1f%"}]}},
    [], {}, "text", 0, -3, 2.25, None, False, "✓ \u2028",
]


def test_same_text_and_values_as_json() -> None:
    dumps, loads = jsontext.dumps, jsontext.loads
    for v in VALUES:
        text = dumps(v)
        assert text == json.dumps(v, separators=(",", ":"))
        assert loads(text) == v == json.loads(text)
    assert loads(' {"a": 1} \n') == {"a": 1}  # whitespace: json.loads' answer


@pytest.mark.parametrize("bad", ['{"a":1} x', '{"a":', "", "nan?", '{"a":1}{}'])
def test_malformed_text_raises_jsons_error(bad: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        jsontext.loads(bad)


def test_what_json_cannot_encode_raises_its_type_error() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        jsontext.dumps({"a": object()})


def test_only_jsons_public_api() -> None:
    """No private C constructor of CPython's json (`c_make_encoder`, `c_make_scanner`)."""
    import inspect

    assert "c_make_" not in inspect.getsource(jsontext)
