"""Lua scripts, each in its own `.lua` file with a KEYS/ARGV header, called by EVALSHA on the
stores' transport (`transport.Transport`: NOSCRIPT loads the script and calls again)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sessiongate.store.transport import VARIABLE, Call, Transport, script

__all__ = ["VARIABLE", "Call", "Prepared", "Scripts", "source"]

Prepared = Callable[..., Awaitable[Any]]  # a call with its `VARIABLE` arguments to fill in


def source(name: str) -> str:
    return script(name).text


class Scripts:
    """The scripts, by name, on one transport: `await scripts[name](keys=..., args=...)`."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def __getitem__(self, name: str) -> Callable[..., Awaitable[Any]]:
        """The script `name`: awaitable as `script(keys=..., args=...)` (positional too)."""
        s, t = script(name), self.transport

        def call(keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Awaitable[Any]:
            return t.evalsha(s, keys, args)
        return call

    async def run_many(self, name: str, calls: Sequence[Call]) -> list[Any]:
        """Run script `name` once per (keys, args), together. Each call is its own atomic
        step; a call's error is returned in its place, not raised, so the others' results
        are never lost."""
        return await self.transport.evalsha_many(script(name), calls)

    def prepare(self, name: str, keys: Sequence[Any], args: Sequence[Any]) -> Prepared:
        """`Transport.prepare` of script `name`."""
        return self.transport.prepare(script(name), keys, args)

    def coalesced(self, name: str, keys: Sequence[Any], args: Sequence[Any]
                  ) -> Awaitable[Any]:
        """One call of script `name` that may share its round trip with concurrent ones
        (`hold`). An awaitable, not a coroutine of its own (hot path)."""
        return self.transport.evalsha(script(name), keys, args, hold=True)
