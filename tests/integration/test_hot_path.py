"""The near-cache hit path: remembered answers change no answer.

CheckSession remembers a prebuilt answer per user for a near-cache snapshot when its verdict
depends on the snapshot alone (service/answer_memo.py), and copies it. These tests
compare remembered answers with the first computed ones, and show that an update, an
expiring override and a session opened on top change what they must.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import grpc
import pytest
import redis

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.domain.periods import month_name
from sessiongate.domain.sessions import parse_session_id
from sessiongate.service import answer_memo, session_control
from sessiongate.service.convert import ts
from sessiongate.service.wire import parse_check
from sessiongate.store import keys
from tests.support import ServerThread, make_settings

NEAR = cpb.STATE_SOURCE_NEAR_CACHE


@pytest.fixture
def srv(redis_client: redis.Redis, redis_url: str) -> Iterator[ServerThread]:
    # A long TTL: the near-cache answers every repeated check even on a busy machine.
    server = ServerThread(make_settings(redis_url, near_cache_ttl=600.0)).start()
    try:
        yield server
    finally:
        server.stop()


def check(srv: ServerThread, account: str, user: str,
          no_session: bool = True) -> spb.CheckSessionResponse:
    return srv.sessions.CheckSession(
        spb.CheckSessionRequest(account_id=account, user_id=user, no_session=no_session))


def upsert(srv: ServerThread, **fields: object) -> None:
    srv.accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(**fields)))


def ageless(resp: spb.CheckSessionResponse) -> spb.CheckSessionResponse:
    out = spb.CheckSessionResponse()
    out.CopyFrom(resp)
    out.ClearField("state_age_ms")
    return out


def poll(what: str, cond: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.parametrize("state", [cpb.ACCOUNT_STATE_ACTIVE, cpb.ACCOUNT_STATE_SUSPENDED,
                                   cpb.ACCOUNT_STATE_CLOSED])
def test_remembered_answers_equal_the_computed_ones(srv: ServerThread, state: int) -> None:
    upsert(srv, account_id="acme", users=["alice", "bob"])
    if state != cpb.ACCOUNT_STATE_ACTIVE:  # an override without expiry: the same at any time
        srv.accounts.OverrideState(apb.OverrideStateRequest(
            account_id="acme", state=state, reason="test"))
    for account, user in [("acme", "alice"), ("acme", "bob"), ("acme", "mallory"),
                          ("nobody", "alice")]:
        check(srv, account, user)  # may come from Redis
        first = check(srv, account, user)  # computed from the near-cache entry
        assert first.source == NEAR
        for _ in range(3):  # remembered verdict, prebuilt answer
            again = check(srv, account, user)
            assert ageless(again) == ageless(first)
    assert check(srv, "acme", "mallory").reason == cpb.REASON_USER_NOT_AUTHORIZED
    assert "mallory" in check(srv, "acme", "mallory").message
    assert "bob" not in check(srv, "acme", "alice").message


def test_an_update_is_answered_at_once_not_the_remembered_verdict(srv: ServerThread) -> None:
    upsert(srv, account_id="acme", users=["alice", "bob"])
    for _ in range(3):
        assert check(srv, "acme", "alice").decision == cpb.DECISION_ALLOW
    upsert(srv, account_id="acme", users=["bob"])
    poll("alice refused", lambda: check(srv, "acme", "alice").reason
         == cpb.REASON_USER_NOT_AUTHORIZED)
    after = check(srv, "acme", "alice")
    assert (after.source, after.account_version) == (NEAR, 2)


def test_an_expiring_override_is_decided_by_the_clock_at_each_check(srv: ServerThread) -> None:
    upsert(srv, account_id="acme", users=["alice"])
    srv.accounts.OverrideState(apb.OverrideStateRequest(
        account_id="acme", state=cpb.ACCOUNT_STATE_SUSPENDED, reason="chargeback",
        expires_at=ts(srv.clock.now() + timedelta(hours=1))))
    for _ in range(3):
        r = check(srv, "acme", "alice")
        assert r.decision == cpb.DECISION_DENY
    version = r.account_version
    srv.clock.advance(timedelta(hours=2))  # the override lapses; the snapshot does not change
    r = check(srv, "acme", "alice")
    assert (r.decision, r.state, r.source, r.account_version) == (
        cpb.DECISION_ALLOW, cpb.ACCOUNT_STATE_ACTIVE, NEAR, version)


def test_a_session_opened_on_a_remembered_verdict_stays_its_own(srv: ServerThread) -> None:
    upsert(srv, account_id="acme", users=["alice"])
    for _ in range(3):
        plain = check(srv, "acme", "alice")
    opened = [check(srv, "acme", "alice", no_session=False) for _ in range(2)]
    assert all(o.session_id and o.HasField("session_expires_at") for o in opened)
    assert opened[0].session_id != opened[1].session_id
    again = check(srv, "acme", "alice")
    assert not again.session_id and not again.HasField("session_expires_at")
    assert ageless(again) == ageless(plain)


def test_a_prebuilt_answer_skips_nothing_it_must_not(srv: ServerThread) -> None:
    """The prebuilt answer is looked up before the ids are checked (it exists only for ids
    that were valid), so a malformed id still gets INVALID_ARGUMENT naming its field; a
    feature check, or a login that opens a session, never gets it."""
    upsert(srv, account_id="acme", users=["alice"])  # no plan: no feature is entitled
    for _ in range(3):
        plain = check(srv, "acme", "alice")
    for account, user, field in [("acme", "alice ", "user_id"), ("acme ", "alice", "account_id"),
                                 ("acme", "", "user_id"), ("acme", "al\x00ice", "user_id")]:
        with pytest.raises(grpc.RpcError) as err:
            check(srv, account, user)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in (err.value.details() or "")
    with pytest.raises(grpc.RpcError) as err:
        srv.sessions.CheckSession(spb.CheckSessionRequest(
            account_id="acme", user_id="alice", feature="bad feature\n", no_session=True))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    feature = srv.sessions.CheckSession(spb.CheckSessionRequest(
        account_id="acme", user_id="alice", feature="export", no_session=True))
    assert (feature.decision, plain.decision) == (cpb.DECISION_DENY, cpb.DECISION_ALLOW)
    opened = check(srv, "acme", "alice", no_session=False)
    assert opened.session_id and opened.decision == cpb.DECISION_ALLOW
    assert ageless(check(srv, "acme", "alice")) == ageless(plain)


def test_a_remembered_login_opens_its_session_or_is_refused_as_the_computed_one(
        srv: ServerThread) -> None:
    """Session-opening logins whose verdict the entry remembers open their session on the
    hot path (`_open_remembered`): each its own session, and once every seat is taken the
    same refusal as the computed path gives."""
    upsert(srv, account_id="acme", users=["alice", "bob", "carol"], seat_limit=1)
    opened = [check(srv, "acme", "alice", no_session=False) for _ in range(3)]
    assert all(o.decision == cpb.DECISION_ALLOW and o.session_id for o in opened)
    assert len({o.session_id for o in opened}) == 3
    for o in opened:  # alice leaves: her seat is free again
        srv.sessions.EndSession(spb.EndSessionRequest(session_id=o.session_id))
    assert check(srv, "acme", "bob", no_session=False).session_id  # bob takes it
    computed = check(srv, "acme", "carol", no_session=False)  # never admitted: computed
    remembered = check(srv, "acme", "alice", no_session=False)  # admitted before: hot path
    for r in (computed, remembered):
        assert (r.decision, r.reason, r.source) == (
            cpb.DECISION_DENY, cpb.REASON_SEAT_LIMIT_REACHED, NEAR)
        assert r.message == "all 1 seats of account 'acme' are in use" and not r.session_id
    assert ageless(remembered) == ageless(computed)


CHECK = "/sessiongate.api.v1.SessionControl/CheckSession"


def raw_check(srv: ServerThread, body: bytes) -> spb.CheckSessionResponse:
    """CheckSession with the request's bytes as given (the client serializes nothing)."""
    assert srv.channel is not None
    call = srv.channel.unary_unary(CHECK, request_serializer=None,
                                   response_deserializer=spb.CheckSessionResponse.FromString)
    return call(body, timeout=10)  # type: ignore[no-any-return]


