"""The transport on one Redis server (`transport.Transport`): one multiplexed connection.

Why not a Redis library: measured on the seat-limited login (one EVALSHA per login) and the
payment stream, redis-py with hiredis, coredis and valkey-glide all cost 40-100 % more
instructions per request than this (docs/performance.md, "Redis transport: measured").
Commands are hand-encoded RESP written on one shared connection, and replies, which arrive
together, are parsed by hiredis in one `data_received` and matched to their callers in order
(Redis answers a connection's commands in the order sent).

Logins' writes are batched by their arrival rate, with a timer (public asyncio only). A
command sent with `hold` (a seat-limited login's take_seat) is written at once if none came
within the last `HOLD` (an idle login waits for nothing); else logins are coming, and it
waits `HOLD` (`loop.call_later`) for the others, unless `BATCH_MAX` are queued first. Two
holds in a row that gathered no other command (a single client's logins one after another)
stop the holding until a command is queued while another is in flight. Saturated, a write
carries as many logins (~3-5) as when the hold read the loop's private ready queue, where
counting `call_soon` turns with new arrivals carried ~1.1: server CPU per seat-limited login
335 us vs 428 (the ready queue's 341), instructions 680k vs 711k (690k) (docs/performance.md,
"Login writes held 1 ms by a timer"). Other commands are written at once, with any held ones
ahead of them (replies are matched in order): a chain of round trips such as the payment
consumer's would pay a loop iteration more per trip.

Connection settings come from the URL (`redis.asyncio.connection.parse_url`, redis-py's
public parser): host, port or unix path, TLS (`rediss://`, its `ssl_*` options), credentials,
db, client name, RESP version (`protocol=3`: a Lua reply's types depend on it), timeouts
(else those of `client.OPTIONS`); any other option is refused (`ValueError`), not ignored. Error
replies become redis-py's public exception classes, with the messages redis-py gives them.

Safety: a cancelled caller's reply is still read and dropped, so the replies of the others
stay matched; if the oldest command has waited `socket_timeout` for its reply, the connection
is dropped and every command in flight fails with `TimeoutError` (it may have run); a lost
connection fails the commands in flight with `ConnectionError`, and the next call reconnects
(once more on a new connection: one opened before may have died unnoticed).

`subscribe` opens a further connection with the same settings for one pub/sub channel
(the near-cache's invalidations): its messages are parsed the same way and handed to a
callback as they arrive, several per read.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, cast

import hiredis
from redis.asyncio.connection import parse_url
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ClusterDownError,
    DataError,
    ExecAbortError,
    InvalidResponse,
    MasterDownError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sessiongate.store.transport import VARIABLE, Call, Script

_MORE = object()  # hiredis: no complete reply buffered yet
# An argument's RESP length prefix, made once for short ones: `encode` is ~25 % quicker
# than with one bytes formatting per argument (a sweep's commit has ~24 arguments).
_SHORT = 1024
_LENGTHS = [b"$%d\r\n" % n for n in range(_SHORT)]
_PUSH: Any = getattr(hiredis, "PushNotification", ())  # RESP3 out-of-band, never an answer
# Write batching (see above): how long a held command waits for others (and how recent the
# previous one must be for it to wait), and the most commands written at once.
HOLD = 0.001
BATCH_MAX = 64
# Error replies by their first word, as redis-py's exceptions (the rest: ResponseError).
# As redis-py, the message of one of these leaves its first word out; any other's is whole.
_ERRORS: dict[str, Callable[[str], Exception]] = {
    "ERR": ResponseError, "NOSCRIPT": NoScriptError, "READONLY": ReadOnlyError,
    "NOPERM": NoPermissionError,
    "WRONGPASS": AuthenticationError, "NOAUTH": AuthenticationError,
    "OOM": OutOfMemoryError, "LOADING": BusyLoadingError, "TRYAGAIN": TryAgainError,
    "CLUSTERDOWN": ClusterDownError, "MASTERDOWN": MasterDownError,
    "EXECABORT": ExecAbortError,
}


# What a URL may set (`parse_url`) that the Mux honours; any other option (pool size,
# keepalive, decoded replies, retries on timeout, ...) is refused, not silently ignored.
_IMPLIED = frozenset({"host", "port", "path", "connection_class"})
_HONOURED = _IMPLIED | {
    "db", "username", "password", "client_name", "protocol", "socket_timeout",
    "socket_connect_timeout", "ssl_ca_certs", "ssl_ca_path", "ssl_cert_reqs",
    "ssl_check_hostname", "ssl_certfile", "ssl_keyfile", "ssl_password"}


def _error(message: str) -> Exception:
    """hiredis's `replyError`: an error reply as redis-py's exception for it, with the
    message redis-py gives it."""
    code, _, rest = message.partition(" ")
    known = _ERRORS.get(code)
    return ResponseError(message) if known is None else known(rest)


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
        self._last_held = -HOLD  # when the last held command was queued (loop time)
        self._empty_holds = 0  # holds in a row that gathered no other command
        self._timer: asyncio.TimerHandle | None = None  # the pending hold's `_flush`
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
            recent, self._last_held = now - self._last_held < HOLD, now
            if len(queued) >= BATCH_MAX:
                self._empty_holds = 0
                self._write_queued()
            elif len(queued) == 1:
                if recent and (self._empty_holds < 2 or len(self.pending) > 1):
                    self._timer = self.loop.call_later(HOLD, self._flush)
                else:
                    self._write_queued()
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
        """The hold is over: write what it gathered."""
        self._timer = None
        self._empty_holds = 0 if len(self._queued) > 1 else self._empty_holds + 1
        self._write_queued()

    def _write_queued(self) -> None:
        if self._timer is not None:  # written before its hold is over
            self._timer.cancel()
            self._timer = None
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
                    if isinstance(reply, Exception):  # an error reply (`_error`)
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
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
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
    """A lazily (re)connected multiplexed connection to the Redis server at a URL."""

    sharded = False

    def __init__(self, url: str, *, socket_timeout: float | None = None,
                 socket_connect_timeout: float | None = None, **_: Any) -> None:
        o: dict[str, Any] = dict(parse_url(url))
        refused = sorted(set(o) - _HONOURED)
        if refused or o.get("protocol", 2) not in (2, 3):
            raise ValueError(
                f"Redis URL option(s) {', '.join(refused) or 'protocol'}: not supported on one "
                f"server (store/mux.py honours {', '.join(sorted(_HONOURED - _IMPLIED))})")
        self._path: str | None = o.get("path")
        self._host: str = o.get("host", "localhost")
        self._port: int = int(o.get("port", 6379))
        self._ssl = _ssl_context(o) if url.lower().startswith("rediss://") else None
        self._db = int(o.get("db") or 0)
        self._username: str | None = o.get("username")
        self._password: str | None = o.get("password")
        self._client_name: str | None = o.get("client_name")
        self._protocol = int(o.get("protocol") or 2)
        self.timeout: float | None = o.get("socket_timeout", socket_timeout)
        self._connect_timeout: float | None = o.get("socket_connect_timeout",
                                                   socket_connect_timeout)
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Task[_Protocol] | None = None

    @property
    def writes(self) -> int:
        """Socket writes of commands on the current connection (tests, debugging)."""
        return self._proto.writes if self._proto is not None else 0

    def encode(self, args: Sequence[Any], head: bytes = b"", count: int = 0) -> bytes:
        """RESP of one command (after `head`, its first `count` arguments already encoded):
        str (UTF-8), bytes, int and float (its repr, as redis-py); anything else is refused
        with redis-py's `DataError`."""
        out = [b"*%d\r\n%b" % (len(args) + count, head)]
        append = out.append
        for a in args:
            t = type(a)
            if t is str:
                b = a.encode()
            elif t is bytes:
                b = a
            elif t is int:
                b = b"%d" % a
            else:
                b = _encode_other(a)
            n = len(b)
            append(_LENGTHS[n] if n < _SHORT else b"$%d\r\n" % n)
            append(b)
            append(b"\r\n")
        return b"".join(out)

    def call(self, *args: Any) -> Awaitable[Any]:
        return self.request(self.encode(args))

    async def many(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        if not commands:
            return []
        payload = b"".join([self.encode(c) for c in commands])
        return list(await self.request(payload, len(commands), True))

    def evalsha(self, script: Script, keys: Sequence[Any], args: Sequence[Any],
                hold: bool = False) -> Awaitable[Any]:
        payload = self.encode((script.sha, len(keys), *keys, *args), b"$7\r\nEVALSHA\r\n", 1)
        return self._evalsha(script, payload, hold)

    async def _evalsha(self, script: Script, payload: bytes, hold: bool) -> Any:
        try:
            return await self.send(payload, 1, False, hold)  # one future, no other coroutine
        except NoScriptError:
            pass
        except RedisConnectionError:  # one more try on a new connection, as `request`
            try:
                return await self.resend(payload)
            except NoScriptError:  # a restarted Redis has no scripts
                pass
        await self.call("SCRIPT", "LOAD", script.text)
        return await self.request(payload)

    async def evalsha_many(self, script: Script, calls: Sequence[Call]) -> list[Any]:
        if not calls:
            return []
        commands = [("EVALSHA", script.sha, len(k), *k, *a) for k, a in calls]
        results = await self.many(commands)
        missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missing:
            await self.call("SCRIPT", "LOAD", script.text)
            again = await self.many([commands[i] for i in missing])
            for i, res in zip(missing, again, strict=True):
                results[i] = res
        return results

    def prepare(self, script: Script, keys: Sequence[Any], args: Sequence[Any]
                ) -> Callable[..., Awaitable[Any]]:
        """The EVALSHA encoded once but for the `VARIABLE` arguments: a call formats those
        into the rest (one bytes `%`), instead of encoding every argument anew (a
        seat-limited login's has 14 arguments, 10 of them the same for a user all day)."""
        every = (len(keys), *keys, *args)
        fmt = [b"*%d\r\n$7\r\nEVALSHA\r\n" % (len(every) + 2), self.encode((script.sha,))[4:]]
        for a in every:
            fmt.append(b"$%d\r\n%b\r\n" if a is VARIABLE
                       else self.encode((a,))[4:].replace(b"%", b"%%"))
        template = b"".join(fmt)

        def call(*values: str | int) -> Awaitable[Any]:
            parts: list[Any] = []
            for v in values:
                b = b"%d" % v if type(v) is int else str(v).encode()
                parts += (len(b), b)
            return self._evalsha(script, template % tuple(parts), True)
        return call

    async def scan(self, match: str, kind: str | None = None, count: int = 1000
                   ) -> AsyncIterator[bytes]:
        cursor: Any = b"0"
        while True:
            cursor, found = await self.call("SCAN", cursor, "MATCH", match, "COUNT", count,
                                            *(("TYPE", kind) if kind else ()))
            for key in found:
                yield key
            if cursor == b"0":
                return

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
        open before this call may have died unnoticed (Redis restarted). Safe for any
        command: a command on a lost connection was not executed."""
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
        `on_message` as it arrives, several per read, without a coroutine per message."""
        proto = await self._open_connection()
        confirmed: asyncio.Future[None] = proto.loop.create_future()

        def push(reply: Any) -> None:  # RESP2 arrays or RESP3 pushes: [kind, channel, data]
            if not isinstance(reply, list) or len(reply) < 3:
                return
            kind = reply[0]
            if kind == b"message":
                on_message(reply[2])
            elif kind == b"subscribe" and not confirmed.done():
                confirmed.set_result(None)

        proto.on_push = push
        try:
            assert proto.transport is not None
            proto.transport.write(self.encode(["SUBSCRIBE", channel]))
            either: list[asyncio.Future[Any]] = [confirmed, proto.lost]
            async with asyncio.timeout(self.timeout):
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
        loop = asyncio.get_running_loop()
        reader = hiredis.Reader(protocolError=InvalidResponse, replyError=_error,
                                notEnoughData=_MORE)
        proto = _Protocol(loop, self.timeout, reader)
        try:
            async with asyncio.timeout(self._connect_timeout):
                if self._path is not None:
                    await loop.create_unix_connection(lambda: proto, self._path)
                else:
                    await loop.create_connection(
                        lambda: proto, self._host, self._port, ssl=self._ssl,
                        server_hostname=self._host if self._ssl is not None else None)
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"Error connecting to Redis: {exc}") from exc
        try:
            await self._handshake(proto)
        except BaseException:
            proto._fail(RedisConnectionError("Redis handshake failed"))
            raise
        return proto

    async def _handshake(self, proto: _Protocol) -> None:
        """What redis-py sends on connecting, in one round trip: HELLO (RESP3, with the
        credentials) or AUTH, CLIENT SETNAME, SELECT."""
        auth: tuple[str, ...] = ()
        if self._password is not None:
            auth = ((self._username, self._password) if self._username
                    else (self._password,))
        commands: list[Sequence[Any]] = []
        if self._protocol == 3:
            hello: list[Any] = ["HELLO", 3]
            if auth:
                hello += ["AUTH", *(auth if len(auth) == 2 else ("default", *auth))]
            commands.append(hello)
        elif auth:
            commands.append(["AUTH", *auth])
        if self._client_name:
            commands.append(["CLIENT", "SETNAME", self._client_name])
        if self._db:
            commands.append(["SELECT", self._db])
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


def _encode_other(value: Any) -> bytes:
    """A float, or a subclass of str, bytes or int (not bool: refused, as by redis-py)."""
    if isinstance(value, float):
        return repr(value).encode()
    if isinstance(value, str):
        return str(value).encode()
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return b"%d" % value
    raise DataError(f"Invalid input of type: {type(value).__name__!r}. Convert to a "
                    "bytes, string, int or float first.")


_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL,
              "required": ssl.CERT_REQUIRED}


def _ssl_context(options: dict[str, Any]) -> ssl.SSLContext:
    """The TLS context of a `rediss://` URL's `ssl_*` options (as redis-py reads them)."""
    ctx = ssl.create_default_context(cafile=options.get("ssl_ca_certs"),
                                     capath=options.get("ssl_ca_path"))
    reqs = options.get("ssl_cert_reqs", "required")
    ctx.check_hostname = bool(options.get("ssl_check_hostname", reqs == "required"))
    ctx.verify_mode = _CERT_REQS.get(str(reqs).lower(), ssl.CERT_REQUIRED)
    if options.get("ssl_certfile"):
        ctx.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"),
                            options.get("ssl_password"))
    return ctx
