"""`jsontext`: the C encoder and scanner made once give `json`'s own text and errors."""

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


@pytest.mark.parametrize("fast", [True, False], ids=["accelerated", "pure-python"])
def test_same_text_and_values_as_json(fast: bool) -> None:
    dumps = jsontext.dumps if fast else jsontext._dumps_with(None)
    loads = jsontext.loads if fast else jsontext._loads_with(None)
    assert (dumps == jsontext._ENCODER.encode) is not fast  # CPython has the C module
    assert (loads is json.loads) is not fast
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
