"""CheckSession's hot path on the wire: request bytes in, prebuilt response bytes out.

A remembered near-cache answer differs from the last one only in its state's age. Parsing
the request into a message, reading its fields, copying the prebuilt message, setting the
age and serializing it cost 1.35-1.52 us per check in a tight loop; a dict lookup by the
request's bytes and the prebuilt bytes plus the age field 0.54 us (in the server: 0.87 ->
0.94 of the floor's throughput: docs/performance.md, row "CheckSession served raw"). So it is
registered without a request deserializer (`MethodTable.raw`): its handler gets the bytes,
answers a request it has parsed before from the bytes it prebuilt for it, and parses the
others itself.

Appending the age is valid protobuf: a parser takes fields in any order, and the prebuilt
bytes carry no age of their own (proto3 omits a zero). A login that opens a session differs
from its remembered answer only by the session: its id and expiry are appended the same way
(`Prebuilt.with_session`), its records queued on the batch writer by the servicer.

Envoy's ext_authz Check is answered the same way (its requests parsed, its responses bytes
or messages: `as_wire`): a remembered CheckResponse differs from the last only in the
`state_age_ms` of its metadata (a Struct), appended as a second `dynamic_metadata`, which a
parser merges into the first: one more entry of the Struct's map (`envoy_age`).
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

from envoy.service.auth.v3 import external_auth_pb2 as ext
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from sessiongate.api.v1 import session_control_pb2 as pb
from sessiongate.domain.errors import InvalidArgument

_FIELDS = pb.CheckSessionResponse.DESCRIPTOR.fields_by_name
_AGE_TAG = (_FIELDS["state_age_ms"].number << 3) | 0  # wire type 0: varint
# Wire type 2 (length-delimited): a string, an embedded message.
_SESSION_ID_TAG = bytes(((_FIELDS["session_id"].number << 3) | 2,))
_EXPIRES_TAG = bytes(((_FIELDS["session_expires_at"].number << 3) | 2,))


def varint(n: int) -> bytes:
    """`n` (>= 0) as a protobuf varint."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def age_field(ms: int) -> bytes:
    """`state_age_ms = ms` as serialized bytes (nothing for 0, as proto3 writes it)."""
    if ms <= 0:
        return b""
    return bytes((_AGE_TAG,)) + varint(ms)


# Length prefixes of up to 127 bytes: one byte each (a session id, a Timestamp).
_LENGTHS = [bytes((n,)) for n in range(0x80)]
# A Timestamp's fields (google/protobuf/timestamp.proto): seconds (1), nanos (2), varints.
_SECONDS_TAG, _NANOS_TAG = b"\x08", b"\x10"
# The nanos field of each whole ms (proto3 writes no field for 0).
_MS_NANOS = [_NANOS_TAG + varint(ms * 1_000_000) if ms else b"" for ms in range(1000)]


class _Second(NamedTuple):
    """The seconds field last written, and its second: expiries of one second share it."""
    second: int
    field: bytes


_last_second = _Second(-1, b"")


def session_fields(session_id: str, expires_ms: int) -> bytes:
    """`session_id` and `session_expires_at` as serialized bytes, the expiry in Unix ms (the
    session's lease as Redis scores it; `convert.lease_ts`, the parsed path's). The
    Timestamp written by hand, byte for byte what `SerializeToString` writes (a upb message
    per login was 3 % of the server's time: docs/performance.md, "Session fields written by
    hand")."""
    global _last_second
    sid = session_id.encode()
    second, ms = divmod(expires_ms, 1000)
    last = _last_second
    if last.second != second:
        if second <= 0:  # before 1970 (never a lease): the message's own encoding
            stamp = Timestamp(seconds=second, nanos=ms * 1_000_000).SerializeToString()
            return _with_stamp(sid, stamp)
        last = _last_second = _Second(second, _SECONDS_TAG + varint(second))
    return _with_stamp(sid, last.field + _MS_NANOS[ms])