def raw_keys(srv: ServerThread) -> dict[bytes, object]:
    assert srv.app.session_control is not None
    return srv.app.session_control.answers.raw_keys  # type: ignore[return-value]


def test_request_bytes_seen_before_are_answered_from_prebuilt_bytes(
        srv: ServerThread, monkeypatch: pytest.MonkeyPatch) -> None:
    upsert(srv, account_id="acme", users=["alice"])
    canonical = spb.CheckSessionRequest(account_id="acme", user_id="alice",
                                        no_session=True).SerializeToString()
    # The same question in other bytes: the fields in reverse order (a merge of three).
    reordered = b"".join(spb.CheckSessionRequest(**f).SerializeToString() for f in (
        {"no_session": True}, {"user_id": "alice"}, {"account_id": "acme"}))
    assert reordered != canonical
    raw_check(srv, canonical)  # may come from Redis
    first = raw_check(srv, canonical)
    assert (first.decision, first.source) == (cpb.DECISION_ALLOW, NEAR)
    assert set(raw_keys(srv)) == {canonical}
    for body in (reordered, reordered, canonical, reordered):
        assert ageless(raw_check(srv, body)) == ageless(first)
    assert set(raw_keys(srv)) == {canonical, reordered}
    parsed: list[bytes] = []  # what reaches the method (which parses the bytes)
    monkeypatch.setattr(session_control, "parse_check",
                        lambda raw: parsed.append(raw) or parse_check(raw))
    for body in (reordered, canonical):
        assert ageless(raw_check(srv, body)) == ageless(first)
    assert parsed == []  # answered before the method, from the bytes
    upsert(srv, account_id="acme", users=["bob"])  # both byte forms see the update
    for body in (canonical, reordered):
        poll("alice refused", lambda body=body: raw_check(srv, body).reason  # type: ignore[misc]
             == cpb.REASON_USER_NOT_AUTHORIZED)
        assert raw_check(srv, body).account_version == 2
    # The update dropped the entry and its memo: the next check was parsed and answered
    # anew; the other byte form shares the new memo key, so it need not be parsed again.
    assert parsed and parsed[0] == canonical


