"""Compact JSON text (no spaces after separators), as the account hash stores it.

One `JSONEncoder` made at import: `json.dumps(obj, separators=...)` builds a new encoder on
every call. Decoding is `json.loads`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

dumps: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":")).encode
loads: Callable[[str | bytes], Any] = json.loads
