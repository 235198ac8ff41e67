"""Lua scripts, each in its own `.lua` file with a KEYS/ARGV header, called by EVALSHA.

On one Redis server the calls go through the client's multiplexed connection (`mux.py`):
a call is a write on a shared socket (a login's shares one with concurrent logins', see
`Mux`), not a pooled connection of redis-py's. On Redis Cluster (and where `Mux.of`
declines) redis-py's own script objects are used. Either way a NOSCRIPT reply (Redis
restarted, or SCRIPT FLUSH) loads the script and runs the call again: a NOSCRIPT call did
not run.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Sequence
from functools import cache
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from sessiongate.store.client import is_cluster
from sessiongate.store.mux import Mux

Call = tuple[Sequence[Any], Sequence[Any]]  # (KEYS, ARGV) of one script call
VARIABLE: Any = type("Variable", (), {"__repr__": lambda self: "VARIABLE"})()  # see prepare


class Prepared:
    """A script call encoded once but for some arguments (`Script.prepare`): a call formats
    those into the rest (one bytes `%`), instead of encoding every argument anew (a
    seat-limited login's EVALSHA has 14 arguments, 10 of them the same for a user all day)."""

    __slots__ = ("_encoding", "_errors", "_fmt", "_script")

    def __init__(self, script: Script, fmt: bytes, encoding: str, errors: str) -> None:
        self._script = script
        self._fmt = fmt
        self._encoding = encoding
        self._errors = errors

    def __call__(self, *values: str | int) -> Awaitable[Any]:
        """The call's reply, given the `VARIABLE` arguments (str or int) in order."""
        parts: list[Any] = []
        for v in values:
            b = b"%d" % v if type(v) is int else str(v).encode(self._encoding, self._errors)
            parts += (len(b), b)
        return self._script.run(self._fmt % tuple(parts), hold=True)


@cache
def source(name: str) -> str:
    return resources.files("sessiongate.store").joinpath("lua", f"{name}.lua").read_text()


class Script:
    """One script on a Mux: `await script(keys=..., args=...)` is one EVALSHA; a Lua error
    is raised as redis-py's `ResponseError`."""

    __slots__ = ("head", "mux", "sha", "text")

    def __init__(self, mux: Mux, text: str) -> None:
        self.mux = mux
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()
        self.head = mux.encode(("EVALSHA", self.sha))[4:]  # its first two arguments, in RESP

    def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Awaitable[Any]:
        return self.run(self.encode(keys, args))

    def encode(self, keys: Sequence[Any], args: Sequence[Any]) -> bytes:
        """This script's EVALSHA of `keys` and `args`, in RESP."""
        return self.mux.encode((len(keys), *keys, *args), self.head, 2)

    async def run(self, payload: bytes, hold: bool = False) -> Any:
        """The reply to `payload`, this script's EVALSHA encoded (NOSCRIPT: loaded, again);
        `hold`: the write may wait for concurrent calls' (`Mux`, logins)."""
        mux = self.mux
        try:
            return await mux.send(payload, 1, False, hold)  # one future, no other coroutine
        except NoScriptError:
            pass
        except RedisConnectionError:  # one more try on a new connection, as Mux.request
            try:
                return await mux.resend(payload)
            except NoScriptError:  # a restarted Redis has no scripts
                pass
        await self.load()
        return await mux.request(payload)

    def prepare(self, keys: Sequence[Any], args: Sequence[Any]) -> Prepared:
        """This script's call with `keys` and `args` encoded once, but for the arguments that
        are `VARIABLE`: given to each call of the result, in their order."""
        mux = self.mux
        fixed = [mux.encode((a,))[4:] for a in (len(keys), *keys, *args) if a is not VARIABLE]
        fmt, i = [b"*%d\r\n" % (len(keys) + len(args) + 3), self.head], 0
        for a in (len(keys), *keys, *args):
            if a is VARIABLE:
                fmt.append(b"$%d\r\n%b\r\n")
            else:
                fmt.append(fixed[i].replace(b"%", b"%%"))
                i += 1
        return Prepared(self, b"".join(fmt), *mux.text_encoding)

    async def load(self) -> None:
        await self.mux.call("SCRIPT", "LOAD", self.text)

    async def run_many(self, calls: Sequence[Call]) -> list[Any]:
        """One EVALSHA per call, written at once; errors in their places. The calls that
        met NOSCRIPT did not run: they run again, once the script is loaded."""
        if not calls:
            return []
        sha, mux, head = self.sha, self.mux, self.head
        encode = mux.encode
        results = list(await mux.request(
            b"".join([encode((len(k), *k, *a), head, 2) for k, a in calls]), len(calls), True))
        missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missing:
            await self.load()
            again = await self.mux.call_many(
                [("EVALSHA", sha, len(calls[i][0]), *calls[i][0], *calls[i][1])
                 for i in missing])
            for i, res in zip(missing, again, strict=True):
                results[i] = res
        return results


class Scripts:
    """The scripts of one Redis client, by name."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._mux = Mux.of(redis)
        self._cache: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        """The script `name`: awaitable as `script(keys=..., args=...)` (positional too)."""
        script = self._cache.get(name)
        if script is None:
            script = self._cache[name] = (
                Script(self._mux, source(name)) if self._mux is not None
                else self._redis.register_script(source(name)))
        return script

    async def run_many(self, name: str, calls: Sequence[Call]) -> list[Any]:
        """Run script `name` once per (keys, args), in one round trip (on Redis Cluster,
        which refuses EVALSHA in pipelines, all calls concurrently). Each call is its own
        atomic step; a call's error is returned in its place, not raised, so the others'
        results are never lost."""
        if not calls:
            return []
        script = self[name]
        if isinstance(script, Script):
            return await script.run_many(calls)
        if is_cluster(self._redis):
            return list(await asyncio.gather(
                *(script(keys=k, args=a) for k, a in calls), return_exceptions=True))
        return await self._pipelined(script, calls)

    def prepare(self, name: str, keys: Sequence[Any], args: Sequence[Any]) -> Prepared | None:
        """`Script.prepare` of script `name` on the multiplexed connection; None where there
        is none (Redis Cluster, unix sockets): call the script as usual there."""
        script = self[name]
        return script.prepare(keys, args) if isinstance(script, Script) else None

    def coalesced(self, name: str, keys: Sequence[Any], args: Sequence[Any]
                  ) -> Awaitable[Any]:
        """One call of script `name` that may share its round trip with concurrent ones:
        on the multiplexed connection it may wait for them (`hold`: one write for all,
        their replies read together). An awaitable, not a coroutine of its own (hot
        path)."""
        script = self[name]
        if isinstance(script, Script):
            return script.run(script.encode(keys, args), hold=True)
        called: Awaitable[Any] = script(keys=keys, args=args)
        return called

    async def _pipelined(self, script: Any, calls: Sequence[Call]) -> list[Any]:
        """redis-py's pipeline (where the Mux declined), EVALSHA queued by hand: with its
        script objects, `Pipeline.execute` would first send SCRIPT EXISTS, a round trip."""
        async def send(batch: Sequence[Call]) -> list[Any]:
            pipe = self._redis.pipeline(transaction=False)
            for k, a in batch:
                pipe.execute_command("EVALSHA", script.sha, len(k), *k, *a)
            return list(await pipe.execute(raise_on_error=False))

        results = await send(calls)
        missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missing:
            script.sha = await self._redis.script_load(script.script)
            for i, res in zip(missing, await send([calls[i] for i in missing]), strict=True):
                results[i] = res
        return results
