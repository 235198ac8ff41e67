"""Every Redis transport (`store/transport.py`) keeps the same contract, tested the same way:
on one real redis-server (`mux.Mux`) and on a real 3-master Redis Cluster
(`cluster.ClusterTransport`, tests/cluster/cluster.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from redis.exceptions import NoScriptError, ResponseError

from sessiongate.store import streams
from sessiongate.store.client import transport
from sessiongate.store.transport import VARIABLE, Script, Transport, pairs
from tests.cluster.cluster import LocalCluster

ECHO = Script("return {KEYS[1], ARGV[1], ARGV[2]}")
FAIL = Script("return redis.error_reply('boom ' .. ARGV[1])")


@pytest.fixture(scope="module")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path_factory.mktemp("cluster")).start()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(params=["single", "cluster"])
def url(request: pytest.FixtureRequest) -> tuple[str, bool]:
    """(URL, cluster) of a flushed Redis of each kind."""
    if request.param == "single":
        request.getfixturevalue("redis_client")  # flushed
        return request.getfixturevalue("redis_url"), False
    local: LocalCluster = request.getfixturevalue("local_cluster")
    local.flush()
    return local.url, True


def run(url: tuple[str, bool], body: Callable[[Transport], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        t = transport(url[0], cluster=url[1])
        try:
            async with asyncio.timeout(20):
                return await body(t)
        finally:
            await t.aclose()
    return asyncio.run(main())


def test_a_command_answers_as_redis_and_raises_its_error(url: tuple[str, bool]) -> None:
    async def body(t: Transport) -> Any:
        assert await t.call("SET", "{a}k", "v") == b"OK"
        assert await t.call("GET", "{a}k") == b"v"
        assert await t.call("HSET", "{a}h", "f", 1, "g", 2.5) == 2
        assert sorted(pairs(await t.call("HGETALL", "{a}h"))) == [(b"f", b"1"), (b"g", b"2.5")]
        await t.call("ZADD", "{a}z", 1, "m", 2, "n")
        assert pairs(await t.call("ZRANGEBYSCORE", "{a}z", "-inf", "+inf", "WITHSCORES")) == [
            (b"m", b"1"), (b"n", b"2")]
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await t.call("HGET", "{a}k", "f")
    run(url, body)


def test_many_answers_in_order_with_errors_in_their_places(url: tuple[str, bool]) -> None:
    async def body(t: Transport) -> list[Any]:
        await t.call("SET", "{a}s", "x")
        return await t.many([("INCR", "{a}n"), ("HGET", "{a}s", "f"), ("INCR", "{a}n"),
                             ("GET", "{b}other")])
    got = run(url, body)
    assert got[0] == 1 and got[2] == 2 and got[3] is None
    assert isinstance(got[1], ResponseError)


def test_evalsha_loads_the_script_after_a_flush_and_raises_a_lua_error(
        url: tuple[str, bool]) -> None:
    async def body(t: Transport) -> None:
        assert await t.evalsha(ECHO, ["{a}k"], ["x", 1]) == [b"{a}k", b"x", b"1"]
        await t.call("SCRIPT", "FLUSH")
        assert await t.evalsha(ECHO, ["{a}k"], ["y", 2], hold=True) == [b"{a}k", b"y", b"2"]
        with pytest.raises(ResponseError, match="boom 3"):
            await t.evalsha(FAIL, ["{a}k"], [3])
    run(url, body)


def test_evalsha_many_reloads_and_keeps_errors_in_their_places(url: tuple[str, bool]) -> None:
    async def body(t: Transport) -> list[Any]:
        await t.evalsha(ECHO, ["{a}k"], ["warm", 0])
        await t.call("SCRIPT", "FLUSH")
        got = await t.evalsha_many(ECHO, [(["{a}k"], ["x", 1]), (["{b}k"], ["y", 2])])
        bad = await t.evalsha_many(FAIL, [(["{a}k"], [1]), (["{b}k"], [2])])
        return [*got, *bad]
    got = run(url, body)
    assert got[:2] == [[b"{a}k", b"x", b"1"], [b"{b}k", b"y", b"2"]]
    assert all(isinstance(e, ResponseError) and not isinstance(e, NoScriptError)
               for e in got[2:])


def test_a_prepared_call_is_the_call_with_its_arguments_given_whole(
        url: tuple[str, bool]) -> None:
    async def body(t: Transport) -> list[Any]:
        call = t.prepare(ECHO, ["{a}k%s"], [VARIABLE, "100%"])
        return [await call("v%d"), await call(7), await t.evalsha(ECHO, ["{a}k%s"],
                                                                  ["v%d", "100%"])]
    got = run(url, body)
    assert got[0] == got[2] == [b"{a}k%s", b"v%d", b"100%"]
    assert got[1] == [b"{a}k%s", b"7", b"100%"]


def test_concurrent_held_calls_each_get_their_own_reply(url: tuple[str, bool]) -> None:
    async def body(t: Transport) -> list[Any]:
        return list(await asyncio.gather(*(t.evalsha(ECHO, [f"{{a}}{i}"], [i, i], hold=True)
                                           for i in range(200))))
    got = run(url, body)
    assert got == [[f"{{a}}{i}".encode(), b"%d" % i, b"%d" % i] for i in range(200)]


def test_subscribe_delivers_each_message_until_closed(url: tuple[str, bool]) -> None:
    async def body(t: Transport) -> list[Any]:
        got: list[Any] = []
        sub = await t.subscribe("contract-channel", got.append)
        for i in range(5):
            await t.call("PUBLISH", "contract-channel", f"m{i}")
        async with asyncio.timeout(5):
            while len(got) < 5:
                await asyncio.sleep(0.01)
        sub.close()
        error = await asyncio.wait_for(sub.lost, 5)
        assert isinstance(error, Exception)
        return got
    assert run(url, body) == [f"m{i}".encode() for i in range(5)]


def test_scan_finds_each_matching_key_of_the_type_on_every_node(
        url: tuple[str, bool]) -> None:
    """Keys under 60 hash tags (all three masters of the cluster): every hash matching the
    pattern is found once, no string, no hash of another name."""
    async def body(t: Transport) -> list[Any]:
        await t.many([("HSET", f"{{t{i}}}:scan:h", "f", i) for i in range(60)])
        await t.many([("SET", f"{{t{i}}}:scan:s", i) for i in range(60)])
        await t.call("HSET", "{t0}:other:h", "f", 0)
        return [k async for k in t.scan("*:scan:*", "hash", count=7)]
    got = run(url, body)
    assert sorted(got) == sorted(f"{{t{i}}}:scan:h".encode() for i in range(60))


def test_which_transport_spreads_keys(url: tuple[str, bool]) -> None:
    async def body(t: Transport) -> bool:
        return t.sharded
    assert run(url, body) is url[1]


# The stream commands of the stream worker (billing/stream_worker.py) and the metrics scrape,
# their replies read by store/streams.py.

def test_a_consumer_group_reads_claims_acknowledges_and_forgets(url: tuple[str, bool]) -> None:
    s, g = "{s}stream", "group"

    async def body(t: Transport) -> None:
        create = ("XGROUP", "CREATE", s, g, "0", "MKSTREAM")
        assert await t.call(*create) == b"OK"
        with pytest.raises(ResponseError, match="BUSYGROUP"):
            await t.call(*create)
        with pytest.raises(ResponseError):  # no MKSTREAM: the stream must exist
            await t.call("XGROUP", "CREATE", "{s}none", g, "0")
        ids = [streams.text(await t.call("XADD", s, "*", "n", i, "k", "v")) for i in range(4)]
        read = streams.read(await t.call("XREADGROUP", "GROUP", g, "c1", "COUNT", 3,
                                         "BLOCK", 100, "STREAMS", s, ">"))
        assert read == [(s, [(ids[i], {b"n": b"%d" % i, b"k": b"v"}) for i in range(3)])]
        assert streams.pending_summary(await t.call("XPENDING", s, g)) == (3, ids[0])
        # Its own pending entries again (a restart under the same name), one deleted.
        await t.call("XDEL", s, ids[1])
        again = streams.read(await t.call("XREADGROUP", "GROUP", g, "c1", "STREAMS", s, "0"))
        assert again == [(s, [(ids[0], {b"n": b"0", b"k": b"v"}), (ids[1], {}),
                              (ids[2], {b"n": b"2", b"k": b"v"})])]
        # Another consumer takes over what is idle: XAUTOCLAIM with a cursor, XCLAIM JUSTID.
        cursor, claimed = streams.autoclaim(await t.call(
            "XAUTOCLAIM", s, g, "c2", 0, "0-0", "COUNT", 1))
        assert [i for i, _ in claimed] == [ids[0]] and cursor != "0-0"
        assert [streams.text(i) for i in await t.call(
            "XCLAIM", s, g, "c2", 0, ids[2], "JUSTID")] == [ids[2]]
        assert await t.call("XACK", s, g, ids[0], ids[2]) == 2
        consumers = {streams.text(c["name"]): c["pending"]
                     for c in streams.records(await t.call("XINFO", "CONSUMERS", s, g))}
        assert consumers == {"c1": 1, "c2": 0}
        assert await t.call("XGROUP", "DELCONSUMER", s, g, "c2") == 0
        group, = streams.records(await t.call("XINFO", "GROUPS", s))
        assert (streams.text(group["name"]), group["pending"],
                streams.text(group["last-delivered-id"])) == (g, 1, ids[2])
        assert streams.entries(await t.call("XRANGE", s, f"({ids[2]}", "+", "COUNT", 1)) == [
            (ids[3], {b"n": b"3", b"k": b"v"})]
        with pytest.raises(ResponseError, match="NOGROUP"):
            await t.call("XREADGROUP", "GROUP", "other", "c1", "STREAMS", s, ">")
    run(url, body)


def test_a_blocking_read_waits_for_an_entry_on_a_transport_of_its_own(
        url: tuple[str, bool]) -> None:
    s, g = "{s}stream", "group"

    async def body(t: Transport) -> float:
        reader = transport(url[0], cluster=url[1], block=2.0)
        try:
            await t.call("XGROUP", "CREATE", s, g, "0", "MKSTREAM")
            started = asyncio.get_running_loop().time()
            read = asyncio.ensure_future(reader.call(
                "XREADGROUP", "GROUP", g, "c", "BLOCK", 2000, "STREAMS", s, ">"))
            await asyncio.sleep(0.2)
            assert await t.call("GET", "{s}x") is None  # the other transport is not held
            added = streams.text(await t.call("XADD", s, "*", "f", "v"))
            assert streams.read(await read) == [(s, [(added, {b"f": b"v"})])]
            return asyncio.get_running_loop().time() - started
        finally:
            await reader.aclose()
    assert 0.2 <= run(url, body) < 1.9


def test_a_read_over_streams_in_several_slots_answers_as_one(url: tuple[str, bool]) -> None:
    """The 64 outboxes: one XREADGROUP over streams on every node of a cluster, with BLOCK; a
    read that finds nothing answers nil after (at least) the BLOCK time."""
    names = [f"{{o{i}}}:outbox" for i in range(12)]
    g = "group"

    async def body(t: Transport) -> tuple[Any, ...]:
        await t.many([("XGROUP", "CREATE", k, g, "0", "MKSTREAM") for k in names])
        added = {k: streams.text(await t.call("XADD", k, "*", "k", k)) for k in names[::3]}
        read = streams.read(await t.call("XREADGROUP", "GROUP", g, "c", "COUNT", 10,
                                         "BLOCK", 200, "STREAMS", *names, *[">"] * 12))
        loop = asyncio.get_running_loop()
        started = loop.time()
        empty = await t.call("XREADGROUP", "GROUP", g, "c", "BLOCK", 200, "STREAMS", *names,
                             *[">"] * 12)
        waited = loop.time() - started
        pending = streams.read(await t.call("XREADGROUP", "GROUP", g, "c", "STREAMS", *names,
                                            *["0"] * 12))
        return added, read, empty, waited, pending
    added, read, empty, waited, pending = run(url, body)
    assert read == [(k, [(i, {b"k": k.encode()})]) for k, i in added.items()]
    assert empty is None and waited >= 0.19
    assert [(k, e) for k, e in pending if e] == read
