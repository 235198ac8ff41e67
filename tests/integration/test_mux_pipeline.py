"""Non-transactional pipelines of `client.connect`'s client go over the Mux (`mux_pipeline.py`):
the same answers as redis-py's own pipeline, errors included; transactions and blocking
commands stay on redis-py's pool."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import DataError, ResponseError

from sessiongate.store.client import connect
from sessiongate.store.mux import Mux
from sessiongate.store.mux_pipeline import MuxPipeline


def queue_everything(pipe: Pipeline) -> None:
    """Commands with and without response callbacks, options, a name with a space, and two
    that fail (INCR of text, HGET of a list)."""
    pipe.set("s", "v", px=60_000)
    pipe.get("s")
    pipe.hset("h", mapping={"a": 1, "b": "é"})
    pipe.hgetall("h")
    pipe.zadd("z", {"m": 2.5, "n": 1}, gt=True)
    pipe.zrange("z", 0, -1, withscores=True)
    pipe.zrangebyscore("z", "-inf", "+inf", start=0, num=1)
    pipe.pexpire("z", 60_000)
    pipe.expire("nothing", 10)
    pipe.incr("s")  # fails: not an integer
    pipe.rpush("l", b"\x00\xff", 3)
    pipe.hget("l", "x")  # fails: WRONGTYPE
    pipe.lrange("l", 0, -1)
    pipe.xadd("x", {"f": "v"}, id="1-1")
    pipe.xrange("x")
    pipe.exists("s", "h", "missing")
    pipe.script_load("return 1")
    pipe.ttl("s")
    pipe.type("z")
    pipe.zscore("z", "m")
    pipe.delete("gone")


def test_answers_equal_redis_pys_pipeline(redis_url: str, redis_client: redis.Redis) -> None:
    async def main() -> tuple[list[Any], list[Any], str, str]:
        lean = connect(redis_url)
        plain = Redis.from_url(redis_url)
        try:
            results = []
            for client in (lean, plain):
                await client.flushdb()
                pipe = client.pipeline(transaction=False)
                queue_everything(pipe)
                results.append(await pipe.execute(raise_on_error=False))
            raised = []
            for client in (lean, plain):
                await client.flushdb()
                pipe = client.pipeline(transaction=False)
                queue_everything(pipe)
                with pytest.raises(ResponseError) as info:
                    await pipe.execute()
                raised.append(str(info.value))
            assert isinstance(lean.pipeline(transaction=False), MuxPipeline)
            return results[0], results[1], raised[0], raised[1]
        finally:
            await lean.aclose()
            await plain.aclose()

    ours, theirs, our_error, their_error = asyncio.run(main())
    assert [type(r) for r in ours] == [type(r) for r in theirs]
    assert [str(r) if isinstance(r, Exception) else r for r in ours] == \
        [str(r) if isinstance(r, Exception) else r for r in theirs]
    assert isinstance(ours[9], ResponseError) and isinstance(ours[11], ResponseError)
    assert ours[5] == [(b"n", 1.0), (b"m", 2.5)]  # a callback applied, with its options
    assert our_error == their_error and "Command # 10" in our_error


def test_a_pipeline_is_reusable_and_rejects_what_redis_py_rejects(redis_url: str,
                                                                 redis_client: redis.Redis
                                                                 ) -> None:
    async def main() -> tuple[list[Any], list[Any], list[Any]]:
        client = connect(redis_url)
        try:
            pipe = client.pipeline(transaction=False)
            first = await pipe.set("k", 1).incr("k").execute()
            second = await pipe.get("k").execute()
            pipe.set("k", True)  # type: ignore[arg-type]
            with pytest.raises(DataError):  # as redis-py: bool is not a Redis value
                await pipe.execute()
            return first, second, await pipe.get("k").execute()
        finally:
            await client.aclose()

    first, second, third = asyncio.run(main())
    assert first == [True, 2] and second == [b"2"] and third == [b"2"]


def test_transactions_and_blocking_commands_stay_on_redis_pys_pool(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """A MULTI/EXEC pipeline runs as a transaction; a pipeline that blocks (BLPOP) does not
    hold the Mux: a script call sent after it is answered before it."""
    async def main() -> tuple[list[Any], list[str]]:
        client = connect(redis_url)
        mux = Mux.of(client)
        assert mux is not None
        order: list[str] = []
        try:
            tx = client.pipeline()  # transaction=True
            tx.set("t", 1).incr("t")
            atomic = await tx.execute()

            async def blocked() -> None:
                pipe = client.pipeline(transaction=False)
                pipe.blpop(["empty-list"], timeout=1)
                await pipe.execute()
                order.append("blpop")

            async def quick() -> None:
                await asyncio.sleep(0.05)
                await mux.call("EVAL", "return 1", 0)
                order.append("eval")

            await asyncio.gather(blocked(), quick())
            return atomic, order
        finally:
            await client.aclose()

    atomic, order = asyncio.run(main())
    assert atomic == [True, 2]
    assert order == ["eval", "blpop"]