def _with_stamp(sid: bytes, stamp: bytes) -> bytes:
    n = len(sid)
    return b"".join((_SESSION_ID_TAG, _LENGTHS[n] if n < 0x80 else varint(n), sid,
                     _EXPIRES_TAG, _LENGTHS[len(stamp)], stamp))


_KEPT_AGES = 10_000  # ms: made once, for a near-cache TTL of up to 10 s
_AGE_FIELDS = [age_field(ms) for ms in range(_KEPT_AGES)]


def age_bytes(ms: int) -> bytes:
    """`age_field(ms)`, made once for the usual ages."""
    return _AGE_FIELDS[ms] if 0 <= ms < _KEPT_AGES else age_field(ms)


class Answered(NamedTuple):
    """What the metrics read of a CheckSession answer sent as bytes (the fields of the same
    names of `CheckSessionResponse`)."""
    decision: int
    reason: int
    source: int
    state_age_ms: int


class Sent(NamedTuple):
    """An answer a servicer method gives as bytes (a raw method's: `as_wire` sends them as
    they are), with what the metrics read of them; the `rpc` wrapper sends `wire` and
    records `answered` (its fast path's (bytes, Answered) pairs are plain tuples)."""
    wire: bytes
    answered: Answered


class Prebuilt(NamedTuple):
    """An answer kept in the answer memo (service/answer_memo.py): the message (its age
    cleared), its bytes, and the fields the metrics read."""
    message: pb.CheckSessionResponse
    wire: bytes
    decision: int
    reason: int
    source: int

    @classmethod
    def of(cls, message: pb.CheckSessionResponse) -> Prebuilt:
        kept = pb.CheckSessionResponse()
        kept.CopyFrom(message)
        kept.ClearField("state_age_ms")
        return cls(kept, kept.SerializeToString(), kept.decision, kept.reason, kept.source)

    def answer(self, age_ms: int) -> tuple[bytes, Answered]:
        """The bytes to send with this age, and what the metrics read of them."""
        return (self.wire + age_bytes(age_ms),
                Answered(self.decision, self.reason, self.source, age_ms))

    def with_session(self, age_ms: int, session_id: str, expires_ms: int
                     ) -> tuple[bytes, Answered]:
        """`answer(age_ms)` of a login that opened a session: with its id and expiry (the
        prebuilt bytes carry no session of their own: see `answer_memo.Kept.BASE`)."""
        return (b"".join((self.wire, age_bytes(age_ms), session_fields(session_id, expires_ms))),
                Answered(self.decision, self.reason, self.source, age_ms))


_DOUBLE = struct.Struct("<d")  # a Struct's number: wire type 1, 8 bytes little-endian


def _envoy_age_prefix() -> bytes:
    """A CheckResponse's bytes holding only `dynamic_metadata {state_age_ms: n}`, but n."""
    probe = ext.CheckResponse()
    probe.dynamic_metadata.update({"state_age_ms": 1.0})
    wire: bytes = probe.SerializeToString()
    assert wire.endswith(_DOUBLE.pack(1.0))
    return wire[:-_DOUBLE.size]


_ENVOY_AGE = _envoy_age_prefix()


def envoy_age(ms: int) -> bytes:
    """`dynamic_metadata.state_age_ms = ms` as CheckResponse bytes, to append to bytes
    serialized without it (a number, as `Struct.update` stores it)."""
    return _ENVOY_AGE + _DOUBLE.pack(ms)


def parse_check(raw: bytes) -> pb.CheckSessionRequest:
    try:
        return pb.CheckSessionRequest.FromString(raw)
    except DecodeError as exc:
        raise InvalidArgument("request", f"not a CheckSessionRequest ({exc})") from None


def as_wire(response: Any) -> bytes:
    """The response serializer of a raw method: bytes as they are, messages serialized."""
    if response.__class__ is bytes:
        return response
    return response.SerializeToString()  # type: ignore[no-any-return]