def test_bytes_that_are_no_request_are_refused_naming_it(srv: ServerThread) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        raw_check(srv, b"\xff\xff\xff")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("request: not a CheckSessionRequest")
    assert raw_keys(srv) == {}


def test_feature_checks_and_bad_ids_are_not_remembered_by_their_bytes(srv: ServerThread
                                                                      ) -> None:
    upsert(srv, account_id="acme", users=["alice"])
    feature = spb.CheckSessionRequest(account_id="acme", user_id="alice", no_session=True,
                                      feature="reports").SerializeToString()
    for _ in range(3):
        raw_check(srv, feature)
    bad = spb.CheckSessionRequest(account_id="", user_id="alice").SerializeToString()
    with pytest.raises(grpc.RpcError) as caught:
        raw_check(srv, bad)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raw_keys(srv) == {}


def test_the_remembered_request_bytes_are_bounded(srv: ServerThread,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(answer_memo, "MAX_RAW_KEYS", 2)
    upsert(srv, account_id="acme", users=["alice", "bob", "carol"])
    for user in ("alice", "bob", "carol", "alice", "mallory"):
        for _ in range(2):
            got = check(srv, "acme", user)
        assert got.decision == (cpb.DECISION_DENY if user == "mallory" else cpb.DECISION_ALLOW)
        assert len(raw_keys(srv)) <= 2


def test_long_requests_and_unknown_fields_are_answered_but_not_remembered(
        srv: ServerThread) -> None:
    """A caller picks the bytes: only short requests of known fields key the memo, so no
    key is larger than `MAX_RAW_KEY` (unknown fields are legal and would be megabytes)."""
    upsert(srv, account_id="acme", users=["alice"])
    plain = spb.CheckSessionRequest(account_id="acme", user_id="alice",
                                    no_session=True).SerializeToString()
    unknown = plain + b"\xc2\x3e\x03abc"  # field 1000, 3 bytes: no such field
    padded = plain + b"\xc2\x3e" + bytes([0x80 | 0x10, 0x04]) + b"y" * 528  # 528 bytes
    assert len(padded) > answer_memo.MAX_RAW_KEY
    for body in (unknown, padded, unknown, padded):
        r = raw_check(srv, body)
        assert (r.decision, r.reason) == (cpb.DECISION_ALLOW, cpb.REASON_OK)
    assert raw_keys(srv) == {}
    raw_check(srv, plain)
    assert set(raw_keys(srv)) == {plain}


def sessionless(resp: spb.CheckSessionResponse) -> spb.CheckSessionResponse:
    out = ageless(resp)
    out.ClearField("session_id")
    out.ClearField("session_expires_at")
    return out


def test_a_login_seen_before_opens_its_session_on_the_raw_path_as_the_parsed_path_does(
        srv: ServerThread, redis_client: redis.Redis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An allowed login of an account without seat limit, its bytes seen before, is answered
    from the remembered bytes with its own session appended (no parse): the same answer as
    the parsed path's but for the session id and the age, the expiry the session TTL from
    the clock; each session is queued, renewable by Heartbeat and freed by EndSession."""
    upsert(srv, account_id="acme", users=["alice"])
    body = spb.CheckSessionRequest(account_id="acme", user_id="alice").SerializeToString()
    first = raw_check(srv, body)  # may come from Redis
    computed = raw_check(srv, body)  # parsed: the near-cache's answer kept without session
    assert (computed.decision, computed.source) == (cpb.DECISION_ALLOW, NEAR)
    assert computed.session_id
    parsed: list[bytes] = []
    monkeypatch.setattr(session_control, "parse_check",
                        lambda raw: parsed.append(raw) or parse_check(raw))
    expires = ts(srv.clock.now() + timedelta(seconds=srv.app.settings.session_ttl))
    answers = [raw_check(srv, body) for _ in range(3)]
    assert parsed == []  # answered before the method, from the bytes
    ids = {first.session_id, computed.session_id}
    for got in answers:
        expected = spb.CheckSessionResponse()
        expected.CopyFrom(computed)
        expected.session_id = got.session_id
        expected.state_age_ms = got.state_age_ms
        assert got == expected  # every field as the parsed path's, but the session's own
        assert got.session_expires_at == expires == computed.session_expires_at
        assert got.session_id not in ids
        ids.add(got.session_id)
        ref = parse_session_id("session_id", got.session_id)
        # "acme US alice US" is 11 bytes: one filler to 12, then 15 random characters
        assert (ref.account_id, ref.user_id, len(ref.nonce)) == ("acme", "alice", 16)
    for got in answers:
        beat = srv.sessions.Heartbeat(spb.HeartbeatRequest(session_id=got.session_id))
        assert beat.decision == cpb.DECISION_ALLOW and beat.expires_at == expires
        member = parse_session_id("session_id", got.session_id).member
        assert redis_client.zscore(keys.leases("acme"), member) is not None
        ended = srv.sessions.EndSession(spb.EndSessionRequest(session_id=got.session_id))
        assert ended.ended
        assert redis_client.zscore(keys.leases("acme"), member) is None
    logins = redis_client.hkeys(keys.usage("acme", month_name(srv.clock.now())))
    assert len([k for k in logins if k.startswith(b"l")]) == len(ids)  # each login recorded


def test_a_seat_limited_login_seen_before_takes_its_seat_unparsed(
        srv: ServerThread, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path opens no seat (that is one atomic Redis call): a seat-limited login's
    bytes go to the method, which takes the seat from what the bytes asked before, unparsed,
    and answers the remembered bytes with the session appended (or refuses as computed)."""
    upsert(srv, account_id="acme", users=["alice", "bob"], seat_limit=1)
    body = spb.CheckSessionRequest(account_id="acme", user_id="alice").SerializeToString()
    first = [raw_check(srv, body) for _ in range(2)]
    parsed: list[bytes] = []
    monkeypatch.setattr(session_control, "parse_check",
                        lambda raw: parsed.append(raw) or parse_check(raw))
    again = raw_check(srv, body)
    assert parsed == []
    assert again.decision == cpb.DECISION_ALLOW and again.session_id
    assert len({o.session_id for o in [*first, again]}) == 3
    for answer in (first[0], again):  # but for the session and the state's age
        answer.ClearField("session_id")
        answer.ClearField("session_expires_at")
        answer.ClearField("state_age_ms")
    assert again == first[0]
    bob = check(srv, "acme", "bob", no_session=False)
    assert (bob.decision, bob.reason) == (cpb.DECISION_DENY, cpb.REASON_SEAT_LIMIT_REACHED)
