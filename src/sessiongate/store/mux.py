"""One multiplexed Redis connection for the hot Lua calls, beside the redis-py client.

Why: a seat-limited login makes one `take_seat.lua` call. Through redis-py each call costs a
pooled connection of its own (so tens of sockets, each woken and read separately), its retry
and timeout wrappers and a pure-Python encoder: ~130 us of CPU per call, more than the
floor's whole gRPC request. Here calls are hand-encoded RESP written on one shared
connection, and replies, which arrive together, are parsed by hiredis in one
`data_received` and matched to their callers in order (Redis answers a connection's commands
in the order sent).

Logins' writes are batched by the event loop's idleness, not by a timer. A command sent with
`hold` (a seat-limited login's take_seat, a session's renewal) is written in the loop
iteration after the one that queued it, or later while the loop has other callbacks ready
to run (it is busy, so more logins are coming), until the oldest has waited `HOLD_MAX` or
`BATCH_MAX` commands are queued. An idle loop writes at once. Saturated, the seat-limited
login path then makes one write per ~4 logins instead of one each (and Redis one read and
one reply write), ~20-30 us less CPU per login (docs/performance.md, row "Login writes held
while the loop is busy"). grpc.aio hands a saturated server about one request per loop
iteration, so batching within one iteration, as Redis clients' auto-pipelining does, found
almost nothing to batch (0.6 %).
Other commands are written at once, with any held ones ahead of them (replies are matched
in order): a chain of round trips such as the payment consumer's would pay a loop
iteration more per trip (measured: ~10 % fewer events/s).

What it keeps from the configured client: host, port, TLS context, credentials, db, client
name, RESP version (2 or 3: a Lua reply's types depend on it), encoding, the socket timeouts,
the errors (redis-py's own classes: `NoScriptError`, `ResponseError`, ...), and the one retry
on a `ConnectionError` that `client.connect` configures. Unix sockets and Redis Cluster are
not handled (`Mux.of` returns None): the caller keeps using redis-py there.

Safety: a cancelled caller's reply is still read and dropped, so the replies of the others
stay matched; if the oldest command has waited `socket_timeout` for its reply, the connection
is dropped and every command in flight fails with `TimeoutError` (it may have run); a lost
connection fails the commands in flight with `ConnectionError`, and the next call reconnects.

`Mux.subscribe` opens a further connection with the same settings for one pub/sub channel
(the near-cache's invalidations): its messages are parsed the same way and handed to a
callback as they arrive, several per read, instead of one redis-py coroutine per message.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import hiredis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection, SSLConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

_MORE = object()  # hiredis: no complete reply buffered yet
# An argument's RESP length prefix, made once for short ones: `encode` is ~25 % quicker
# than with one bytes formatting per argument (a sweep's commit has ~24 arguments).
_SHORT = 1024
_LENGTHS = [b"$%d\r\n" % n for n in range(_SHORT)]
_PUSH: Any = getattr(hiredis, "PushNotification", ())  # RESP3 out-of-band, never an answer
# Write batching (see above): the longest a queued command waits for a busy loop, and the
# most commands written at once.
HOLD_MAX = 0.001
BATCH_MAX = 64


class _Waiter:
    """A caller awaiting `n` replies (`replies` None: one reply, handed over as it is)."""

    __slots__ = ("fut", "n", "replies", "since")

    def __init__(self, fut: asyncio.Future[Any], n: int, many: bool, since: float) -> None:
        self.fut = fut
        self.n = n
        self.replies: list[Any] | None = [] if many else None
        self.since = since


class _Protocol(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float | None,
                 reader: Any) -> None:
        self.loop = loop
        self.timeout = timeout
        self.reader = reader
        self.transport: asyncio.Transport | None = None
        self.pending: collections.deque[_Waiter] = collections.deque()
        self.closed = False
        self._watchdog: asyncio.TimerHandle | None = None
        # A subscriber's connection (`Mux.subscribe`): every reply goes here, none is matched.
        self.on_push: Callable[[Any], None] | None = None
        self.lost: asyncio.Future[Exception] = loop.create_future()  # its error, once closed
        self._queued: list[bytes] = []  # encoded commands not written yet (`_flush`)
        self._queued_since = 0.0
        # The loop's queue of callbacks ready to run (CPython's asyncio; absent on other
        # loops: then every flush writes).
        self._ready: Sequence[Any] = getattr(loop, "_ready", ())
        self.writes = 0  # socket writes of commands, for tests and debugging

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not a subclass of asyncio.Transport).
        self.transport = cast(asyncio.Transport, transport)

    def send(self, payload: bytes, n: int = 1, many: bool = False, hold: bool = False
             ) -> asyncio.Future[Any]:
        """Write `n` encoded commands, or with `hold` queue them for a later write (`_flush`).
        The future gets the reply, an error reply raised; or with `many`, the list of the
        `n` replies, error replies in their places."""
        if self.closed or self.transport is None or self.transport.is_closing():
            self._fail(RedisConnectionError("Redis connection closed"))
            raise RedisConnectionError("Redis connection closed")
        fut = self.loop.create_future()
        now = self.loop.time()
        self.pending.append(_Waiter(fut, n, many, now))
        queued = self._queued
        if hold:
            queued.append(payload)
            if len(queued) == 1:
                self._queued_since = now
                self.loop.call_soon(self._flush)
        elif queued:  # behind the held ones, in the same write
            queued.append(payload)
            self._write_queued()
        else:
            self.writes += 1
            self.transport.write(payload)
        if self._watchdog is None and self.timeout is not None:
            self._watchdog = self.loop.call_at(now + self.timeout, self._check)
        return fut

    def _flush(self) -> None:
        """Write the queued commands, unless the loop is busy and they may wait longer."""
        queued = self._queued
        if not queued:  # written behind an unheld command, or dropped by `_fail`
            return
        if (self._ready and len(queued) < BATCH_MAX
                and self.loop.time() - self._queued_since < HOLD_MAX):
            self.loop.call_soon(self._flush)  # after the callbacks ready now
            return
        self._write_queued()

    def _write_queued(self) -> None:
        queued, self._queued = self._queued, []
        assert self.transport is not None
        self.writes += 1
        self.transport.write(queued[0] if len(queued) == 1 else b"".join(queued))

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        pending = self.pending
        while True:
            try:
                reply = reader.gets()
            except InvalidResponse as exc:  # garbage on the wire: nothing after it is matched
                self._fail(exc)
                return
            if reply is _MORE:
                return
            if self.on_push is not None:
                self.on_push(reply)
                continue
            if _PUSH and isinstance(reply, _PUSH):
                continue
            if not pending:  # an answer nobody asked for: out of step, start over
                self._fail(InvalidResponse("unexpected reply from Redis"))
                return
            w = pending[0]
            if w.replies is None:
                pending.popleft()
                if not w.fut.done():  # else its caller was cancelled: the reply is dropped
                    if isinstance(reply, ResponseError):
                        w.fut.set_exception(reply)
                    else:
                        w.fut.set_result(reply)
            else:
                w.replies.append(reply)
                if len(w.replies) == w.n:
                    pending.popleft()
                    if not w.fut.done():
                        w.fut.set_result(w.replies)

    def _check(self) -> None:
        """The oldest command waits the longest: if it has had no reply within the timeout,
        Redis (or the network) is stuck, as a socket read timeout would say."""
        self._watchdog = None
        if not self.pending or self.closed:
            return
        assert self.timeout is not None
        due = self.pending[0].since + self.timeout
        if self.loop.time() >= due:
            self._fail(RedisTimeoutError("Timeout reading from Redis (multiplexed connection)"))
        else:
            self._watchdog = self.loop.call_at(due, self._check)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"Redis connection lost: {exc or 'closed by server'}"))

    def _fail(self, exc: Exception) -> None:
        """Close for good and fail every command in flight with `exc`."""
        self.closed = True
        self._queued = []
        if not self.lost.done():
            self.lost.set_result(exc)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        pending, self.pending = self.pending, collections.deque()
        for w in pending:
            if not w.fut.done():  # an exception each: a raised one collects its traceback
                w.fut.set_exception(type(exc)(*exc.args))
        if self.transport is not None:
            self.transport.abort()


class Subscription:
    """A subscribed connection (`Mux.subscribe`): `lost` completes with the connection's error
    when it is lost; `close()` closes it."""

    def __init__(self, proto: _Protocol) -> None:
        self._proto = proto
        self.lost = proto.lost

    def close(self) -> None:
        if not self._proto.closed:
            self._proto._fail(RedisConnectionError("subscription closed"))


class Mux:
    """A lazily (re)connected multiplexed connection with the settings of a redis-py client."""

    def __init__(self, template: Connection) -> None:
        self._template = template  # never connected: its settings and connect arguments
        enc = template.encoder
        self._encoding, self._errors = enc.encoding, enc.encoding_errors
        self._encode_other: Callable[[Any], bytes] = enc.encode
        self._reader_args: dict[str, Any] = {
            "protocolError": InvalidResponse, "replyError": template._parser.parse_error,
            "notEnoughData": _MORE}
        if enc.decode_responses:
            self._reader_args.update(encoding=enc.encoding, errors=enc.encoding_errors)
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Task[_Protocol] | None = None

    @classmethod
    def of(cls, redis: Redis) -> Mux | None:
        """The Mux of `redis` (one per client), or None where redis-py must stay: Redis
        Cluster (its client routes each call by slot), unix sockets, a connection class
        of its own. Closed with the client when it is a `client.Client`."""
        if isinstance(redis, RedisCluster):
            return None
        mux: Mux | None = redis.__dict__.get("_sessiongate_mux")
        if mux is None:
            template = redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]
            if type(template) not in (Connection, SSLConnection):
                return None
            mux = redis.__dict__["_sessiongate_mux"] = cls(template)
            closers = getattr(redis, "on_close", None)  # a client.Client
            if closers is not None:
                closers.append(mux.aclose)
        return mux

    @property
    def writes(self) -> int:
        """Socket writes of commands on the current connection (tests, debugging)."""
        return self._proto.writes if self._proto is not None else 0

    @property
    def text_encoding(self) -> tuple[str, str]:
        """(encoding, errors) of text arguments, as the redis-py client's."""
        return self._encoding, self._errors

    def encode(self, args: Sequence[Any], head: bytes = b"", count: int = 0) -> bytes:
        """RESP of one command (after `head`, its first `count` arguments already encoded);
        str, bytes and int by hand, the rest by redis-py's encoder (floats; the errors for
        None or bool)."""
        out = [b"*%d\r\n%b" % (len(args) + count, head)]
        append = out.append
        encoding, errors = self._encoding, self._errors
        for a in args:
            t = type(a)
            if t is str:
                b = a.encode(encoding, errors)
            elif t is bytes:
                b = a
            elif t is int:
                b = b"%d" % a
            else:
                b = self._encode_other(a)
            n = len(b)
            append(_LENGTHS[n] if n < _SHORT else b"$%d\r\n" % n)
            append(b)
            append(b"\r\n")
        return b"".join(out)

    def encoder_for(self, args: Sequence[Any], at: int) -> Callable[[str], bytes]:
        """`encode(args)` with the text `args[at]` given at each call, the rest encoded once
        (the same command for each of many keys: ~0.3 us instead of ~1.5)."""
        head = self.encode(args[:at], b"", len(args) - at)
        tail = self.encode(args[at + 1:])
        tail = tail[tail.index(b"\r\n") + 2:]  # without its own "*<count>"
        encoding, errors = self._encoding, self._errors

        def encode(arg: str) -> bytes:
            b = arg.encode(encoding, errors)
            return b"%b$%d\r\n%b\r\n%b" % (head, len(b), b, tail)
        return encode

    async def call(self, *args: Any) -> Any:
        """One command's reply; an error reply is raised as redis-py's exception for it."""
        return await self.request(self.encode(args))

    async def call_many(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """The replies of `commands`, sent in one write; an error reply is returned in its
        place (a `ResponseError`), not raised."""
        if not commands:
            return []
        payload = b"".join([self.encode(c) for c in commands])
        return list(await self.request(payload, len(commands), True))

    def send(self, payload: bytes, n: int = 1, many: bool = False, hold: bool = False
             ) -> Awaitable[Any]:
        """The reply to `payload` (`n` encoded commands; `many`, `hold`: as in
        `_Protocol.send`), without retry: the hot path, a bare future while the connection
        is up."""
        proto = self._proto
        if proto is not None and not proto.closed and proto.loop is asyncio.get_running_loop():
            return proto.send(payload, n, many, hold)
        return self.resend(payload, n, many)

    async def request(self, payload: bytes, n: int = 1, many: bool = False) -> Any:
        """`send`, once more on a new connection if the connection was lost: one that was
        open before this call may have died unnoticed (Redis restarted); the redis-py client
        retries so too (`client.connect`)."""
        try:
            return await self.send(payload, n, many)
        except RedisConnectionError:
            return await self.resend(payload, n, many)

    async def resend(self, payload: bytes, n: int = 1, many: bool = False) -> Any:
        """`send` on the live connection, opening one if needed (a failed one is closed)."""
        return await (await self._connect()).send(payload, n, many)

    async def _connect(self) -> _Protocol:
        """The live connection, opened by one caller for all (a cancelled caller does not
        cancel the others' connect)."""
        proto = self._proto
        loop = asyncio.get_running_loop()
        if proto is not None and not proto.closed and proto.loop is loop:
            return proto
        if self._connecting is None or self._connecting.get_loop() is not loop:
            self._connecting = asyncio.ensure_future(self._open())
            self._connecting.add_done_callback(self._connected)
        return await asyncio.shield(self._connecting)

    def _connected(self, task: asyncio.Task[_Protocol]) -> None:
        if self._connecting is task:
            self._connecting = None
        if not task.cancelled():
            task.exception()  # retrieved: its callers got it, or all of them were cancelled

    async def subscribe(self, channel: str, on_message: Callable[[Any], None]
                        ) -> Subscription:
        """A connection of its own, subscribed to `channel`: the data of each message goes to
        `on_message` as it arrives, several per read, without redis-py's per-message
        coroutines and dicts. Returns once Redis confirmed the subscription; raises if the
        connection or the subscription fails."""
        proto = await self._open_connection()
        confirmed: asyncio.Future[None] = proto.loop.create_future()

        def push(reply: Any) -> None:  # RESP2 arrays or RESP3 pushes: [kind, channel, data]
            if not isinstance(reply, list) or len(reply) < 3:
                return
            kind = reply[0]
            if kind in (b"message", "message"):
                on_message(reply[2])
            elif kind in (b"subscribe", "subscribe") and not confirmed.done():
                confirmed.set_result(None)

        proto.on_push = push
        try:
            assert proto.transport is not None
            proto.transport.write(self.encode(["SUBSCRIBE", channel]))
            either: list[asyncio.Future[Any]] = [confirmed, proto.lost]
            async with asyncio.timeout(self._template.socket_timeout):
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if not confirmed.done():
                raise proto.lost.result() if proto.lost.done() else RedisTimeoutError(
                    "no SUBSCRIBE confirmation")
        except BaseException:
            proto._fail(RedisConnectionError("subscription failed"))
            raise
        return Subscription(proto)

    async def _open(self) -> _Protocol:
        proto = await self._open_connection()
        self._proto = proto
        return proto

    async def _open_connection(self) -> _Protocol:
        """A new connection, handshake done (not the shared one)."""
        t = self._template
        loop = asyncio.get_running_loop()
        proto = _Protocol(loop, t.socket_timeout, hiredis.Reader(**self._reader_args))
        try:
            async with asyncio.timeout(t.socket_connect_timeout):
                await loop.create_connection(lambda: proto, **t._connection_arguments())
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"Error connecting to Redis: {exc}") from exc
        try:
            await self._handshake(proto)
        except BaseException:
            proto._fail(RedisConnectionError("Redis handshake failed"))
            raise
        return proto

    async def _handshake(self, proto: _Protocol) -> None:
        """What redis-py's `on_connect` sends, in one round trip: HELLO (RESP3, with the
        credentials) or AUTH, CLIENT SETNAME, SELECT."""
        t = self._template
        auth: Sequence[Any] | None = None
        if t.credential_provider is not None or t.username or t.password:
            if t.credential_provider is not None:
                auth = await t.credential_provider.get_credentials_async()
            else:
                auth = (t.username, t.password) if t.username else (t.password,)
        commands: list[Sequence[Any]] = []
        if int(t.protocol or 2) == 3:
            hello: list[Any] = ["HELLO", 3]
            if auth:
                hello += ["AUTH", *(auth if len(auth) == 2 else ("default", *auth))]
            commands.append(hello)
        elif auth:
            commands.append(["AUTH", *auth])
        if t.client_name:
            commands.append(["CLIENT", "SETNAME", t.client_name])
        if t.db:
            commands.append(["SELECT", t.db])
        if not commands:
            return
        replies = await proto.send(b"".join([self.encode(c) for c in commands]),
                                   len(commands), True)
        for r in replies:
            if isinstance(r, Exception):
                raise r

    async def aclose(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(BaseException):
                await self._connecting
            self._connecting = None
        if self._proto is not None:
            self._proto._fail(RedisConnectionError("closed"))
            self._proto = None
