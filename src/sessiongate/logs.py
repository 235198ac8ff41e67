"""structlog configuration: JSON lines in production, console rendering on a terminal.

Also the access log's own renderer (`access_line`, `access_lines`): one line per RPC is the
costliest log of the process, so it skips structlog's generic processor chain and writes the
same JSON shape (same keys in the same order, same encoding) with one f-string. `configure`
records whether that shape is the configured one (`state.json_lines`); when it is not (console
rendering, or structlog configured elsewhere), callers go through structlog as for any other
line.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime
from json import dumps
from json.encoder import encode_basestring_ascii as _quote
from typing import Any

import structlog


class LogState:
    """What `configure` chose, read on every RPC by the access log (attributes, no calls)."""

    def __init__(self) -> None:
        self.json_lines = False  # the JSON renderer of `configure` is in place
        self.info = True  # the level lets info lines through


state = LogState()


def configure(level: str = "info", fmt: str = "auto") -> None:
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    min_level = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(min_level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    state.json_lines = not use_console
    state.info = min_level <= logging.INFO


_ACCESS_KEYS = frozenset(("method", "code", "ms", "peer", "request_id", "event", "level",
                          "timestamp"))
_prefixes: dict[tuple[str, str], str] = {}
# Peers as JSON text: a connection's calls share its peer (cleared beyond MAX_PEERS).
_peers: dict[str, str] = {}
MAX_PEERS = 10_000


def access_line(method: str, code: str, ms: float, peer: str, request_id: str,
                ns: int | None = None, tail: str | None = None) -> str:
    """The access-log line exactly as `configure`'s JSON chain renders
    `log.info("rpc", method=, code=, ms=round(ms, 3), peer=, request_id=)`: the call's keys,
    `event`, the bound context variables (`bind_contextvars`), `level`, then the ISO UTC
    `timestamp` of `ns` (Unix time in ns; now if None). `tail`: `_tail()`, when the caller
    made it already. `ms` is written as `repr(round(ms, 3))` writes it, from `:.3f`'s text
    (a third of the time: docs/performance.md, "Access line: ms and peers")."""
    prefix = _prefixes.get((method, code))
    if prefix is None:
        prefix = _prefixes[(method, code)] = (
            f'{{"method": {_quote(method)}, "code": {_quote(code)}, "ms": ')
    quoted = _peers.get(peer)
    if quoted is None:
        if len(_peers) >= MAX_PEERS:
            _peers.clear()
        quoted = _peers[peer] = _quote(peer)
    if tail is None:
        tail = _tail()
    if ms < 1e15:  # `:.3f` rounds as `round` does; only `repr` writes exponents
        text = f"{ms:.3f}".rstrip("0")
        if text[-1] == ".":
            text += "0"
    else:
        text = repr(round(ms, 3))
    return (f'{prefix}{text}, "peer": {quoted}, "request_id": {_quote(request_id)}, '
            f'{tail}{iso_utc(time.time_ns() if ns is None else ns)}"}}')


def access_lines(records: list[tuple[str, str, float, str, str, int]]) -> str:
    """`access_line` of each (method, code, seconds, peer, request id, its end as Unix time
    in ns), newline-separated, with the context variables bound now: one call per batch."""
    tail = _tail()
    return "\n".join([access_line(method, code, seconds * 1000, peer, request_id, ns, tail)
                      for method, code, seconds, peer, request_id, ns in records])


def _tail() -> str:
    """What follows the call's own keys up to the timestamp's text: `event`, the bound context
    variables but those the line sets itself, `level`."""
    bound = structlog.contextvars.get_contextvars()
    extra = "".join(f", {_quote(k)}: {dumps(v, default=_fallback)}"
                    for k, v in bound.items() if k not in _ACCESS_KEYS) if bound else ""
    return f'"event": "rpc"{extra}, "level": "info", "timestamp": "'


_second: tuple[int, str] = (-1, "")  # the last whole second seen and its text, swapped whole


def iso_utc(ns: int) -> str:
    """`datetime.now(UTC).isoformat()` with `Z` (structlog's TimeStamper) for the Unix time
    `ns`, microseconds floored as `datetime.now` does; the date part is made once a second."""
    global _second
    seconds, rest = divmod(ns, 1_000_000_000)
    known, text = _second
    if known != seconds:
        text = datetime.fromtimestamp(seconds, UTC).isoformat()[:19]
        _second = (seconds, text)
    micros = rest // 1000
    return f"{text}.{micros:06d}Z" if micros else f"{text}Z"


def _fallback(value: Any) -> Any:
    """As structlog's JSONRenderer: `__structlog__()` if the object has it, else `repr`."""
    try:
        return value.__structlog__()
    except AttributeError:
        return repr(value)
