"""Compact JSON text (no spaces after separators), as the account hash stores it.

One `JSONEncoder` made at import: `json.dumps(obj, separators=...)` builds a new encoder on
every call. Decoding is `json.loads`. `quote` is a str's text, for records written out field
by field (`codec.encode_account`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

dumps: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":")).encode
loads: Callable[[str | bytes], Any] = json.loads
# A str's JSON text, as `dumps` writes a str inside any value: `JSONEncoder.encode` answers a
# str at once, without building the encoder that a dict or a list needs.
quote: Callable[[str], str] = json.JSONEncoder().encode
