"""The per-RPC wrapper: authentication, status mapping and the access log, in one place.

A decorator rather than a gRPC interceptor: aio interceptors add a coroutine hop per call on
the hot path; this adds one function frame. Per call it reads the invocation metadata once
(bearer token and `x-request-id` in one scan), makes the request id at most once (the error
line and the access line of a call carry the same one), and reports the call as a tuple
(`CallRecord`); the observer hands the calls of the last few milliseconds to the metrics and
renders their access lines together (`Observer.flush`; `logs.access_lines`, no structlog
processor chain, when the JSON format is configured).
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import itertools
import os
import sys
import time
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any, TypeVar

import grpc
import structlog

from sessiongate import logs
from sessiongate.domain import errors
from sessiongate.service.registration import call_metadata
from sessiongate.service.wire import Sent
from sessiongate.store.transport import RedisError

log = structlog.get_logger("sessiongate.rpc")


class LoopBatchedStderr:
    """The access log's output: a batch of JSON lines at once (`write`, from `Observer.flush`),
    or lines from structlog (console format) gathered until the end of the loop iteration.

    structlog's PrintLogger writes and flushes every line under a lock: one syscall per RPC,
    once the largest cost of a near-cache CheckSession after gRPC itself (docs/performance.md,
    "What was tried").
    Here a line given through structlog goes out with the others of its event-loop iteration
    in one write, at the end of that iteration (`call_soon`); outside a loop: at once.
    """

    def __init__(self) -> None:
        self._lines: list[str] = []

    def msg(self, message: str) -> None:
        self._lines.append(message)
        if len(self._lines) == 1:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:
                self.flush()

    info = debug = warning = error = critical = exception = msg

    def write(self, lines: str) -> None:
        """Write `lines` (newline-separated, none at the end) now, after those pending."""
        self._lines.append(lines)
        self.flush()

    def flush(self) -> None:
        if self._lines:
            text = "\n".join(self._lines) + "\n"
            self._lines.clear()
            sys.stderr.write(text)
            sys.stderr.flush()


_access_output = LoopBatchedStderr()
atexit.register(_access_output.flush)
access_log = structlog.wrap_logger(_access_output)

STATUS_OF: list[tuple[type[Exception], grpc.StatusCode]] = [
    (errors.OutOfRange, grpc.StatusCode.OUT_OF_RANGE),
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.Conflict, grpc.StatusCode.ABORTED),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.BackendUnavailable, grpc.StatusCode.UNAVAILABLE),
    (RedisError, grpc.StatusCode.UNAVAILABLE),
    (OSError, grpc.StatusCode.UNAVAILABLE),
]


def status_of(exc: BaseException) -> grpc.StatusCode | None:
    for cls, code in STATUS_OF:
        if isinstance(exc, cls):
            return code
    return None


_ID_PREFIX = os.urandom(4).hex()
_ids = itertools.count(1)


def request_id_of(given: str | bytes | None) -> str:
    """`given` (the caller's `x-request-id` value) if sane, else a new process-unique id."""
    if given is not None:
        text = given.decode(errors="replace") if isinstance(given, bytes) else given
        if 0 < len(text) <= 128 and text.isprintable():
            return text
    return f"{_ID_PREFIX}-{next(_ids)}"


# One finished call, as the wrapper records it (a plain tuple: the cheapest record to make):
# (method, status, seconds, its end on `perf_counter`, peer, request id or None, the caller's
#  x-request-id or None, the response or None).
CallRecord = tuple[str, str, float, float, str, str | None, Any, Any]

# How long a finished call's record waits for others before the batch is reported, at most:
# grpc.aio finishes about one call per event-loop iteration, so batching per iteration
# would write one access line per write(2) (docs/performance.md, "What was tried", row
# "Access lines and metrics batched per 5 ms").
FLUSH_AFTER_S = 0.005
MAX_PENDING = 2048  # records: beyond, reported at once (bounds memory under any load)


class Observer:
    """What every RPC reports to: the metrics hooks, if installed, and the access log.

    The wrapper appends a `CallRecord` per call (no rendering, no counting on the call's
    path); `flush` reports them together, at most `FLUSH_AFTER_S` later: `hooks` get the
    batch (the metrics count latencies and decisions from it), then the access log renders
    it and writes its lines in one write, each line stamped with its call's end. `active`
    is whether there is anything to report to (else no record is made).
    """

    def __init__(self, access_log: bool = True, loop: asyncio.AbstractEventLoop | None = None,
                 flush_after: float = FLUSH_AFTER_S) -> None:
        self.access_log = access_log
        self.hooks: list[Callable[[list[CallRecord]], None]] = []
        self.active = access_log
        self.records: list[CallRecord] = []
        self.flush_after = flush_after
        # The server's loop, given: `asyncio.get_running_loop` is a getpid() system call.
        self._loop = loop

    def add_hook(self, hook: Callable[[list[CallRecord]], None]) -> None:
        self.hooks.append(hook)
        self.active = True

    def record(self, method: str, code: str, seconds: float, peer: str, rid: str | None,
               given_rid: Any = None, response: Any = None) -> None:
        """Report a finished call (the wrapper calls this): `rid` its request id if made
        already, else made when its line is rendered from `given_rid` (the caller's, if
        sane)."""
        records = self.records
        records.append((method, code, seconds, perf_counter(), peer, rid, given_rid, response))
        if len(records) == 1:
            self.schedule()
        elif len(records) >= MAX_PENDING:
            self.flush()

    def schedule(self) -> None:
        """Flush in `flush_after` seconds (at once outside an event loop)."""
        loop = self._loop
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
        loop.call_later(self.flush_after, self.flush)

    def flush(self) -> None:
        """Report the calls recorded so far: to the hooks, then to the access log."""
        records = self.records
        if not records:
            return
        self.records = []
        for hook in self.hooks:
            hook(records)
        if not (self.access_log and logs.state.info):
            return
        if logs.state.json_lines:  # the configured JSON shape, without structlog's chain
            wall, now = time.time_ns(), perf_counter()  # a call's end on the wall clock
            _access_output.write(logs.access_lines(
                [(m, c, s, p, request_id_of(g) if r is None else r,
                  wall - int((now - end) * 1e9)) for m, c, s, end, p, r, g, _ in records]))
            return
        for method, code, seconds, _, peer, rid, given, _ in records:  # stamped now
            access_log.info("rpc", method=method, code=code, ms=round(seconds * 1000, 3),
                            peer=peer, request_id=request_id_of(given) if rid is None else rid)


class Servicer:
    """Base of the servicers: each has the authenticator and observer of the runtime."""

    def __init__(self, auth: Any, observer: Observer) -> None:
        self.auth = auth
        self.observer = observer


H = TypeVar("H", bound=Callable[..., Awaitable[Any]])


Fast = Callable[[Any, Any], tuple[Any, Any] | None]


def rpc(role: str, fast: Fast | None = None) -> Callable[[H], H]:
    """Wrap a servicer method: auth for `role`, domain errors -> precise status, access log.

    `fast(servicer, request)`, if given, is tried first: a plain function that answers the
    common case without a coroutine of its own: (what to send, what to record as the
    response), or None: the method answers. The method may answer the same pair as a
    `wire.Sent`."""

    def wrap(fn: H) -> H:
        method = fn.__name__

        @functools.wraps(fn)
        async def handler(self: Servicer, request: Any, context: Any) -> Any:
            start = perf_counter()
            code = "OK"
            rid: str | None = None  # the request id, made once (error and access lines share it)
            header = given_rid = response = None
            try:
                metadata = call_metadata.get()  # as grpc built it (service/registration.py)
                if metadata is None:
                    metadata = context.invocation_metadata() or ()
                for key, value in metadata:  # one scan: auth + id
                    if key == "authorization":
                        if header is None:
                            header = value
                    elif key == "x-request-id" and given_rid is None:
                        given_rid = value
                auth = self.auth
                roles = auth.verified.get(header)  # a header verified before: no call
                if roles is None or role not in roles:
                    auth.check_header(header, role)
                if fast is not None:
                    got = fast(self, request)
                    if got is not None:
                        response = got[1]
                        return got[0]
                response = await fn(self, request, context)
                if response.__class__ is Sent:  # bytes, and what the metrics read of them
                    sent, response = response, response.answered
                    return sent.wire
                return response
            except grpc.aio.AbortError:  # the handler aborted with its own status
                code = getattr(context.code(), "name", "ABORTED")
                raise
            except errors.SessionGateError as exc:
                status = status_of(exc) or grpc.StatusCode.INTERNAL
                code = status.name
                await context.abort(status, str(exc))
            except (RedisError, OSError) as exc:
                code = "UNAVAILABLE"
                rid = request_id_of(given_rid)
                log.warning("backend error", method=method, error=repr(exc), request_id=rid)
                # Redis's text (hosts, script hashes) stays in the log; the id finds it there.
                await context.abort(grpc.StatusCode.UNAVAILABLE,
                                    f"backend unavailable (request id {rid})")
            except Exception:
                code = "INTERNAL"
                rid = request_id_of(given_rid)
                log.exception("unhandled error", method=method, request_id=rid)
                await context.abort(grpc.StatusCode.INTERNAL, "internal error")
            finally:
                observer = self.observer
                if observer.active:
                    observer.record(method, code, perf_counter() - start,
                                    context.peer() if observer.access_log else "", rid,
                                    given_rid, response)

        return handler  # type: ignore[return-value]

    return wrap
