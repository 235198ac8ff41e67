"""Bulk usage streams (issue #26.7): written in chunks, what a failed call recorded is said
exactly, and the calls at once are capped (RESOURCE_EXHAUSTED beyond)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import pytest
import redis

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.api.v1 import session_control_pb2_grpc as spb_grpc
from sessiongate.service.bulk import MAX_CALLS, RECORDED_KEY
from sessiongate.store import keys
from sessiongate.usecases.usage import CHUNK_EVENTS
from tests.support import ServerThread


def event(aid: str, i: int) -> spb.UsageEvent:
    return spb.UsageEvent(event_id=f"{aid}-{i}", account_id=aid, feature="api", quantity=1)


def test_a_failed_stream_says_how_many_of_its_first_events_are_recorded(
    server: ServerThread, redis_client: redis.Redis
) -> None:
    for aid in ("acme", "broken"):
        server.accounts.UpsertAccount(apb.UpsertAccountRequest(
            account=apb.Account(account_id=aid)))
    redis_client.set(keys.usage_events("broken"), "not a zset")  # its writes fail
    good = CHUNK_EVENTS + 200
    stream = [event("acme", i) for i in range(good)] + [event("broken", i) for i in range(300)]
    with pytest.raises(grpc.RpcError) as err:
        server.sessions.RecordUsageBatches(iter([spb.UsageBatch(events=stream)]))
    assert err.value.code() != grpc.StatusCode.OK
    assert dict(err.value.trailing_metadata() or ())[RECORDED_KEY] == str(good)
    assert redis_client.xlen(keys.USAGE_STREAM) == good
    # one claim `u:<event id>` per recorded event (beside each its content digest `d:...`)
    claims = [m for m in redis_client.zrange(keys.usage_events("acme"), 0, -1)
              if m.startswith(b"u:")]
    assert len(claims) == good

    redis_client.delete(keys.usage_events("broken"))  # the retry counts each event once
    resp = server.sessions.RecordUsageBatches(iter([spb.UsageBatch(events=stream)]))
    assert (resp.accepted, resp.duplicates) == (300, good)
    assert redis_client.xlen(keys.USAGE_STREAM) == good + 300


def test_bulk_calls_beyond_the_cap_are_resource_exhausted(
    server: ServerThread, redis_client: redis.Redis
) -> None:
    server.accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(account_id="a")))
    release = threading.Event()

    def held(n: int) -> Iterator[spb.UsageEvent]:
        yield event("a", n)
        release.wait(30)

    results: list[object] = []

    def stream(n: int) -> None:
        with grpc.insecure_channel(server.addr) as ch:
            results.append(spb_grpc.SessionControlStub(ch).RecordUsageStream(held(n),
                                                                            timeout=30))

    streams = [threading.Thread(target=stream, args=(n,)) for n in range(MAX_CALLS)]
    for t in streams:
        t.start()
    try:
        time.sleep(1.0)  # the held calls have started (each holds its slot, writes nothing)
        assert all(t.is_alive() for t in streams)
        with pytest.raises(grpc.RpcError) as err:
            server.sessions.RecordUsageStream(iter([event("a", 999)]), timeout=10)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert redis_client.zcard(keys.usage_events("a")) == 0  # nothing written
    finally:
        release.set()
        for t in streams:
            t.join(30)
    assert len(results) == MAX_CALLS
    assert server.sessions.RecordUsageStream(iter([event("a", 999)])).accepted == 1
