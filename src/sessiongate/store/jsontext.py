"""Compact JSON text through the C accelerator's encoder and scanner, each made once.

`json.JSONEncoder.encode` builds a new C encoder on every call, `JSONDecoder.decode` runs two
whitespace regexes around the scan: an account's JSON costs 3.6 us to encode and 2.4 to
decode that way on the bench VM, 2.4 and 1.6 this way, for every account of a sweep
(docs/performance.md, eighth pass). The output and the errors are `json`'s own: anything
the fast path refuses (whitespace around a value, malformed text) goes through `json.loads`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder, scanner
from typing import Any

_ENCODER = json.JSONEncoder(separators=(",", ":"))
_make_encoder: Any = getattr(encoder, "c_make_encoder", None)  # None without the C module
_make_scanner: Any = getattr(scanner, "c_make_scanner", None)


def _dumps_with(make: Any) -> Callable[[Any], str]:
    if make is None:  # no C accelerator (another Python): the slow path, same text
        return _ENCODER.encode
    # markers=None: no cycle check (what is encoded here is built here, never cyclic).
    chunks = make(None, _ENCODER.default, encoder.encode_basestring_ascii, None, ":", ",",
                  False, False, True)

    def dumps(obj: Any) -> str:
        """`json.dumps(obj, separators=(",", ":"))`."""
        return "".join(chunks(obj, 0))
    return dumps


dumps = _dumps_with(_make_encoder)


def _loads_with(make: Any) -> Callable[[str], Any]:
    if make is None:
        return json.loads
    scan = make(json.JSONDecoder())

    def loads(text: str) -> Any:
        """`json.loads(text)` of a str."""
        try:
            obj, end = scan(text, 0)
        except StopIteration:
            return json.loads(text)  # raises its JSONDecodeError
        return obj if end == len(text) else json.loads(text)
    return loads


loads = _loads_with(_make_scanner)
