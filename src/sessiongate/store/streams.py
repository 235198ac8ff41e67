"""Redis stream replies, read once: the transport hands back Redis's own replies (RESP2 lists,
RESP3 maps), and the stream worker and the metrics scrape take them from here in one shape.

An entry is `(id, fields)`: the id as text, the fields as a dict of bytes to bytes as Redis
sent them, `{}` for an entry deleted while pending (XREADGROUP of pending ids, XAUTOCLAIM on
Redis 6.2 and XCLAIM give its id with no fields).
"""

from __future__ import annotations

from typing import Any

from sessiongate.store.transport import pairs

StreamEntry = tuple[str, dict[Any, Any]]


def text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def entries(reply: Any) -> list[StreamEntry]:
    """XRANGE's, XCLAIM's or one stream's part of XREADGROUP's entries."""
    return [(text(e[0]), dict(pairs(e[1])) if e[1] else {})
            for e in reply or () if e is not None and e[0] is not None]


def read(reply: Any) -> list[tuple[str, list[StreamEntry]]]:
    """XREAD's or XREADGROUP's reply as (stream, entries) pairs; none when it timed out (nil)."""
    if not reply:
        return []
    items = reply.items() if isinstance(reply, dict) else reply
    return [(text(stream), entries(found)) for stream, found in items]


def autoclaim(reply: Any) -> tuple[str, list[StreamEntry]]:
    """XAUTOCLAIM's reply: (the cursor to resume from, the entries claimed)."""
    return text(reply[0]), entries(reply[1])


def records(reply: Any) -> list[dict[str, Any]]:
    """XINFO CONSUMERS' or XINFO GROUPS' reply: one dict per consumer or group, its field names
    as text, values as sent (names and ids bytes, counts int, nil None)."""
    return [{text(k): v for k, v in pairs(r)} for r in reply or ()]


def pending_summary(reply: Any) -> tuple[int, str | None]:
    """XPENDING's summary form (no range): (entries pending, the smallest pending id)."""
    return int(reply[0]), None if reply[1] is None else text(reply[1])


def id_ms(entry_id: Any) -> int:
    """The milliseconds part of an entry id (its time of XADD)."""
    return int(text(entry_id).split("-", 1)[0])
