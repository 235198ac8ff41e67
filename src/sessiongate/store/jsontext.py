"""Compact JSON text (no spaces after separators), as the account hash stores it.

One `JSONEncoder` made at import: `json.dumps(obj, separators=...)` builds a new encoder on
every call. `loads` answers as `json.loads`. `quote` is a str's text, for records written
out field by field (`codec.encode_account`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

dumps: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":")).encode
_raw_decode = json.JSONDecoder().raw_decode


def loads(text: str | bytes) -> Any:
    """`json.loads(text)`. A str that is one JSON value and nothing around it (what `dumps`
    wrote) is read by `JSONDecoder.raw_decode` alone, without `loads`' two whitespace
    matches (~2k instructions, one read per account the sweep moves); anything else goes to
    `json.loads`, its answer and its errors."""
    if type(text) is str:
        try:
            value, end = _raw_decode(text)
        except json.JSONDecodeError:
            pass
        else:
            if end == len(text):
                return value
    return json.loads(text)


# A str's JSON text, as `dumps` writes a str inside any value: `JSONEncoder.encode` answers a
# str at once, without building the encoder that a dict or a list needs.
quote: Callable[[str], str] = json.JSONEncoder().encode
