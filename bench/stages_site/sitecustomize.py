"""Loaded by the `sessiongate serve` that `bench.stages` starts (this folder is its
PYTHONPATH): leaves out parts of every request, as BENCH_STAGE names, so that what each
part costs is the difference between two stages' CPU per request (bench/stages.py).

- `answer`: each method answers, from its 20th call on, what it answered then, without
  running its handler: the server as it is (its registration, its background work) around
  a constant answer;
- `handler`: the handler runs (the wrapper, auth, the answer, a login's session), but the
  call is not recorded (`Observer.record`: no access line, no metrics) and a login's
  records are not queued (`BatchWriter.login`);
- `records`: as `handler`, with the login's records queued and written;
- unset: the whole request.

Patches public classes' methods only; nothing of this is in the product.
"""

from __future__ import annotations

import os
from typing import Any

STAGE = os.environ.get("BENCH_STAGE", "")
CONSTANT_AFTER = 20  # calls of a method before its answer is kept


def _constant(handler: Any) -> Any:
    """`handler` (a grpc method handler), answering its `CONSTANT_AFTER`th answer from then
    on without running."""
    real = handler.unary_unary
    kept: list[Any] = []
    calls = [0]

    async def answer(request: Any, context: Any) -> Any:
        if kept:
            return kept[0]
        got = await real(request, context)
        calls[0] += 1
        if calls[0] >= CONSTANT_AFTER:
            kept.append(got)
        return got

    return handler._replace(unary_unary=answer)  # grpc's handlers are named tuples


def _answer_stage() -> None:
    from sessiongate.service.registration import MethodTable

    original = MethodTable.service
    made: dict[str, tuple[Any, Any]] = {}

    def service(self: MethodTable, details: Any) -> Any:
        handler = original(self, details)
        if handler is None or handler.unary_unary is None:
            return handler
        got = made.get(details.method)
        if got is None or got[0] is not handler:
            got = made[details.method] = (handler, _constant(handler))
        return got[1]

    MethodTable.service = service  # type: ignore[method-assign, assignment]


def _no_call_records() -> None:
    from sessiongate.service.rpc import Observer

    def record(self: Observer, *args: Any, **kwargs: Any) -> None:
        """Nothing recorded: no access line, no metrics."""

    Observer.record = record  # type: ignore[method-assign]


def _no_login_records() -> None:
    from sessiongate.store.batch import BatchWriter

    def login(self: BatchWriter, *args: Any, **kwargs: Any) -> None:
        """Nothing queued: the login's records are not written."""

    BatchWriter.login = login  # type: ignore[method-assign]


if STAGE == "answer":
    _answer_stage()
elif STAGE == "handler":
    _no_call_records()
    _no_login_records()
elif STAGE == "records":
    _no_call_records()
elif STAGE:
    raise SystemExit(f"bench.stages: unknown BENCH_STAGE {STAGE!r}")
