"""The transport on Redis Cluster (`transport.Transport`): redis-py's `RedisCluster`.

redis-py routes each command by its key's slot, follows MOVED/ASK and refreshes its slot map;
every command the stores send touches one slot (`slots.py`). Its per-command reply parsers
are replaced, through its public `set_response_callback`, by one that returns the reply as
read, so that the stores see the same replies as on one server (`mux.Mux`); the cluster's
own commands (CLUSTER SLOTS, COMMAND, ...) keep theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from sessiongate.store.transport import Call, Script, filled

# Commands whose parsed replies redis-py itself relies on (discovery, handshakes, SCAN's
# walk over every node).
_OWN = ("CLUSTER", "COMMAND", "CLIENT", "HELLO", "AUTH", "INFO", "PING", "READONLY",
        "READWRITE", "SCRIPT", "CONFIG", "ACL", "MODULE", "SENTINEL", "SCAN")


def _as_read(response: Any, **_: Any) -> Any:
    return response


class _Subscription:
    def __init__(self, task: asyncio.Task[None], lost: asyncio.Future[Exception]) -> None:
        self._task = task
        self.lost = lost

    def close(self) -> None:
        self._task.cancel()


class ClusterTransport:
    """Redis Cluster through redis-py, replies as read."""

    sharded = True

    def __init__(self, url: str, **options: Any) -> None:
        # RESP2 unless the URL asks (as `mux.Mux`): redis-py's own default may be RESP3.
        self.client = RedisCluster.from_url(url, **{"protocol": 2, **options})
        for name in list(self.client.response_callbacks):
            if name.split(" ", 1)[0].upper() not in _OWN:
                self.client.set_response_callback(name, _as_read)

    def call(self, *args: Any) -> Awaitable[Any]:
        called: Awaitable[Any] = self.client.execute_command(*args)
        return called

    async def many(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        if not commands:
            return []
        pipe = self.client.pipeline(transaction=False)
        for c in commands:
            pipe.execute_command(*c)
        return list(await pipe.execute(raise_on_error=False))

    async def evalsha(self, script: Script, keys: Sequence[Any], args: Sequence[Any],
                      hold: bool = False) -> Any:
        try:
            return await self.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.client.script_load(script.text)  # on every primary
            return await self.call("EVALSHA", script.sha, len(keys), *keys, *args)

    async def evalsha_many(self, script: Script, calls: Sequence[Call]) -> list[Any]:
        """Concurrently: Redis Cluster refuses EVALSHA in a pipeline of redis-py's."""
        return list(await asyncio.gather(*(self.evalsha(script, k, a) for k, a in calls),
                                         return_exceptions=True))

    def prepare(self, script: Script, keys: Sequence[Any], args: Sequence[Any]
                ) -> Callable[..., Awaitable[Any]]:
        def call(*values: str | int) -> Awaitable[Any]:
            k, a = filled(keys, args, values)
            return self.evalsha(script, k, a)
        return call

    async def scan(self, match: str, kind: str | None = None, count: int = 1000
                   ) -> AsyncIterator[bytes]:
        """redis-py's cluster `scan_iter`: SCAN on every primary, each to its cursor's end."""
        async for key in self.client.scan_iter(match=match, count=count, _type=kind):
            yield key

    async def subscribe(self, channel: str, on_message: Callable[[Any], None]
                        ) -> _Subscription:
        """redis-py's ClusterPubSub: a classic PUBLISH (the commit script's) is broadcast to
        every node, so one subscription on any node hears all of them; it picks the node
        serving the channel name's slot (the client must know its nodes first)."""
        await self.client.initialize()
        pubsub = self.client.pubsub()
        try:
            await pubsub.subscribe(channel)
        except BaseException:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            raise
        lost: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()

        async def listen() -> None:
            error: Exception = RedisConnectionError("unsubscribed")
            try:
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        on_message(message["data"])
            except Exception as exc:
                error = exc
            finally:
                if not lost.done():
                    lost.set_result(error)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

        return _Subscription(asyncio.create_task(listen()), lost)

    async def aclose(self) -> None:
        await self.client.aclose()
