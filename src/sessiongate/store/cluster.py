"""The transport on Redis Cluster (`transport.Transport`): redis-py's `RedisCluster`.

redis-py routes each command by its key's slot, follows MOVED/ASK and refreshes its slot map;
every command the stores send touches one slot (`slots.py`). Its per-command reply parsers
are replaced, through its public `set_response_callback`, by one that returns the reply as
read, so that the stores see the same replies as on one server (`mux.Mux`); the cluster's
own commands (CLUSTER SLOTS, COMMAND, ...) keep theirs.

An XREAD or XREADGROUP over streams in several slots (the 64 outboxes), which no one node
may answer, is split by slot (`_read_spread`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from sessiongate.store.slots import key_slot
from sessiongate.store.transport import Call, Script, filled, raise_first

# Commands whose parsed replies redis-py itself relies on (discovery, handshakes, SCAN's
# walk over every node).
_OWN = ("CLUSTER", "COMMAND", "CLIENT", "HELLO", "AUTH", "INFO", "PING", "READONLY",
        "READWRITE", "SCRIPT", "CONFIG", "ACL", "MODULE", "SENTINEL", "SCAN")
_READS = frozenset({"XREADGROUP", "XREAD", "xreadgroup", "xread"})


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


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
        # RESP2 unless the URL asks (as `mux.Mux`): redis-py's own default may be RESP3. No
        # CLIENT SETINFO on each connection (`driver_info=None`), as `mux.Mux` sends none:
        # Redis before 7.2 has no such command and refuses it to the least-privilege user of
        # deploy/README.md (its ACL LOG fills with it; tests/cluster/test_cluster_acl.py).
        self.client = RedisCluster.from_url(
            url, **{"protocol": 2, "driver_info": None, **options})
        for name in list(self.client.response_callbacks):
            if name.split(" ", 1)[0].upper() not in _OWN:
                self.client.set_response_callback(name, _as_read)

    def call(self, *args: Any) -> Awaitable[Any]:
        if args[0] in _READS:
            return self._read(args)
        called: Awaitable[Any] = self.client.execute_command(*args)
        return called

    async def _read(self, args: Sequence[Any]) -> Any:
        """XREAD[GROUP] [options] STREAMS k1 .. kn id1 .. idn: as sent when its keys share
        a slot; else `_read_spread`."""
        head: list[Any] = [args[0]]
        block: int | None = None
        at = 1
        while at < len(args):  # the options, as Redis parses them, up to STREAMS
            word = _text(args[at]).upper()
            if word == "STREAMS":
                break
            step = {"GROUP": 3, "COUNT": 2, "BLOCK": 2}.get(word, 1)
            if word == "BLOCK":
                block = int(args[at + 1])
            else:
                head.extend(args[at:at + step])
            at += step
        rest = list(args[at + 1:])
        n = len(rest) // 2
        by_slot: dict[int, list[int]] = {}
        for i, k in enumerate(rest[:n]):
            by_slot.setdefault(key_slot(_text(k)), []).append(i)
        if len(by_slot) <= 1:
            return await self.client.execute_command(*args)
        return await self._read_spread(head, block, rest[:n], rest[n:],
                                       list(by_slot.values()))

    async def _read_spread(self, head: list[Any], block: int | None, streams: list[Any],
                           ids: list[Any], groups: list[list[int]]) -> Any:
        """One read per slot (`head` STREAMS its keys, its ids), all in one pipeline (a round
        trip per node), without BLOCK: a read blocked on one node would hold back what the
        others have. The replies are joined, streams of a slot together, in the order of
        their first key (nil when none found anything). With BLOCK and nothing found, it
        returns nil after the BLOCK time, as a blocking read that timed out (an entry added
        meanwhile waits for the next read); BLOCK 0 (forever) is not waited for."""
        replies = raise_first(await self.many(
            [(*head, "STREAMS", *(streams[i] for i in g), *(ids[i] for i in g))
             for g in groups]))
        found = [r for r in replies if r]
        if not found:
            if block:
                await asyncio.sleep(block / 1000)
            return None
        if isinstance(found[0], dict):  # RESP3: a map per reply
            return {k: v for r in found for k, v in r.items()}
        return [item for r in found for item in r]

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
