"""Lua scripts, each in its own `.lua` file with a KEYS/ARGV header, loaded once."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from redis.asyncio import Redis


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
