"""The account hash's own fields (issue #5, Redis memory): entries, escaping, budgets, version.

An account keeps one hash (`keys.account`): `data` and `v` as before, plus `l` (ledger,
`ledger_codec`), `h` (history), `e` (applied event ids) and `s` (seat changes). One key instead
of six saves ~100 bytes of key overhead each, and with `hash-max-ziplist-value 1024` the hash
stays in Redis's compact encoding. `h`, `e` and `s` are lists of entries, each entry led by
RS (record separator); inside an entry, fields are split by US (unit separator). Text that
could hold either is escaped (`escape`). Each list has a byte budget: beyond it, its oldest
entries go to a side key (`commit_account.lua`), so the hash stays compact however long an
account lives.

`v` is written as `0_<version>` (Python's `int()` reads it; `commit_account.lua` strips the
prefix).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sessiongate.domain.records import HistoryEntry
from sessiongate.store.jsontext import dumps

RS, US = "\x1e", "\x1f"

# Byte budgets of the hash's growing fields (entries beyond go to the side keys).
HISTORY_BYTES = 512  # ~8 transitions
EVENTS_BYTES = 384  # ~10 event ids not in the ledger (reminders): the rest in the zset
SEAT_CHANGES_BYTES = 384  # ~4 changes of a 10-user roster

VERSION_PREFIX = "0_"

_ESCAPE = re.compile("[%\x1e\x1f]")
_UNESCAPE = re.compile("%(25|1E|1F)")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_ZERO = timedelta(0)
_HISTORY_KEYS = ("at", "from", "to", "cause", "actor", "event_id")
_HISTORY_KEYSET = frozenset(_HISTORY_KEYS)


def escape(text: str) -> str:
    """`%`, RS and US as `%25`, `%1E`, `%1F`: escaped text never holds a separator."""
    return _ESCAPE.sub(lambda m: f"%{ord(m.group()):02X}", text) if _has_special(text) else text


def _has_special(text: str) -> bool:
    return "%" in text or RS in text or US in text


def unescape(text: str) -> str:
    return _UNESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text) if "%" in text else text


def text(v: str | bytes) -> str:
    return v.decode() if isinstance(v, bytes) else v


def entries(field: str | bytes | None) -> list[str]:
    """The entries of an `h`, `e` or `s` field, oldest first."""
    return [] if not field else text(field).split(RS)[1:]


# --- history ---------------------------------------------------------------------------------

def _iso(us: int) -> str:
    return (_EPOCH + timedelta(microseconds=us)).isoformat()


def _at_us(at: object) -> int | None:
    """`at` as microseconds since the epoch when that reads back as the very same text."""
    if not isinstance(at, str):
        return None
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    us = (when - _EPOCH) // timedelta(microseconds=1)
    return us if _iso(us) == at else None


def _plain(v: str) -> bool:
    """Whether `v` stands in a compact entry as it is (nothing to escape, not read as JSON)."""
    return "%" not in v and RS not in v and US not in v and not v.startswith("{")


def encode_history(entry: dict[str, Any]) -> str:
    """`<at us> US <from> US <to> US <cause> US <actor> US <event id>` (~45 bytes, JSON ~110)
    for the usual entry; anything else (other keys, other values) stays JSON."""
    us = _at_us(entry.get("at"))
    if us is not None and _HISTORY_KEYSET.issuperset(entry):
        parts = [str(us)]
        for key in _HISTORY_KEYS[1:]:
            v = entry.get(key)
            if v is None:
                parts.append("")
            elif isinstance(v, str) and _plain(v):
                parts.append(str(v))
            else:
                break
        else:
            return US.join(parts).rstrip(US)
    return dumps(entry)


def encode_entry(entry: HistoryEntry) -> str:
    """`encode_history(entry.to_dict())`, without `to_dict`'s ISO text of `at` read back
    and compared (~2 us, once per commit of the sweep): a UTC time's text is `_iso` of its
    microseconds. tests/unit/test_compact_codec.py compares the two."""
    at = entry.at
    if at.utcoffset() != _ZERO:
        return encode_history(entry.to_dict())
    frm = "" if entry.from_state is None else entry.from_state.value
    cause, actor, event_id = entry.cause, entry.actor, entry.event_id
    if not (_plain(cause) and _plain(actor) and _plain(event_id)):
        return encode_history(entry.to_dict())
    return US.join([str((at - _EPOCH) // _US), frm, entry.to_state.value, cause, actor,
                    event_id]).rstrip(US)


def decode_history(raw: str | bytes) -> dict[str, Any]:
    """An entry as `encode_history` wrote it: compact, or JSON."""
    s = text(raw)
    if s.startswith("{"):
        out: dict[str, Any] = json.loads(s)
        return out
    parts = s.split(US)
    parts += [""] * (len(_HISTORY_KEYS) - len(parts))
    at, frm, to, cause, actor, event_id = parts[: len(_HISTORY_KEYS)]
    return {"at": _iso(int(at)), "from": frm or None, "to": to or None, "cause": cause,
            "actor": actor, "event_id": event_id}


# --- applied events --------------------------------------------------------------------------

def applied_in(field: str | bytes | None, event_id: str) -> bool:
    """Whether the hash's `e` (entries `<escaped id> US <ms>`) holds `event_id`."""
    return bool(field) and f"{RS}{escape(event_id)}{US}" in text(field or "")


def in_compact_ledger(ledger: str | bytes | None, event_id: str) -> bool:
    """Whether a compact ledger (`ledger_codec`) holds `event_id` (its own idempotency record)."""
    return bool(ledger) and f"{RS}{escape(event_id)}{US}" in text(ledger or "")
