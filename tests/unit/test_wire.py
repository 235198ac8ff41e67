"""CheckSession's answer bytes: the appended age parses as the field, prebuilt bytes carry
none, bad request bytes name the request. Envoy's CheckResponse: the age appended to its
metadata merges into it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from envoy.service.auth.v3 import external_auth_pb2 as ext

from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as pb
from sessiongate.domain.clock import to_ms
from sessiongate.domain.errors import InvalidArgument
from sessiongate.service.convert import lease_ts
from sessiongate.service.wire import (
    Prebuilt,
    age_bytes,
    age_field,
    as_wire,
    envoy_age,
    parse_check,
    session_fields,
)


def answer() -> pb.CheckSessionResponse:
    return pb.CheckSessionResponse(
        decision=cpb.DECISION_ALLOW, reason=cpb.REASON_OK, state=cpb.ACCOUNT_STATE_ACTIVE,
        message="account 'acme' is active", source=cpb.STATE_SOURCE_NEAR_CACHE,
        state_age_ms=1234, account_version=7)


@pytest.mark.parametrize("ms", [0, 1, 127, 128, 300, 9_999, 10_000, 16_384, 2**40])
def test_the_age_appended_to_prebuilt_bytes_parses_as_state_age_ms(ms: int) -> None:
    pre = Prebuilt.of(answer())
    sent, recorded = pre.answer(ms)
    got = pb.CheckSessionResponse.FromString(sent)
    expected = answer()
    expected.state_age_ms = ms
    assert got == expected
    assert sent == pre.wire + age_field(ms) == pre.wire + age_bytes(ms)
    assert recorded == (cpb.DECISION_ALLOW, cpb.REASON_OK, cpb.STATE_SOURCE_NEAR_CACHE, ms)
    assert tuple(recorded) == (got.decision, got.reason, got.source, got.state_age_ms)


def test_a_prebuilt_answer_keeps_no_age_and_is_a_copy() -> None:
    original = answer()
    pre = Prebuilt.of(original)
    assert pre.message.state_age_ms == 0 and original.state_age_ms == 1234
    assert pb.CheckSessionResponse.FromString(pre.wire) == pre.message
    original.message = "changed"
    assert pre.message.message == "account 'acme' is active"


def test_zero_age_is_written_as_proto3_writes_it() -> None:
    msg = answer()
    msg.state_age_ms = 0
    assert Prebuilt.of(answer()).answer(0)[0] == msg.SerializeToString()


def test_the_serializer_sends_bytes_as_they_are_and_serializes_messages() -> None:
    assert as_wire(b"\x08\x01") == b"\x08\x01"
    assert as_wire(answer()) == answer().SerializeToString()


def test_bytes_that_are_no_request_are_an_invalid_argument_naming_it() -> None:
    req = pb.CheckSessionRequest(account_id="acme", user_id="alice", no_session=True)
    assert parse_check(req.SerializeToString()) == req
    with pytest.raises(InvalidArgument) as caught:
        parse_check(b"\xff\xff\xff")
    assert caught.value.field == "request"


def test_a_negative_age_is_written_as_no_age_never_as_other_bytes() -> None:
    assert age_bytes(-1) == age_field(-1) == b""


@pytest.mark.parametrize("session_id", ["s", "x" * 127, "y" * 128, "z" * 400])
@pytest.mark.parametrize("expires", [
    datetime(2026, 12, 7, 3, 4, 5, 123456, tzinfo=UTC),  # seconds and nanos
    datetime(2026, 12, 7, 3, 4, 5, tzinfo=UTC),  # no nanos: proto3 omits them
    datetime(2026, 12, 7, 4, 4, 5, 1, tzinfo=timezone(timedelta(hours=1))),  # other zone
    datetime(2026, 12, 7, 3, 4, 5, 999999),  # naive: UTC, as convert.ts reads it
    datetime(2026, 12, 7, 3, 4, 5, 999),  # under a ms: no nanos
    datetime(1970, 1, 1, 0, 0, 0, 5000, tzinfo=UTC),  # second 0: no seconds field
    datetime(1969, 12, 31, 23, 59, 59, 250000, tzinfo=UTC),  # before 1970
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
])
def test_a_session_appended_to_prebuilt_bytes_is_what_protobuf_serializes(
        session_id: str, expires: datetime) -> None:
    """The raw login answer's session fields, byte for byte as the message's (field 5, then
    field 14 with `convert.lease_ts`'s Timestamp: whole ms, the lease as Redis scores it),
    and parsed back into the same message."""
    built = pb.CheckSessionResponse(session_id=session_id)
    ms = to_ms(expires if expires.tzinfo else expires.replace(tzinfo=UTC))
    built.session_expires_at.CopyFrom(lease_ts(ms))
    for _ in range(2):  # the seconds field made, then reused
        assert session_fields(session_id, ms) == built.SerializeToString()
    assert built.session_expires_at.ToMilliseconds() == ms
    kept = Prebuilt.of(answer())
    wire, answered = kept.with_session(1234, session_id, ms)
    expected = answer()
    expected.MergeFrom(built)
    assert pb.CheckSessionResponse.FromString(wire) == expected
    assert answered.state_age_ms == 1234 and answered.decision == cpb.DECISION_ALLOW


@pytest.mark.parametrize("ms", [0, 1, 1999, 2**31])
def test_the_age_appended_to_envoys_answer_merges_into_its_metadata(ms: int) -> None:
    """A second `dynamic_metadata` is merged into the first: the message built with the age."""
    built = ext.CheckResponse(status={"code": 0}, ok_response={"headers": [
        {"header": {"key": "x-sessiongate-state", "value": "ACTIVE"}}]})
    built.dynamic_metadata.update({"decision": "ALLOW", "account_version": 3})
    sent = built.SerializeToString() + envoy_age(ms)
    built.dynamic_metadata.update({"state_age_ms": ms})
    assert ext.CheckResponse.FromString(sent) == built
