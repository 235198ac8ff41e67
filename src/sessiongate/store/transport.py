"""The Redis transport: all that the stores ask of a Redis client, one interface.

Stores are written once against `Transport`; which client is underneath (`mux.Mux` on one
server, `cluster.ClusterTransport` on Redis Cluster) is chosen once, by `client.transport`.
Replies are Redis's own (bytes, int, lists; RESP3 maps as dicts), never reshaped per
command; an error reply is redis-py's exception for it (`NoScriptError`, `ResponseError`):
raised by `call` and `evalsha`, returned in its place by `many` and `evalsha_many`.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Protocol

# The transport's errors: redis-py's exception classes, raised by both implementations.
# Code above store/ takes them from here, not from redis.
from redis.exceptions import RedisError as RedisError
from redis.exceptions import ResponseError as ResponseError

Call = tuple[Sequence[Any], Sequence[Any]]  # (KEYS, ARGV) of one script call
VARIABLE: Any = type("Variable", (), {"__repr__": lambda self: "VARIABLE"})()  # see prepare


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script's text and SHA1 (what EVALSHA names it by)."""

    text: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.text.encode()).hexdigest())


@cache
def script(name: str) -> Script:
    """The script `lua/<name>.lua`."""
    return Script(resources.files("sessiongate.store").joinpath("lua", f"{name}.lua")
                  .read_text())


class Subscription(Protocol):
    """A live subscription: `lost` completes with the error that ended it."""

    lost: asyncio.Future[Exception]

    def close(self) -> None: ...


class Transport(Protocol):
    """One Redis deployment, as the stores use it."""

    # Whether keys are spread over slots of several nodes (Cluster): a store that appends
    # to one stream from many accounts shards it (`keys.usage_stream_of`).
    sharded: bool

    def call(self, *args: Any) -> Awaitable[Any]:
        """One command's reply; an error reply raised. An XREAD[GROUP] over streams in
        several slots answers as one read (on Cluster, `cluster.py` splits it by slot)."""
        ...

    def many(self, commands: Sequence[Sequence[Any]]) -> Awaitable[list[Any]]:
        """The replies of `commands`, sent together (one round trip per node); error
        replies in their places. Not a transaction."""
        ...

    def evalsha(self, script: Script, keys: Sequence[Any], args: Sequence[Any],
                hold: bool = False) -> Awaitable[Any]:
        """One EVALSHA; on NOSCRIPT (Redis restarted, SCRIPT FLUSH) the script is loaded and
        the call made again (a NOSCRIPT call did not run). `hold`: the call may wait a moment
        for concurrent ones to share their round trip (logins)."""
        ...

    def evalsha_many(self, script: Script, calls: Sequence[Call]) -> Awaitable[list[Any]]:
        """One EVALSHA per (keys, args), sent together; each atomic on its own, its error
        in its place."""
        ...

    def prepare(self, script: Script, keys: Sequence[Any], args: Sequence[Any]
                ) -> Callable[..., Awaitable[Any]]:
        """`evalsha(script, keys, args, hold=True)` with the `VARIABLE` arguments given to
        each call of the result (str or int, in order): the rest may be encoded once."""
        ...

    def scan(self, match: str, kind: str | None = None, count: int = 1000
             ) -> AsyncIterator[bytes]:
        """The names of the keys matching `match` (of type `kind`, e.g. "hash"), on every
        node, each once unless it is renamed or moved meanwhile (SCAN's guarantee)."""
        ...

    async def subscribe(self, channel: str, on_message: Callable[[Any], None]
                        ) -> Subscription:
        """A subscription to `channel`: each message's data goes to `on_message`. Returns
        once Redis confirmed it; raises if it cannot be made."""
        ...

    async def aclose(self) -> None: ...


def filled(keys: Sequence[Any], args: Sequence[Any], values: Sequence[Any]
           ) -> tuple[list[Any], list[Any]]:
    """`keys` and `args` with their `VARIABLE`s replaced by `values` in order."""
    it = iter(values)
    return ([next(it) if k is VARIABLE else k for k in keys],
            [next(it) if a is VARIABLE else a for a in args])


def pairs(reply: Any) -> list[tuple[Any, Any]]:
    """HGETALL's or a WITHSCORES reply as pairs: a flat list (RESP2), a map or a list of
    pairs (RESP3)."""
    if isinstance(reply, dict):
        return list(reply.items())
    if reply and isinstance(reply[0], list):
        return [(p[0], p[1]) for p in reply]
    return list(zip(reply[::2], reply[1::2], strict=True))


def raise_first(replies: Sequence[Any]) -> list[Any]:
    """`replies`, unless one is an error: then the first is raised."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return list(replies)
