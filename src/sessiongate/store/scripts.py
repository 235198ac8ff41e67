"""Lua scripts, each in its own `.lua` file with a KEYS/ARGV header, loaded once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

from redis.asyncio import Redis

from sessiongate.store.client import is_cluster


@cache
def source(name: str) -> str:
    return resources.files("sessiongate.store").joinpath("lua", f"{name}.lua").read_text()


class Scripts:
    """The registered scripts of one Redis client (EVALSHA, reloaded after a Redis restart)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._cache: dict[str, Any] = {}
        self._queued: dict[str, list[tuple[Sequence[Any], Sequence[Any], asyncio.Future[Any]]]] = {}
        self._sending: set[asyncio.Task[None]] = set()

    def __getitem__(self, name: str) -> Any:
        script = self._cache.get(name)
        if script is None:
            script = self._cache[name] = self._redis.register_script(source(name))
        return script

    async def run_many(self, name: str, calls: Sequence[tuple[Sequence[Any], Sequence[Any]]]
                       ) -> list[Any]:
        """Run script `name` once per (keys, args), in one round trip: one pipeline, or on
        Redis Cluster (which refuses EVALSHA in pipelines) all calls concurrently. Each
        call is its own atomic step; a call's error is returned in its place, not raised,
        so the others' results are never lost."""
        if not calls:
            return []
        script = self[name]
        if is_cluster(self._redis):
            return list(await asyncio.gather(
                *(script(keys=k, args=a) for k, a in calls), return_exceptions=True))
        pipe = self._redis.pipeline(transaction=False)
        for k, a in calls:
            await script(keys=k, args=a, client=pipe)  # queues the EVALSHA
        return list(await pipe.execute(raise_on_error=False))

    async def coalesced(self, name: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """One call of script `name`, sent together with the calls of the same script made in
        the same event-loop iteration (one pipeline, `run_many`): under load, concurrent
        logins share a round trip and redis-py's per-command cost. A call alone, or on
        Redis Cluster, is a plain EVALSHA. Each call stays its own atomic step."""
        if is_cluster(self._redis):
            return await self[name](keys=keys, args=args)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        queue = self._queued.setdefault(name, [])
        queue.append((keys, args, done))
        if len(queue) == 1:
            loop.call_soon(self._flush, name)
        return await done

    def _flush(self, name: str) -> None:
        task = asyncio.ensure_future(self._send(name, self._queued.pop(name, [])))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, name: str,
                    queue: list[tuple[Sequence[Any], Sequence[Any], asyncio.Future[Any]]]
                    ) -> None:
        results: list[Any]
        try:
            if len(queue) == 1:
                keys, args, _ = queue[0]
                results = [await self[name](keys=keys, args=args)]
            else:
                results = await self.run_many(name, [(k, a) for k, a, _ in queue])
        except Exception as exc:  # the round trip failed: so did every call in it
            results = [exc] * len(queue)
        for (_, _, done), res in zip(queue, results, strict=True):
            if done.done():  # its caller was cancelled meanwhile
                continue
            if isinstance(res, Exception):
                done.set_exception(res)
            else:
                done.set_result(res)
