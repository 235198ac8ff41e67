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
