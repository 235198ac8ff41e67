"""The per-RPC wrapper: authentication, status mapping and the access log, in one place.

A decorator rather than a gRPC interceptor: aio interceptors add a coroutine hop per call on
the hot path; this adds one function frame. Per call it reads the invocation metadata once
(bearer token and `x-request-id` in one scan), makes the request id at most once (the error
line and the access line of a call carry the same one), and renders the access line with
`logs.access_line` (no structlog processor chain) when the JSON format is configured.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import itertools
import os
import sys
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any, TypeVar

import grpc
import structlog
from redis.exceptions import RedisError

from sessiongate import logs
from sessiongate.domain import errors

log = structlog.get_logger("sessiongate.rpc")


class LoopBatchedStderr:
    """The access log's output: lines rendered as configured, written once per loop iteration.

    structlog's PrintLogger writes and flushes every line under a lock: one syscall per RPC,
    the largest cost of a near-cache CheckSession after gRPC itself (docs/performance.md).
    Here the lines of one event-loop iteration go out in one write, at the end of that same
    iteration (`call_soon`), so no line waits for later traffic; outside a loop: at once.
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
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
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


def request_id(context: Any) -> str:
    """The caller's `x-request-id` metadata if sane, else a process-unique one."""
    for key, value in context.invocation_metadata() or ():
        if key == "x-request-id":
            return request_id_of(value)
    return request_id_of(None)


def request_id_of(given: str | bytes | None) -> str:
    """`given` (the caller's `x-request-id` value) if sane, else a new process-unique id."""
    if given is not None:
        text = given.decode(errors="replace") if isinstance(given, bytes) else given
        if 0 < len(text) <= 128 and text.isprintable():
            return text
    return f"{_ID_PREFIX}-{next(_ids)}"


class Observer:
    """What every RPC reports to: the access log, and the metrics hooks if installed.

    `hooks` get (method, status, seconds) of every call; `response_hooks` get (method,
    response) of every successful call (the metrics count decisions from them).
    """

    def __init__(self, access_log: bool = True) -> None:
        self.access_log = access_log
        self.hooks: list[Callable[[str, str, float], None]] = []
        self.response_hooks: list[Callable[[str, Any], None]] = []

    def observe(self, method: str, code: str, seconds: float, context: Any,
                rid: str | None = None) -> None:
        """Report a finished call; `rid` is its request id if already known (else derived)."""
        for hook in self.hooks:
            hook(method, code, seconds)
        if self.access_log and logs.state.info:
            self.log_access(method, code, seconds, context.peer(),
                            request_id(context) if rid is None else rid)

    @staticmethod
    def log_access(method: str, code: str, seconds: float, peer: str, rid: str) -> None:
        ms = round(seconds * 1000, 3)
        if logs.state.json_lines:  # the configured JSON shape, without structlog's chain
            _access_output.msg(logs.access_line(method, code, ms, peer, rid))
        else:
            access_log.info("rpc", method=method, code=code, ms=ms, peer=peer, request_id=rid)


class Servicer:
    """Base of the servicers: each has the authenticator and observer of the runtime."""

    def __init__(self, auth: Any, observer: Observer) -> None:
        self.auth = auth
        self.observer = observer


H = TypeVar("H", bound=Callable[..., Awaitable[Any]])


def rpc(role: str) -> Callable[[H], H]:
    """Wrap a servicer method: auth for `role`, domain errors -> precise status, access log."""

    def wrap(fn: H) -> H:
        method = fn.__name__

        @functools.wraps(fn)
        async def handler(self: Servicer, request: Any, context: Any) -> Any:
            start = perf_counter()
            code = "OK"
            rid: str | None = None  # the request id, made once (error and access lines share it)
            header = given_rid = None
            try:
                for key, value in context.invocation_metadata() or ():  # one scan: auth + id
                    if key == "authorization":
                        if header is None:
                            header = value
                    elif key == "x-request-id" and given_rid is None:
                        given_rid = value
                self.auth.check_header(header, role)
                response = await fn(self, request, context)
                for response_hook in self.observer.response_hooks:
                    response_hook(method, response)
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
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"backend unavailable: {exc}")
            except Exception:
                code = "INTERNAL"
                rid = request_id_of(given_rid)
                log.exception("unhandled error", method=method, request_id=rid)
                await context.abort(grpc.StatusCode.INTERNAL, "internal error")
            finally:
                seconds = perf_counter() - start
                observer = self.observer
                for hook in observer.hooks:
                    hook(method, code, seconds)
                if observer.access_log and logs.state.info:
                    observer.log_access(method, code, seconds, context.peer(),
                                        request_id_of(given_rid) if rid is None else rid)

        return handler  # type: ignore[return-value]

    return wrap
