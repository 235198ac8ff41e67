"""Script calls on the multiplexed connection (`store/mux.py`) against a real redis-server:
NOSCRIPT after SCRIPT FLUSH or a restart, errors in their places, cancelled callers, timeouts,
AUTH and db, RESP2 and RESP3 answers equal to redis-py's, and the redis-py fallback."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Iterator, Sequence
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
from sessiongate.store.client import Client, connect
from sessiongate.store.embedded import EmbeddedRedis
from sessiongate.store.mux import Mux
from sessiongate.store.scripts import VARIABLE, Script, Scripts
from sessiongate.store.sessions import SessionStore

NOW = datetime(2026, 10, 10, tzinfo=UTC)
EXPIRES = NOW + timedelta(minutes=5)
ECHO = "return {KEYS[1], ARGV[1]}"
COUNT = "return redis.call('INCR', KEYS[1])"


class Recorder(Scripts):
    """Scripts that record the take_seat calls of `SessionStore.take` instead of running
    them: the calls of real logins, whatever the key layout of the day."""

    def __init__(self, redis: Redis) -> None:
        super().__init__(redis)
        self.calls: list[tuple[list[Any], list[Any]]] = []

    def coalesced(self, name: str, keys: Sequence[Any], args: Sequence[Any]
                  ) -> Awaitable[Any]:
        self.calls.append((list(keys), list(args)))
        done = asyncio.get_running_loop().create_future()
        done.set_result([1, 0])
        return done


async def seat_calls(client: Redis, logins: list[tuple[str, str, int]]
                     ) -> list[tuple[list[Any], list[Any]]]:
    """The take_seat (KEYS, ARGV) of a login at NOW of each (account, user, seat limit)."""
    recorder = Recorder(client)
    store = SessionStore(client, recorder)
    for account, user, limit in logins:
        await store.take(new_session(account, user), NOW, EXPIRES, limit)
    return recorder.calls


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A redis-server of this test's own, to restart or to block."""
    server = EmbeddedRedis(tmp_path / "redis", persistent=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


NAME = "mux-under-test"  # the clients under test name their connections: others (earlier
# tests' servers still closing theirs) must not count


def named(url: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}client_name={NAME}"


async def ping_failure(client: Redis) -> BaseException | None:
    """The connection error of a PING on `client`'s Mux (None if it answered); closes
    `client`."""
    mux = Mux.of(client)
    assert mux is not None
    try:
        await mux.call("PING")
    except RedisConnectionError as exc:
        return exc
    finally:
        await client.aclose()
    return None


def mux_connections(sync: redis.Redis) -> int:
    """Connections of the clients under test (`named`)."""
    return sum(c.get("name") == NAME for c in sync.client_list())


def test_calls_after_script_flush_load_the_script_again(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """SCRIPT FLUSH between calls: single calls and batches still run, each exactly once
    (a counter), on the Mux's one connection, not on redis-py's pool."""
    async def main() -> tuple[list[Any], bool, int]:
        client = connect(named(redis_url))
        mux = Mux.of(client)
        assert mux is not None
        scripts = Scripts(client)
        assert isinstance(scripts["take_seat"], Script)
        count = Script(mux, COUNT)
        try:
            got = [await count(keys=["n"])]
            redis_client.script_flush()
            got.append(await count(["n"], ()))
            redis_client.script_flush()
            got += await count.run_many([(["n"], ()), (["n"], ()), (["m"], ())])
            got += await count.run_many([(["n"], ())])
            redis_client.script_flush()
            taken = await SessionStore(client, scripts).take(new_session("acme", "u0"), NOW,
                                                             EXPIRES, 2)
            return got, taken.admitted, mux_connections(redis_client)
        finally:
            await client.aclose()

    got, admitted, connections = asyncio.run(main())
    assert got == [1, 2, 3, 4, 1, 5]
    assert redis_client.get("n") == b"5"
    assert admitted
    assert connections == 1  # the Mux; redis-py's pool opened none for the scripts


def test_a_batch_returns_each_error_in_its_place_and_a_single_error_is_raised(
    redis_url: str, redis_client: redis.Redis
) -> None:
    redis_client.set(keys.seats("broken"), "not a zset")
    redis_client.rpush("alist", "x")

    async def main() -> tuple[list[Any], list[Any], list[BaseException], list[Any]]:
        client = connect(redis_url)
        mux = Mux.of(client)
        assert mux is not None
        scripts = Scripts(client)
        count = Script(mux, COUNT)
        try:
            batch = await count.run_many([(["n"], ()), (["alist"], ()), (["n"], ())])
            seats = await scripts.run_many("take_seat", await seat_calls(
                client, [("acme", "a", 5), ("broken", "u", 5), ("acme", "b", 5)]))
            raised: list[BaseException] = []
            for call in (count(keys=["alist"]), Script(mux, "error('boom')")(),
                         SessionStore(client, scripts).take(new_session("broken", "u"), NOW,
                                                            EXPIRES, 5)):
                try:
                    await call
                except ResponseError as exc:
                    raised.append(exc)
            after = [await count(keys=["n"]) for _ in range(2)]  # still in step
            return batch, seats, raised, after
        finally:
            await client.aclose()

    batch, seats, raised, after = asyncio.run(main())
    assert batch[0] == 1 and batch[2] == 2
    assert isinstance(batch[1], ResponseError) and "WRONGTYPE" in str(batch[1])
    assert seats[0][0] == 1 and seats[2][0] == 1  # admitted
    assert isinstance(seats[1], ResponseError) and "WRONGTYPE" in str(seats[1])
    assert len(raised) == 3
    assert "WRONGTYPE" in str(raised[0]) and "boom" in str(raised[1])
    assert "WRONGTYPE" in str(raised[2])
    assert after == [3, 4]


def test_cancelled_callers_leave_the_others_answers_matched(redis_url: str,
                                                              redis_client: redis.Redis) -> None:
    """200 calls in flight on one connection, every third cancelled after it was written:
    each remaining caller gets its own echo, and the connection stays usable."""
    async def main() -> tuple[list[Any], list[Any], Any]:
        client = connect(redis_url)
        mux = Mux.of(client)
        assert mux is not None
        try:
            tasks = [asyncio.ensure_future(mux.call("EVAL", ECHO, 1, f"k{i}", i))
                     for i in range(200)]
            await asyncio.sleep(0)  # all written
            for t in tasks[::3]:
                t.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            many = await mux.call_many([("EVAL", ECHO, 1, f"m{i}", i) for i in range(50)])
            return list(results), many, await mux.call("EVAL", ECHO, 1, "last", "x")
        finally:
            await client.aclose()

    results, many, last = asyncio.run(main())
    for i, r in enumerate(results):
        if i % 3 == 0:
            assert isinstance(r, asyncio.CancelledError)
        else:
            assert r == [f"k{i}".encode(), str(i).encode()]
    assert many == [[f"m{i}".encode(), str(i).encode()] for i in range(50)]
    assert last == [b"last", b"x"]


@pytest.mark.parametrize("protocol", ["2", "3"])
def test_replies_equal_redis_py_replies(redis_url: str, redis_client: redis.Redis,
                                        protocol: str) -> None:
    """Lua replies of every type, errors, floats, bytes and str arguments: what the Mux
    returns is what redis-py returns on the same protocol (RESP3 changes Lua booleans)."""
    scripts = ["return 1", "return 'text'", "return false", "return true", "return {}",
               "return {1, 'a', {2, {false}}, true}", "return redis.status_reply('FINE')",
               "return ARGV", "return tostring(tonumber(ARGV[2]) * 2)",
               "return redis.call('GET', KEYS[1])", "return {redis.call('PING')}",
               "redis.setresp(3) return redis.call('HGETALL', 'h')"]
    redis_client.set("counter", "not a number")
    redis_client.hset("h", "f", "v")
    args: list[Any] = ["é ü", 1.5, b"\x00\xff", 12345678901234, -3]

    async def main() -> tuple[list[Any], list[Any], list[str], list[str]]:
        client = Redis.from_url(f"{redis_url}?protocol={protocol}")
        mux = Mux.of(client)
        assert mux is not None
        try:
            ours: list[Any] = []
            theirs: list[Any] = []
            for text in scripts:
                ours.append(await mux.call("EVAL", text, 1, "counter", *args))
                theirs.append(await client.eval(text, 1, "counter", *args))
            errors = []
            for text in ["return redis.error_reply('MYERR broken')", "error('boom')",
                         "return redis.call('NOSUCHCOMMAND')",
                         "return redis.pcall('INCR', 'counter')"]:
                for send in (mux.call, client.execute_command):
                    try:
                        await send("EVAL", text, 0)
                    except ResponseError as exc:
                        errors.append(f"{type(exc).__name__}: {exc}")
            many = await mux.call_many([("EVAL", t, 1, "counter", *args) for t in scripts])
            assert many == ours
            return ours, theirs, errors[::2], errors[1::2]
        finally:
            await client.aclose()

    ours, theirs, our_errors, their_errors = asyncio.run(main())
    assert ours == theirs
    assert our_errors == their_errors and len(our_errors) == 4
    hash_reply = ours[-1]  # a map in RESP3, a flat array in RESP2
    assert hash_reply == ({b"f": b"v"} if protocol == "3" else [b"f", b"v"])


def test_a_command_encoded_around_one_argument_is_the_command_encoded_whole(
        redis_url: str, redis_client: redis.Redis) -> None:
    """`Mux.encoder_for` (the batch reads' HMGET): the bytes `encode` makes, whatever the
    argument's place, and Redis answers them as the command."""
    redis_client.hset("k-é", mapping={"data": "d", "v": "0_1"})

    async def main() -> list[Any]:
        client = Redis.from_url(redis_url)
        mux = Mux.of(client)
        assert mux is not None
        try:
            for args in (("HMGET", "", "data", "v", "l"), ("GET", ""), ("", "x", 1),
                         ("ECHO", "a", ""), ("X",)):
                for at in range(len(args)):
                    encode = mux.encoder_for(args, at)
                    for value in ("", "k-é", "a\r\nb", "x" * 300):
                        whole = (*args[:at], value, *args[at + 1:])
                        assert encode(value) == mux.encode(whole), (args, at, value)
            # As redis-py encodes: lengths on either side of the prefixes made once (1024).
            conn = client.connection_pool.make_connection()
            for size in (0, 1, 9, 10, 1023, 1024, 1025, 70_000):
                args = ("SET", "k", "é" * (size // 2) + "x" * (size % 2), b"\xff" * size, size,
                        -size, 1.5)
                assert mux.encode(args) == b"".join(conn.pack_command(*args)), size
            hmget = mux.encoder_for(("HMGET", "", "data", "v", "l"), 1)
            return list(await mux.request(hmget("k-é") + hmget("none"), 2, True))
        finally:
            await client.aclose()

    assert asyncio.run(main()) == [[b"d", b"0_1", None], [None, None, None]]


ECHO_ALL = ("local out = {} for _, k in ipairs(KEYS) do out[#out + 1] = k end "
            "for _, a in ipairs(ARGV) do out[#out + 1] = a end return out")


def test_a_prepared_call_is_the_call_with_its_arguments_given_whole(
        redis_url: str, redis_client: redis.Redis) -> None:
    """`Script.prepare` (a seat-limited login's take_seat): Redis gets exactly the call made
    with every argument given, wherever the variable ones are and whatever they hold (`%`,
    CR LF, non-ASCII, empty, long, ints), and a flushed script is loaded again."""
    values: list[str | int] = ["", "50%d %b %%", "a\r\nb", "é☃", "x" * 2000, 0, -7,
                               1_769_817_600_123]

    async def main() -> None:
        client = connect(named(redis_url))
        mux = Mux.of(client)
        assert mux is not None
        script = Script(mux, ECHO_ALL)
        try:
            for keys_, args in ((["k1", "%s-k"], ["c", 5, "%d"]), (["k"], []), ([], ["a"])):
                for at in range(len(args) + 1):
                    for value in values:
                        template = [*args[:at], VARIABLE, *args[at:]]
                        whole = [*args[:at], value, *args[at:]]
                        got = await script.prepare(keys_, template)(value)
                        assert got == await script(keys_, whole), (keys_, template, value)
            two = script.prepare(["k"], [VARIABLE, "mid", VARIABLE])
            redis_client.script_flush()
            assert await two("%", 12) == [b"k", b"%", b"mid", b"12"]
        finally:
            await client.aclose()

    asyncio.run(main())


def test_redis_restarted_the_next_calls_reconnect_and_reload(own_redis: EmbeddedRedis) -> None:
    """A restart empties the script cache and kills the connection: calls made after it run
    (one retry on a new connection, then NOSCRIPT -> SCRIPT LOAD), each exactly once."""
    sync = redis.Redis.from_url(own_redis.url)

    async def main() -> tuple[list[Any], bool]:
        client = connect(own_redis.url)
        mux = Mux.of(client)
        assert mux is not None
        count = Script(mux, COUNT)
        try:
            got = [await count(keys=["n"]), await count(keys=["n"])]
            own_redis.stop()
            own_redis.start()  # same port, empty (not persistent), no scripts
            got.append(await count(keys=["n"]))
            own_redis.stop()
            own_redis.start()
            got += await count.run_many([(["n"], ()), (["n"], ()), (["n"], ())])
            own_redis.stop()
            own_redis.start()
            taken = await SessionStore(client, Scripts(client)).take(
                new_session("acme", "u0"), NOW, EXPIRES, 3)
            return got, taken.admitted
        finally:
            await client.aclose()

    try:
        got, admitted = asyncio.run(main())
        assert got == [1, 2, 1, 1, 2, 3]
        assert sync.get("n") is None  # the last restart emptied it
        assert admitted
    finally:
        sync.close()


def test_redis_down_fails_the_call_and_the_closed_client_closes_its_connection(
    own_redis: EmbeddedRedis
) -> None:
    sync = redis.Redis.from_url(own_redis.url)

    async def main() -> tuple[int, BaseException | None, int]:
        client = connect(named(own_redis.url))
        mux = Mux.of(client)
        assert mux is not None
        await mux.call("PING")
        open_ = mux_connections(sync)
        await client.aclose()
        for _ in range(500):  # until Redis has seen the close
            if (closed := mux_connections(sync)) == 0:
                break
            await asyncio.sleep(0.01)
        own_redis.stop()
        return open_, await ping_failure(connect(own_redis.url)), closed

    try:
        open_, failed, closed = asyncio.run(main())
    finally:
        sync.close()
    assert (open_, closed) == (1, 0)
    assert isinstance(failed, RedisConnectionError)


def test_a_stuck_redis_times_the_calls_out_then_they_work_again(
    own_redis: EmbeddedRedis
) -> None:
    """Redis busy for longer than socket_timeout (DEBUG SLEEP): the calls in flight fail with
    TimeoutError (they may have run), and once Redis answers, a new connection serves."""
    sync = redis.Redis.from_url(own_redis.url)

    async def main() -> tuple[list[Any], Any]:
        client = Redis.from_url(own_redis.url, socket_timeout=0.2)
        mux = Mux.of(client)
        assert mux is not None
        try:
            await mux.call("PING")
            blocker = asyncio.ensure_future(asyncio.to_thread(sync.execute_command,
                                                              "DEBUG", "SLEEP", "1"))
            await asyncio.sleep(0.05)
            stuck = await asyncio.gather(*(mux.call("EVAL", ECHO, 1, "k", i) for i in range(5)),
                                         return_exceptions=True)
            await blocker
            return list(stuck), await mux.call("EVAL", ECHO, 1, "k", "again")
        finally:
            await client.aclose()

    try:
        stuck, again = asyncio.run(main())
    finally:
        sync.close()
    assert all(isinstance(r, RedisTimeoutError) for r in stuck), stuck
    assert again == [b"k", b"again"]


def test_auth_db_and_client_name_as_configured(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", persistent=False)
    server.start()
    redis.Redis(port=server.port).config_set("requirepass", "s3cret")
    sync = redis.Redis(port=server.port, password="s3cret", db=3)
    try:
        async def main(url: str) -> Any:
            client = Redis.from_url(url, client_name="sg-test")
            mux = Mux.of(client)
            assert mux is not None
            try:
                await mux.call("EVAL", "return redis.call('SET', KEYS[1], ARGV[1])", 1, "k",
                               "v")
                return [c["name"] for c in sync.client_list()]
            finally:
                await client.aclose()

        for protocol in ("2", "3"):
            url = f"redis://:s3cret@127.0.0.1:{server.port}/3?protocol={protocol}"
            assert "sg-test" in asyncio.run(main(url))
        assert sync.get("k") == b"v"  # in db 3
        with pytest.raises(AuthenticationError):
            asyncio.run(main(f"redis://:wrong@127.0.0.1:{server.port}/3"))
    finally:
        sync.close()
        server.stop()


def test_unix_socket_keeps_redis_py_and_its_pipeline_reloads_after_flush(
    tmp_path: Path
) -> None:
    """Where the Mux declines (a unix socket), redis-py runs the scripts: a batch is one
    pipeline of EVALSHA, and after SCRIPT FLUSH the calls that met NOSCRIPT run again, once."""
    sock = tmp_path / "redis.sock"
    server = EmbeddedRedis(tmp_path / "redis", persistent=False,
                           extra_args=("--unixsocket", str(sock), "--unixsocketperm", "700"))
    server.start()

    async def main() -> tuple[bool, list[Any], list[Any], bool]:
        client = Redis.from_url(f"unix://{sock}")
        scripts = Scripts(client)
        store = SessionStore(client, scripts)
        count = client.register_script(COUNT)
        try:
            single = await store.take(new_session("acme", "u0"), NOW, EXPIRES, 3)
            await client.script_flush()
            seats = await scripts.run_many("take_seat", await seat_calls(
                client, [("acme", f"v{i}", 9) for i in range(3)]))
            got = await scripts._pipelined(count, [(["n"], ()), (["n"], ())])
            await client.script_flush()
            got += await scripts._pipelined(count, [(["n"], ()), (["alist"], ())])
            return single.admitted, seats, got, Mux.of(client) is None
        finally:
            await client.aclose()

    try:
        redis.Redis(unix_socket_path=str(sock)).rpush("alist", "x")
        admitted, seats, got, declined = asyncio.run(main())
    finally:
        server.stop()
    assert declined and admitted
    assert [s[0] for s in seats] == [1, 1, 1]
    assert got[:3] == [1, 2, 3]
    assert isinstance(got[3], ResponseError) and "WRONGTYPE" in str(got[3])


def test_tls_as_configured(redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> None:
    """`rediss://`: the Mux speaks TLS with the client's own context (its CA; the host name
    checked), through a TLS-terminating proxy in front of the test's Redis (whose build has
    no TLS). A client trusting another CA is refused."""
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
        client = Client.from_url(f"rediss://localhost:{port}/0",
                                 ssl_ca_certs=str(tmp_path / "ca.pem"))
        try:
            mux = Mux.of(client)
            assert mux is not None
            echo = await Script(mux, ECHO)(keys=["k"], args=["over tls"])
            pipe = client.pipeline(transaction=False)
            pipe.set("tls", "yes").get("tls")
            piped = await pipe.execute()
            refused = await ping_failure(Client.from_url(  # a CA that did not sign it
                f"rediss://localhost:{port}/0", ssl_ca_certs=str(tmp_path / "rogue.pem")))
            return echo, piped, tls_connections, refused
        finally:
            await client.aclose()
            proxy.close()

    echo, piped, tls_connections, refused = asyncio.run(main())
    assert echo == [b"k", b"over tls"]
    assert piped == [True, b"yes"]
    assert tls_connections >= 1
    assert isinstance(refused, RedisConnectionError)
    assert redis_client.get("tls") == b"yes"


def test_callers_cancelled_while_connecting_leave_one_connection_for_the_others(
    redis_url: str, redis_client: redis.Redis
) -> None:
    async def main() -> tuple[list[Any], int]:
        client = connect(named(redis_url))
        mux = Mux.of(client)
        assert mux is not None
        try:
            tasks = [asyncio.ensure_future(mux.call("EVAL", ECHO, 1, f"k{i}", i))
                     for i in range(6)]
            await asyncio.sleep(0)  # all waiting for the one connect
            tasks[0].cancel()
            tasks[3].cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            return list(results), mux_connections(redis_client)
        finally:
            await client.aclose()

    results, connections = asyncio.run(main())
    assert connections == 1
    for i, r in enumerate(results):
        if i in (0, 3):
            assert isinstance(r, asyncio.CancelledError)
        else:
            assert r == [f"k{i}".encode(), str(i).encode()]
