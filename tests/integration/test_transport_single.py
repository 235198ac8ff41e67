"""The single-server transport (`mux.Mux`, as `client.transport` builds it) against a real
redis-server: what only one connection to one server has to get right, beside the contract
every transport keeps (test_transport_contract.py).

Scripts reloaded after SCRIPT FLUSH and after a Redis restart, each call run exactly once and
all on one connection; callers cancelled while their command is in flight or while the
connection opens, the others' replies still matched; a stuck Redis timing the calls out, then
serving again; replies and errors equal to redis-py's on RESP2 and RESP3; RESP as redis-py
encodes it; AUTH, db and client name from the URL, a wrong password refused; a unix socket;
TLS (`rediss://`) with the URL's CA, through a TLS-terminating proxy (the test's redis-server
is built without TLS); every timeout from the URL. Not supported, and refused with a
`ValueError` naming them when the transport is built: the URL options that belong to
redis-py's pools and parsers (`decode_responses`, `max_connections`, `health_check_interval`,
`socket_keepalive`, `retry_on_timeout`, ...) and RESP versions other than 2 and 3.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import trustme
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sessiongate.domain.sessions import new_session
from sessiongate.store import keys
from sessiongate.store.client import BULK_SOCKET_TIMEOUT, OPTIONS, transport
from sessiongate.store.embedded import EmbeddedRedis
from sessiongate.store.mux import Mux
from sessiongate.store.scripts import Scripts
from sessiongate.store.sessions import SessionStore
from sessiongate.store.transport import VARIABLE, Script, Transport

NOW = datetime(2026, 10, 10, tzinfo=UTC)
EXPIRES = NOW + timedelta(minutes=5)
ECHO = "return {KEYS[1], ARGV[1]}"
COUNT = Script("return redis.call('INCR', KEYS[1])")
ECHO_ALL = Script("local out = {} for _, k in ipairs(KEYS) do out[#out + 1] = k end "
                  "for _, a in ipairs(ARGV) do out[#out + 1] = a end return out")
NAME = "transport-under-test"  # the transports under test name their connections: others
# (earlier tests' servers still closing theirs) must not count


def named(url: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}client_name={NAME}"


def connections(sync: redis.Redis) -> int:
    """Connections of the transports under test (`named`)."""
    return sum(c.get("name") == NAME for c in sync.client_list())


def run(url: str, body: Callable[[Transport], Awaitable[Any]]) -> Any:
    """`body` on a new transport of `url`, closed after it."""
    async def main() -> Any:
        t = transport(url)
        try:
            async with asyncio.timeout(20):
                return await body(t)
        finally:
            await t.aclose()
    return asyncio.run(main())


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A redis-server of this test's own, to restart or to block."""
    server = EmbeddedRedis(tmp_path / "redis", persistent=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_the_single_server_transport_is_the_mux(redis_url: str) -> None:
    async def body(t: Transport) -> bool:
        return isinstance(t, Mux)
    assert run(redis_url, body)


def test_url_options_it_cannot_honour_are_refused_by_name(redis_url: str) -> None:
    for option in ("decode_responses=True", "max_connections=4", "health_check_interval=5",
                   "socket_keepalive=true", "retry_on_timeout=true"):
        name = option.split("=")[0]
        with pytest.raises(ValueError, match=f"option\\(s\\) {name}: not supported"):
            transport(f"{redis_url}?client_name=x&{option}")
    with pytest.raises(ValueError, match="protocol"):
        transport(f"{redis_url}?protocol=4")


def test_the_bulk_transport_is_a_connection_of_its_own_with_a_longer_timeout(
        redis_url: str, redis_client: redis.Redis) -> None:
    """Bulk usage writes (`transport(bulk=True)`) never share a connection, or its timeout,
    with logins."""
    async def main() -> tuple[Any, Any, int]:
        logins, bulk = transport(named(redis_url)), transport(named(redis_url), bulk=True)
        try:
            await asyncio.gather(logins.call("PING"), bulk.call("PING"))
            assert isinstance(logins, Mux) and isinstance(bulk, Mux)
            return logins.timeout, bulk.timeout, connections(redis_client)
        finally:
            await logins.aclose()
            await bulk.aclose()

    assert asyncio.run(main()) == (OPTIONS["socket_timeout"], BULK_SOCKET_TIMEOUT, 2)


def test_calls_after_script_flush_load_the_script_again_each_once_on_one_connection(
        redis_url: str, redis_client: redis.Redis) -> None:
    """SCRIPT FLUSH between calls: single calls, batches and a login's take_seat still run,
    each exactly once (a counter), all on the transport's one connection."""
    async def body(t: Transport) -> tuple[list[Any], bool, int]:
        got = [await t.evalsha(COUNT, ["n"], [])]
        redis_client.script_flush()
        got.append(await t.evalsha(COUNT, ["n"], [], hold=True))
        redis_client.script_flush()
        got += await t.evalsha_many(COUNT, [(["n"], []), (["n"], []), (["m"], [])])
        got += await t.evalsha_many(COUNT, [(["n"], [])])
        redis_client.script_flush()
        taken = await SessionStore(t, Scripts(t)).take(new_session("acme", "u0"), NOW,
                                                        EXPIRES, 2)
        return got, taken.admitted, connections(redis_client)

    got, admitted, open_ = run(named(redis_url), body)
    assert got == [1, 2, 3, 4, 1, 5]
    assert redis_client.get("n") == b"5"
    assert admitted
    assert open_ == 1


def test_errors_in_their_places_leave_the_connection_in_step(
        redis_url: str, redis_client: redis.Redis) -> None:
    """Refused calls among others (a batch of scripts, a login on a key of the wrong type):
    each error in its place or raised, and the replies after them still match their calls."""
    redis_client.set(keys.leases("broken"), "not a zset")
    redis_client.rpush("alist", "x")

    async def body(t: Transport) -> tuple[list[Any], list[BaseException], list[Any]]:
        batch = await t.evalsha_many(COUNT, [(["n"], []), (["alist"], []), (["n"], [])])
        raised: list[BaseException] = []
        for call in (t.evalsha(COUNT, ["alist"], []),
                     t.evalsha(Script("error('boom')"), [], []),
                     SessionStore(t, Scripts(t)).take(new_session("broken", "u"), NOW,
                                                      EXPIRES, 5)):
            try:
                await call
            except ResponseError as exc:
                raised.append(exc)
        after = [await t.evalsha(COUNT, ["n"], []) for _ in range(2)]
        return batch, raised, after

    batch, raised, after = run(redis_url, body)
    assert batch[0] == 1 and batch[2] == 2
    assert isinstance(batch[1], ResponseError) and "WRONGTYPE" in str(batch[1])
    assert len(raised) == 3
    assert "WRONGTYPE" in str(raised[0]) and "boom" in str(raised[1])
    assert "WRONGTYPE" in str(raised[2])
    assert after == [3, 4]


def test_cancelled_callers_leave_the_others_answers_matched(
        redis_url: str, redis_client: redis.Redis) -> None:
    """200 calls in flight on one connection, every third cancelled after it was written:
    each remaining caller gets its own echo, and the connection stays usable."""
    async def body(t: Transport) -> tuple[list[Any], list[Any], Any]:
        await t.call("PING")  # connected: the calls below are written at once
        tasks = [asyncio.ensure_future(t.call("EVAL", ECHO, 1, f"k{i}", i))
                 for i in range(200)]
        await asyncio.sleep(0)  # all written
        for task in tasks[::3]:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        many = await t.many([("EVAL", ECHO, 1, f"m{i}", i) for i in range(50)])
        return list(results), many, await t.call("EVAL", ECHO, 1, "last", "x")

    results, many, last = run(redis_url, body)
    for i, r in enumerate(results):
        if i % 3 == 0:
            assert isinstance(r, asyncio.CancelledError)
        else:
            assert r == [f"k{i}".encode(), str(i).encode()]
    assert many == [[f"m{i}".encode(), str(i).encode()] for i in range(50)]
    assert last == [b"last", b"x"]


def test_callers_cancelled_while_connecting_leave_one_connection_for_the_others(
        redis_url: str, redis_client: redis.Redis) -> None:
    async def body(t: Transport) -> tuple[list[Any], int]:
        tasks = [asyncio.ensure_future(t.call("EVAL", ECHO, 1, f"k{i}", i)) for i in range(6)]
        await asyncio.sleep(0)  # all waiting for the one connect
        tasks[0].cancel()
        tasks[3].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        return list(results), connections(redis_client)

    results, open_ = run(named(redis_url), body)
    assert open_ == 1
    for i, r in enumerate(results):
        if i in (0, 3):
            assert isinstance(r, asyncio.CancelledError)
        else:
            assert r == [f"k{i}".encode(), str(i).encode()]


@pytest.mark.parametrize("protocol", ["2", "3"])
def test_replies_and_errors_equal_redis_py_s(redis_url: str, redis_client: redis.Redis,
                                            protocol: str) -> None:
    """Lua replies of every type, errors, floats, bytes and str arguments: what the transport
    returns (and raises) is what redis-py does on the same protocol (RESP3 changes Lua
    booleans and maps)."""
    scripts = ["return 1", "return 'text'", "return false", "return true", "return {}",
               "return {1, 'a', {2, {false}}, true}", "return redis.status_reply('FINE')",
               "return ARGV", "return tostring(tonumber(ARGV[2]) * 2)",
               "return redis.call('GET', KEYS[1])", "return {redis.call('PING')}",
               "redis.setresp(3) return redis.call('HGETALL', 'h')"]
    redis_client.set("counter", "not a number")
    redis_client.hset("h", "f", "v")
    args: list[Any] = ["é ü", 1.5, b"\x00\xff", 12345678901234, -3]
    url = f"{redis_url}?protocol={protocol}"

    async def body(t: Transport) -> tuple[list[Any], list[Any], list[str], list[str]]:
        client = Redis.from_url(url)
        try:
            ours: list[Any] = []
            theirs: list[Any] = []
            for text in scripts:
                ours.append(await t.call("EVAL", text, 1, "counter", *args))
                theirs.append(await client.eval(text, 1, "counter", *args))
            errors = []
            for text in ["return redis.error_reply('MYERR broken')", "error('boom')",
                         "return redis.call('NOSUCHCOMMAND')",
                         "return redis.pcall('INCR', 'counter')",
                         "return redis.error_reply('NOSCRIPT gone')",
                         "return redis.error_reply('OOM full')"]:
                for send in (t.call, client.execute_command):
                    try:
                        await send("EVAL", text, 0)
                    except ResponseError as exc:
                        errors.append(f"{type(exc).__name__}: {exc}")
            assert await t.many([("EVAL", s, 1, "counter", *args) for s in scripts]) == ours
            return ours, theirs, errors[::2], errors[1::2]
        finally:
            await client.aclose()

    ours, theirs, our_errors, their_errors = run(url, body)
    assert ours == theirs
    assert our_errors == their_errors and len(our_errors) == 6
    assert our_errors[-2:] == ["NoScriptError: gone", "OutOfMemoryError: full"]
    assert ours[-1] == ({b"f": b"v"} if protocol == "3" else [b"f", b"v"])


def test_commands_are_encoded_as_redis_py_encodes_them(redis_url: str) -> None:
    """Lengths on either side of the length prefixes made once (1024), str, bytes, ints and
    floats: the bytes of redis-py's own encoder."""
    mux = Mux(redis_url)
    conn = Redis.from_url(redis_url).connection_pool.make_connection()
    for size in (0, 1, 9, 10, 1023, 1024, 1025, 70_000):
        args = ("SET", "k", "é" * (size // 2) + "x" * (size % 2), b"\xff" * size, size,
                -size, 1.5)
        assert mux.encode(args) == b"".join(conn.pack_command(*args)), size


def test_a_prepared_call_is_the_call_with_its_arguments_given_whole(
        redis_url: str, redis_client: redis.Redis) -> None:
    """`prepare` (a seat-limited login's take_seat): Redis gets exactly the call made with
    every argument given, wherever the variable ones are and whatever they hold (`%`, CR LF,
    non-ASCII, empty, long, ints), and a flushed script is loaded again."""
    values: list[str | int] = ["", "50%d %b %%", "a\r\nb", "é☃", "x" * 2000, 0, -7,
                               1_769_817_600_123]

    async def body(t: Transport) -> Any:
        for keys_, args in ((["k1", "%s-k"], ["c", 5, "%d"]), (["k"], []), ([], ["a"])):
            for at in range(len(args) + 1):
                for value in values:
                    template = [*args[:at], VARIABLE, *args[at:]]
                    whole = [*args[:at], value, *args[at:]]
                    got = await t.prepare(ECHO_ALL, keys_, template)(value)
                    assert got == await t.evalsha(ECHO_ALL, keys_, whole), (keys_, at, value)
        two = t.prepare(ECHO_ALL, ["k"], [VARIABLE, "mid", VARIABLE])
        redis_client.script_flush()
        return await two("%", 12)

    assert run(redis_url, body) == [b"k", b"%", b"mid", b"12"]


def test_redis_restarted_the_next_calls_reconnect_and_reload(own_redis: EmbeddedRedis) -> None:
    """A restart empties the script cache and kills the connection: calls made after it run
    (one retry on a new connection, then NOSCRIPT -> SCRIPT LOAD), each exactly once."""
    async def body(t: Transport) -> tuple[list[Any], bool]:
        got = [await t.evalsha(COUNT, ["n"], []), await t.evalsha(COUNT, ["n"], [])]
        own_redis.stop()
        own_redis.start()  # same port, empty (not persistent), no scripts
        got.append(await t.evalsha(COUNT, ["n"], [], hold=True))
        own_redis.stop()
        own_redis.start()
        got += await t.evalsha_many(COUNT, [(["n"], []), (["n"], []), (["n"], [])])
        own_redis.stop()
        own_redis.start()
        taken = await SessionStore(t, Scripts(t)).take(new_session("acme", "u0"), NOW,
                                                        EXPIRES, 3)
        own_redis.stop()
        own_redis.start()
        got.append(await t.call("INCR", "n"))
        return got, taken.admitted

    got, admitted = run(own_redis.url, body)
    assert got == [1, 2, 1, 1, 2, 3, 1]
    assert admitted


def test_redis_down_fails_the_call_and_a_closed_transport_closes_its_connection(
        own_redis: EmbeddedRedis) -> None:
    sync = redis.Redis.from_url(own_redis.url)

    async def main() -> tuple[int, int, BaseException | None]:
        t = transport(named(own_redis.url))
        await t.call("PING")
        open_ = connections(sync)
        await t.aclose()
        for _ in range(500):  # until Redis has seen the close
            if (closed := connections(sync)) == 0:
                break
            await asyncio.sleep(0.01)
        own_redis.stop()
        down = transport(own_redis.url)
        try:
            await down.call("PING")
        except RedisConnectionError as exc:
            return open_, closed, exc
        finally:
            await down.aclose()
        return open_, closed, None

    try:
        open_, closed, failed = asyncio.run(main())
    finally:
        sync.close()
    assert (open_, closed) == (1, 0)
    assert isinstance(failed, RedisConnectionError)


def test_a_stuck_redis_times_the_calls_out_then_they_work_again(
        own_redis: EmbeddedRedis) -> None:
    """Redis busy for longer than socket_timeout (DEBUG SLEEP): the calls in flight fail with
    TimeoutError (they may have run), and once Redis answers, a new connection serves."""
    sync = redis.Redis.from_url(own_redis.url)

    async def body(t: Transport) -> tuple[list[Any], Any]:
        await t.call("PING")
        blocker = asyncio.ensure_future(asyncio.to_thread(sync.execute_command,
                                                          "DEBUG", "SLEEP", "1"))
        await asyncio.sleep(0.05)
        stuck = await asyncio.gather(*(t.call("EVAL", ECHO, 1, "k", i) for i in range(5)),
                                     t.evalsha(ECHO_ALL, ["k"], ["held"], hold=True),
                                     return_exceptions=True)
        await blocker
        return list(stuck), await t.call("EVAL", ECHO, 1, "k", "again")

    try:
        stuck, again = run(f"{own_redis.url}?socket_timeout=0.2", body)
    finally:
        sync.close()
    assert len(stuck) == 6 and all(isinstance(r, RedisTimeoutError) for r in stuck), stuck
    assert again == [b"k", b"again"]


def test_auth_db_and_client_name_as_the_url_says(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", persistent=False)
    server.start()
    redis.Redis(port=server.port).config_set("requirepass", "s3cret")
    sync = redis.Redis(port=server.port, password="s3cret", db=3)

    async def set_and_list(t: Transport) -> list[Any]:
        await t.evalsha(Script("return redis.call('SET', KEYS[1], ARGV[1])"), ["k"], ["v"])
        return [c["name"] for c in sync.client_list()]

    try:
        for protocol in ("2", "3"):
            url = (f"redis://:s3cret@127.0.0.1:{server.port}/3?protocol={protocol}"
                   "&client_name=sg-test")
            assert "sg-test" in run(url, set_and_list)
        assert run(f"redis://default:s3cret@127.0.0.1:{server.port}/3", set_and_list)
        assert sync.get("k") == b"v"  # in db 3
        with pytest.raises(AuthenticationError):
            run(f"redis://:wrong@127.0.0.1:{server.port}/3", set_and_list)
    finally:
        sync.close()
        server.stop()


def test_a_unix_socket_serves_calls_batches_and_reloads(tmp_path: Path) -> None:
    sock = tmp_path / "redis.sock"
    server = EmbeddedRedis(tmp_path / "redis", persistent=False,
                           extra_args=("--unixsocket", str(sock), "--unixsocketperm", "700"))
    server.start()
    sync = redis.Redis(unix_socket_path=str(sock))

    async def body(t: Transport) -> tuple[bool, list[Any]]:
        taken = await SessionStore(t, Scripts(t)).take(new_session("acme", "u0"), NOW,
                                                        EXPIRES, 3)
        got = await t.evalsha_many(COUNT, [(["n"], []), (["n"], [])])
        sync.script_flush()
        got += await t.evalsha_many(COUNT, [(["n"], []), (["alist"], [])])
        return taken.admitted, got

    try:
        sync.rpush("alist", "x")
        admitted, got = run(f"unix://{sock}", body)
        assert sync.get("n") == b"3"
    finally:
        sync.close()
        server.stop()
    assert admitted
    assert got[:3] == [1, 2, 3]
    assert isinstance(got[3], ResponseError) and "WRONGTYPE" in str(got[3])


def test_tls_with_the_url_s_ca(redis_url: str, redis_client: redis.Redis,
                               tmp_path: Path) -> None:
    """`rediss://`: the transport speaks TLS with the URL's CA (the host name checked),
    through a TLS-terminating proxy in front of the test's Redis. A transport trusting
    another CA is refused."""
    ca, rogue = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    rogue.cert_pem.write_to_path(str(tmp_path / "rogue.pem"))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    target = redis_client.connection_pool.connection_kwargs

    async def main() -> tuple[Any, list[Any], int, BaseException | None]:
        tls_connections = 0

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal tls_connections
            tls_connections += writer.get_extra_info("ssl_object") is not None
            up_reader, up_writer = await asyncio.open_connection(target["host"],
                                                                 target["port"])

            async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                try:
                    while data := await src.read(65536):
                        dst.write(data)
                        await dst.drain()
                finally:
                    dst.close()

            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer),
                                 return_exceptions=True)

        proxy = await asyncio.start_server(relay, "127.0.0.1", 0, ssl=server_ctx)
        port = proxy.sockets[0].getsockname()[1]
        t = transport(f"rediss://localhost:{port}/0?ssl_ca_certs={tmp_path / 'ca.pem'}")
        rogue_t = transport(f"rediss://localhost:{port}/0?ssl_ca_certs={tmp_path / 'rogue.pem'}")
        try:
            echo = await t.evalsha(Script(ECHO), ["k"], ["over tls"])
            many = await t.many([("SET", "tls", "yes"), ("GET", "tls")])
            refused: BaseException | None = None
            try:
                await rogue_t.call("PING")
            except RedisConnectionError as exc:
                refused = exc
            return echo, many, tls_connections, refused
        finally:
            await t.aclose()
            await rogue_t.aclose()
            proxy.close()

    echo, many, tls_connections, refused = asyncio.run(main())
    assert echo == [b"k", b"over tls"]
    assert many == [b"OK", b"yes"]
    assert tls_connections >= 1
    assert isinstance(refused, RedisConnectionError)
    assert redis_client.get("tls") == b"yes"
