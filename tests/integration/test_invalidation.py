"""Invalidations reach every replica's near-cache (`Transport.subscribe`),
including a burst of them, and again after the subscription was cut."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis

from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.store.mux import Mux
from tests.integration.dunning_support import check, eventually, upsert
from tests.support import ServerThread, make_settings

CLOSED = cpb.ACCOUNT_STATE_CLOSED


@pytest.fixture
def replicas(redis_client: redis.Redis, redis_url: str) -> Iterator[list[ServerThread]]:
    # A TTL far longer than the test: only an invalidation can change a cached answer.
    servers = [ServerThread(make_settings(redis_url, near_cache_ttl=600.0)).start()
               for _ in range(2)]
    try:
        yield servers
    finally:
        for s in servers:
            s.stop()


def cached_state(srv: ServerThread, account: str) -> tuple[int, int]:
    resp = check(srv, account)
    return resp.state, resp.source


def test_a_burst_of_commits_reaches_the_other_replica(replicas: list[ServerThread]) -> None:
    a, b = replicas
    accounts = [f"burst-{i}" for i in range(60)]
    for aid in accounts:
        upsert(a, account_id=aid, users=["alice"])
        assert check(b, aid).decision == cpb.DECISION_ALLOW  # cached at b
    assert cached_state(b, accounts[0])[1] == cpb.STATE_SOURCE_NEAR_CACHE
    for aid in accounts:  # commits at a, each published: b must drop its copy of each
        upsert(a, account_id=aid, users=["alice"], state=CLOSED)
    for aid in accounts:
        assert eventually(lambda aid=aid: check(b, aid).state,  # type: ignore[misc]
                          lambda s: s == CLOSED) == CLOSED, aid


def test_the_listener_subscribes_again_after_its_connection_is_cut(
    replicas: list[ServerThread], redis_client: redis.Redis
) -> None:
    a, b = replicas
    upsert(a, account_id="acme", users=["alice"])
    assert check(b, "acme").state == cpb.ACCOUNT_STATE_ACTIVE
    before = redis_client.pubsub_numsub("sg:invalidate")[0][1]
    assert int(before) == 2  # one subscriber per replica
    assert int(redis_client.client_kill_filter(_type="pubsub")) == 2
    # Both resubscribe (with backoff); meanwhile their caches count as stale, not fresh.
    assert eventually(lambda: redis_client.pubsub_numsub("sg:invalidate")[0][1],
                      lambda n: n == 2) == 2
    assert check(b, "acme").state == cpb.ACCOUNT_STATE_ACTIVE  # cached anew
    upsert(a, account_id="acme", users=["alice"], state=CLOSED)
    assert eventually(lambda: check(b, "acme").state, lambda s: s == CLOSED) == CLOSED


@pytest.mark.parametrize("protocol", [2, 3])
def test_mux_subscribe_delivers_each_message_in_resp2_and_resp3(
    redis_client: redis.Redis, redis_url: str, protocol: int
) -> None:
    async def run() -> list[bytes]:
        sep = "&" if "?" in redis_url else "?"
        mux = client = Mux(f"{redis_url}{sep}protocol={protocol}", socket_timeout=2.0)
        got: list[bytes] = []
        sub = await mux.subscribe("test-channel", got.append)
        try:
            for i in range(100):
                await client.call("PUBLISH", "test-channel", f"m{i}")
            await client.call("PING")  # every message was published before the pong
            for _ in range(200):
                if len(got) == 100:
                    break
                await asyncio.sleep(0.01)
        finally:
            sub.close()
            await client.aclose()
        return got

    assert asyncio.run(run()) == [f"m{i}".encode() for i in range(100)]
