"""Redis Cluster key slots, and the bucket hash tags that spread accounts across them.

Every account belongs to one of `BUCKETS` buckets. Its keys, and the bucket's shared index
and outbox, carry the bucket's hash tag, so a Lua script that commits an account *and*
indexes it touches one slot, on a single Redis and on a Cluster alike. Tags are chosen so
that bucket i lands in slot range i of BUCKETS equal ranges: buckets spread evenly over the
masters whatever their count. BUCKETS is part of the data layout: changing it needs a
migration.
"""

from __future__ import annotations

import zlib
from functools import cache

BUCKETS = 64
SLOTS = 16384


def _crc16_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_TABLE = _crc16_table()


def crc16(data: bytes) -> int:
    """CRC16/XMODEM, the hash of Redis Cluster key slots."""
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[((crc >> 8) ^ b) & 0xFF]
    return crc


def key_slot(key: str) -> int:
    """The cluster slot of a key, honouring `{hash tags}` as Redis does."""
    raw = key.encode()
    start = raw.find(b"{")
    if start >= 0:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1 : end]
    return crc16(raw) % SLOTS


@cache
def bucket_tag(bucket: int) -> str:
    """A hash tag (with braces) whose slot falls in the bucket's share of the slot space."""
    lo = bucket * SLOTS // BUCKETS
    hi = (bucket + 1) * SLOTS // BUCKETS
    n = 0
    while True:
        tag = f"b{bucket}.{n}"
        if lo <= crc16(tag.encode()) % SLOTS < hi:
            return "{" + tag + "}"
        n += 1


def bucket_of(account_id: str) -> int:
    """Stable across processes and versions (zlib.crc32, not Python's salted hash)."""
    return zlib.crc32(account_id.encode()) % BUCKETS
