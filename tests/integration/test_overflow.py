"""Totals near Redis's integer limit (issue 26, item 5): a refused event writes nothing.

`record_usage.lua` once appended an event to the billing stream before the HINCRBY that
overflowed; the call answered UNAVAILABLE, and each retry billed the event again.
"""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest
import redis

from sessiongate.domain.periods import ResetPeriod, window_key
from sessiongate.store import keys
from tests.integration.test_usage import consume, event, setup
from tests.support import ServerThread

MAX = 2**63 - 1
NOW = datetime(2026, 10, 10, tzinfo=UTC)


def refused(call: object, *args: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        call(*args)  # type: ignore[operator]
    assert "feature" in (err.value.details() or ""), err.value.details()
    return err.value.code()  # type: ignore[no-any-return]


def test_usage_that_would_overflow_a_total_is_refused_before_any_write(
    server: ServerThread, redis_client: redis.Redis
) -> None:
    server.clock.set(NOW)
    setup(server)
    assert server.sessions.RecordUsage(event("first", 5)).duplicate is False
    month = keys.usage("acme", "2026-10")
    redis_client.hset(month, "t:exports", MAX - 3)
    stream = redis_client.xlen(keys.USAGE_STREAM)
    claims = redis_client.zcard(keys.usage_events("acme"))

    for _ in range(2):  # the retry of a refused event is refused again, and bills nothing
        assert refused(server.sessions.RecordUsage, event("big", 4)) == (
            grpc.StatusCode.OUT_OF_RANGE)
        assert redis_client.xlen(keys.USAGE_STREAM) == stream
        assert redis_client.zcard(keys.usage_events("acme")) == claims
        assert int(redis_client.hget(month, "t:exports") or 0) == MAX - 3
    # Within one call, the events add up: 2 + 2 do not fit in 3, so neither is written.
    assert refused(server.sessions.RecordUsageStream,
                   iter([event("a", 2), event("b", 2)])) == grpc.StatusCode.OUT_OF_RANGE
    assert redis_client.xlen(keys.USAGE_STREAM) == stream
    # Exactly up to the limit is fine, and a duplicate is still a duplicate there.
    assert server.sessions.RecordUsage(event("fits", 3)).duplicate is False
    assert int(redis_client.hget(month, "t:exports") or 0) == MAX
    assert server.sessions.RecordUsage(event("fits", 3)).duplicate is True
    assert redis_client.xlen(keys.USAGE_STREAM) == stream + 1


def test_a_wrong_typed_usage_key_is_a_failed_precondition_and_writes_nothing(
    server: ServerThread, redis_client: redis.Redis
) -> None:
    server.clock.set(NOW)
    setup(server)
    redis_client.hset(keys.usage("acme", "2026-10"), "n:exports", "many")
    with pytest.raises(grpc.RpcError) as err:
        server.sessions.RecordUsage(event("x", 1))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "usage:" not in (err.value.details() or "")  # no key names in the answer
    assert redis_client.exists(keys.USAGE_STREAM) == 0
    assert redis_client.zcard(keys.usage_events("acme")) == 0


def test_consumption_that_would_overflow_its_counter_is_out_of_range(
    server: ServerThread, redis_client: redis.Redis
) -> None:
    server.clock.set(NOW)
    setup(server)
    counter = keys.quota("acme", "pool", window_key(ResetPeriod.WEEK, NOW))
    redis_client.set(counter, MAX - 1)
    assert refused(consume, server, "pool", 2, "c1") == grpc.StatusCode.OUT_OF_RANGE
    assert int(redis_client.get(counter) or 0) == MAX - 1
    assert redis_client.zcard(keys.usage_events("acme")) == 0  # the event id is not claimed
    assert consume(server, "pool", 1, "c1").over_soft_limit is True
    assert int(redis_client.get(counter) or 0) == MAX
