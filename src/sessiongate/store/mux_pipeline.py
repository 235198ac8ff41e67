"""redis-py's non-transactional pipeline, executed on the multiplexed connection (`mux.py`).

Why: the batch writer writes a record per login (a seat-limited login's login and active-user
fields) through a pipeline; through redis-py each command costs its pure-Python encoding and
a parse call with its own timeout, and every execute a pooled connection: ~18 % of a
seat-limited login's event-loop time. Here the commands are queued by redis-py's own command
methods (same arguments, same options), written at once on the Mux, parsed by hiredis, and
answered through the client's own response callbacks, as `Pipeline._execute_pipeline` does.

Anything else keeps redis-py's `execute`: transactions, WATCH, scripts queued by redis-py,
options that change the parsing (NEVER_DECODE, EMPTY_RESPONSE), blocking commands (they would
hold the shared connection) and HIMPORT (per-connection state).
"""

from __future__ import annotations

import inspect
from typing import Any

from redis.asyncio.client import Pipeline
from redis.asyncio.connection import ConnectionPool
from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.exceptions import ResponseError

from sessiongate.store.mux import Mux

# Commands that may wait on the server for other clients: never on the shared connection.
BLOCKING = frozenset({
    "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP",
    "XREAD", "XREADGROUP", "WAIT", "WAITAOF", "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE",
    "MONITOR", "SYNC", "PSYNC",
})


def _name(args: tuple[Any, ...]) -> str:
    first = args[0]
    text = first.decode(errors="replace") if isinstance(first, bytes) else str(first)
    return text.split(" ", 1)[0].upper()


class MuxPipeline(Pipeline):
    """A redis-py `Pipeline` whose plain batches go over the Mux (see the module doc)."""

    def __init__(self, mux: Mux, connection_pool: ConnectionPool,
                 response_callbacks: Any, transaction: bool, shard_hint: str | None) -> None:
        super().__init__(connection_pool, response_callbacks, transaction, shard_hint)
        self._mux = mux

    def _lean(self) -> bool:
        if (self.is_transaction or self.explicit_transaction or self.watching or self.scripts
                or self.connection is not None):
            return False
        for args, options in self.command_stack:
            if NEVER_DECODE in options or EMPTY_RESPONSE in options:
                return False
            name = _name(args)
            if name in BLOCKING or name.startswith("HIMPORT"):
                return False
        return True

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        stack = self.command_stack
        if not stack or not self._lean():
            return list(await super().execute(raise_on_error))
        # What `reset` would do for a pipeline that holds no connection and watches nothing
        # (checked above), without its coroutine: the pipeline is reusable at once.
        self.command_stack = []
        self.scripts = set()
        replies = await self._mux.call_many([_split(args) for args, _ in stack])
        if raise_on_error:
            self.raise_first_error(stack, replies)
        callbacks = self.response_callbacks
        out: list[Any] = []
        for (args, options), reply in zip(stack, replies, strict=True):
            if not isinstance(reply, ResponseError) and args[0] in callbacks:
                opts = {k: v for k, v in options.items() if k != "keys"}
                reply = callbacks[args[0]](reply, **opts)
                if inspect.isawaitable(reply):
                    reply = await reply
            out.append(reply)
        return out


def _split(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """As redis-py's `pack_command`: a command name with spaces ("SCRIPT LOAD") is several
    arguments."""
    first = args[0]
    if isinstance(first, str):
        return (*first.encode().split(), *args[1:]) if " " in first else args
    if isinstance(first, bytes) and b" " in first:
        return (*first.split(), *args[1:])
    return args
