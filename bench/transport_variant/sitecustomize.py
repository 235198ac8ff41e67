"""A `serve` whose Lua calls go through another Redis client (`bench.transports`).

On PYTHONPATH with `SG_BENCH_TRANSPORT` set, this is imported at interpreter start-up and
switches the store's transport before the server starts:

- `redispy`: redis-py (with hiredis) for everything: the multiplexed connection is declined,
  so scripts, pipelines and the near-cache's subscription use redis-py's own objects;
- `coredis`, `glide`: every Lua call (a seat-limited login's take_seat, the payment
  consumer's commit_account, ...) through that client; the rest as in the build.

Bench code only: production never reads `SG_BENCH_TRANSPORT`. It patches the build that had
`Mux.of` and `Scripts.prepare` (commit 62afe81, measured in docs/performance.md, "Redis
transport: measured"): run it with that build first on PYTHONPATH.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

_KIND = os.environ.get("SG_BENCH_TRANSPORT", "")


def _redispy() -> None:
    from sessiongate.store import mux

    mux.Mux.of = classmethod(lambda cls, redis: None)  # type: ignore[assignment,method-assign]


def _url() -> str:
    return os.environ["SESSIONGATE_REDIS_URL"]


class _Coredis:
    def __init__(self) -> None:
        import coredis

        self.client = coredis.Redis.from_url(_url())
        self.entered = False
        self.lock = asyncio.Lock()
        self.noscript = coredis.exceptions.NoScriptError

    async def run(self, sha: str, text: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        if not self.entered:
            async with self.lock:
                if not self.entered:
                    await self.client.__aenter__()
                    self.entered = True
        try:
            return await self.client.evalsha(sha, keys=keys, args=args)
        except self.noscript:
            await self.client.script_load(text)
            return await self.client.evalsha(sha, keys=keys, args=args)


class _Glide:
    def __init__(self) -> None:
        self.client: Any = None
        self.lock = asyncio.Lock()
        self.scripts: dict[str, Any] = {}

    async def run(self, sha: str, text: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        from glide import GlideClient, GlideClientConfiguration, NodeAddress, Script

        if self.client is None:
            async with self.lock:
                if self.client is None:
                    host, port = _url().split("//", 1)[1].split("/")[0].split(":")
                    self.client = await GlideClient.create(GlideClientConfiguration(
                        [NodeAddress(host, int(port))], request_timeout=2000))
        script = self.scripts.get(sha)
        if script is None:
            script = self.scripts[sha] = Script(text)
        return await self.client.invoke_script(
            script, keys=[str(k) for k in keys], args=[str(a) for a in args])


def _library(make: Any) -> None:
    import hashlib

    from sessiongate.store import scripts

    clients: dict[int, Any] = {}

    def client() -> Any:
        loop = id(asyncio.get_running_loop())
        c = clients.get(loop)
        if c is None:
            c = clients[loop] = make()
        return c

    class Call:
        def __init__(self, text: str) -> None:
            self.text = text
            self.sha = hashlib.sha1(text.encode()).hexdigest()

        def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
            return client().run(self.sha, self.text, keys, args)

    def getitem(self: Any, name: str) -> Any:
        return Call(scripts.source(name))

    async def run_many(self: Any, name: str, calls: Sequence[Any]) -> list[Any]:
        call = Call(scripts.source(name))
        return list(await asyncio.gather(*(call(k, a) for k, a in calls),
                                         return_exceptions=True))

    scripts.Scripts.__getitem__ = getitem  # type: ignore[method-assign]
    scripts.Scripts.run_many = run_many  # type: ignore[method-assign]
    scripts.Scripts.prepare = lambda self, name, keys, args: None  # type: ignore[method-assign]
    scripts.Scripts.coalesced = (  # type: ignore[method-assign]
        lambda self, name, keys, args: getitem(self, name)(keys, args))


if _KIND == "redispy":
    _redispy()
elif _KIND == "coredis":
    _library(_Coredis)
elif _KIND == "glide":
    _library(_Glide)
elif _KIND:
    raise SystemExit(f"SG_BENCH_TRANSPORT={_KIND!r}: not one of redispy, coredis, glide")
