"""Measurements beyond the login check's latency: freshness, streams, sweeps, memory, workers.

Each part returns a dict (with a one-line `summary`) or {"skipped": "feature absent"}.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import redis as sync_redis
from google.protobuf.timestamp_pb2 import Timestamp

from bench import h2load, procs
from bench.scenarios import USERS, admin_md, app_md, check_request, seats_present
from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import accounts_pb2_grpc as apb_grpc
from sessiongate.api.v1 import billing_pb2 as bpb
from sessiongate.api.v1 import billing_pb2_grpc as bpb_grpc
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.api.v1 import session_control_pb2_grpc as spb_grpc
from sessiongate.store import keys
from sessiongate.store.embedded import EmbeddedRedis

Part = tuple[str, Callable[[], dict[str, Any]]]
BILLING_MD = [("authorization", f"Bearer {procs.BILLING_TOKEN}")]


def stamp(when: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(when)
    return t


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)] if s else math.nan


async def gather_limited(coros: Iterator[Any], limit: int) -> None:
    """Run awaitables with at most `limit` in flight."""
    pending: set[asyncio.Task[Any]] = set()
    for coro in coros:
        pending.add(asyncio.ensure_future(coro))
        if len(pending) >= limit:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for d in done:
                d.result()
    if pending:
        for d in (await asyncio.wait(pending))[0]:
            d.result()


async def upsert_many(ch: grpc.aio.Channel, ids: list[str], limit: int = 64,
                      **fields: Any) -> None:
    stub = apb_grpc.AccountsStub(ch)
    await gather_limited((stub.UpsertAccount(apb.UpsertAccountRequest(
        account=apb.Account(account_id=aid, **fields)), metadata=admin_md(), timeout=60)
        for aid in ids), limit)


# --- freshness: a change committed through one replica, seen by the other -----------------

async def _freshness(a: int, b: int, cycles: int) -> dict[str, Any]:
    aid = "bench-fresh"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{a}") as ca, \
            grpc.aio.insecure_channel(f"127.0.0.1:{b}") as cb:
        await upsert_many(ca, [aid], users=USERS)
        billing = bpb_grpc.BillingStub(ca)
        replicas = {"writer": spb_grpc.SessionControlStub(ca),
                    "other": spb_grpc.SessionControlStub(cb)}
        req = spb.CheckSessionRequest(account_id=aid, user_id=USERS[0], no_session=True)
        for stub in replicas.values():  # warm both near-caches
            for _ in range(3):
                await stub.CheckSession(req, metadata=app_md(), timeout=10)
        seen: dict[str, list[float]] = {name: [] for name in replicas}
        sources: dict[str, int] = {}
        past_due = datetime.now(UTC) - timedelta(days=40)
        for i in range(cycles):
            suspend = i % 2 == 0
            if suspend:  # a 40-day-old invoice: SUSPENDED at once under the default policy
                event = bpb.PaymentEvent(
                    event_id=f"inv-{i}", account_id=aid,
                    type=bpb.PAYMENT_EVENT_TYPE_INVOICE_ISSUED, invoice_id=f"inv-{i}",
                    amount_minor=1000, due_at=stamp(past_due))
                want = cpb.DECISION_DENY
            else:  # the payment settles it: reinstated at once
                event = bpb.PaymentEvent(
                    event_id=f"pay-{i}", account_id=aid,
                    type=bpb.PAYMENT_EVENT_TYPE_PAYMENT_SUCCEEDED, amount_minor=1000)
                want = cpb.DECISION_ALLOW
            t0 = time.perf_counter()
            await billing.PushPaymentEvent(event, metadata=BILLING_MD, timeout=10)

            async def until_changed(name: str, stub: Any, want: int = want,
                                    t0: float = t0) -> None:
                deadline = t0 + 10.0
                while True:
                    r = await stub.CheckSession(req, metadata=app_md(), timeout=10)
                    if r.decision == want:
                        seen[name].append((time.perf_counter() - t0) * 1000)
                        key = cpb.StateSource.Name(r.source)
                        sources[key] = sources.get(key, 0) + 1
                        return
                    if time.perf_counter() > deadline:
                        raise RuntimeError(f"{name} never saw the change within 10 s")

            await asyncio.gather(*(until_changed(n, s) for n, s in replicas.items()))
            await asyncio.sleep(0.02)
    other = seen["other"]
    return {
        "summary": f"other replica: p50 {pct(other, 50):.1f} ms, p99 {pct(other, 99):.1f} ms,"
        f" max {max(other):.1f} ms over {len(other)} changes (target p99 <= 100 ms);"
        f" writer p99 {pct(seen['writer'], 99):.1f} ms",
        "cycles": cycles, "other_p50_ms": pct(other, 50), "other_p99_ms": pct(other, 99),
        "other_max_ms": max(other), "writer_p99_ms": pct(seen["writer"], 99),
        "meets_target": pct(other, 99) <= 100.0, "answer_sources": sources,
        "measured_from": "PushPaymentEvent sent to the writer (an upper bound of commit time)",
    }


def freshness(redis: EmbeddedRedis, work: Path, cycles: int) -> dict[str, Any]:
    a = procs.serve(redis.url, work, name="fresh-a")
    b = procs.serve(redis.url, work, name="fresh-b")
    try:
        return asyncio.run(_freshness(a.port, b.port, cycles))
    finally:
        a.stop()
        b.stop()


# --- the payment stream: XADD N events, time until the consumer group has applied all ----

# Five months of an invoice and its payment: the ledger is not compacted, so each event's
# cost grows with the account's ledger (docs/performance.md).
PAYMENT_EVENTS_PER_ACCOUNT = 10


def push_payments(client: Any, ids: list[str], events: int, due: str) -> bytes:
    """XADD `events` to the payment stream, ten per account (`ids` in turn): invoices due at
    `due` and payments alternating, 1,000 per pipeline. The last entry's id."""
    last_id = b""
    pipe = client.pipeline(transaction=False)
    for n in range(events):
        aid = ids[n % len(ids)]
        if (n // len(ids)) % 2 == 0:
            fields = {"event_id": f"e{n}", "account_id": aid, "type": "INVOICE_ISSUED",
                      "invoice_id": f"i{n}", "amount_minor": "1000", "due_at": due}
        else:
            fields = {"event_id": f"e{n}", "account_id": aid,
                      "type": "PAYMENT_SUCCEEDED", "amount_minor": "1000"}
        pipe.xadd(keys.PAYMENT_STREAM, fields)
        if len(pipe) >= 1000:
            last_id = pipe.execute()[-1]
    if len(pipe):
        last_id = pipe.execute()[-1]
    return last_id


def wait_applied(client: Any, last_id: bytes, timeout: float, poll: float = 0.02) -> None:
    """Until the consumer group has been handed `last_id` and acknowledged everything."""
    deadline = time.monotonic() + timeout
    while True:
        groups = client.xinfo_groups(keys.PAYMENT_STREAM)
        g = groups[0] if groups else {}
        if g.get("last-delivered-id") == last_id and g.get("pending") == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"not all events applied in time: {g}")
        time.sleep(poll)


def _payment_run(redis: EmbeddedRedis, work: Path, events: int, workers: int) -> dict[str, Any]:
    client = sync_redis.Redis.from_url(redis.url)
    client.delete(keys.PAYMENT_STREAM, keys.PAYMENT_DEAD_LETTER)
    per_account = PAYMENT_EVENTS_PER_ACCOUNT
    ids = [f"bench-pay-{i}" for i in range(max(1, events // per_account))]
    client.flushdb()
    srv = procs.serve(redis.url, work, name=f"payments-{workers}", workers=workers)
    try:
        async def setup() -> None:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
                await upsert_many(ch, ids, users=USERS[:2])
        asyncio.run(setup())
        due = (datetime.now(UTC) + timedelta(days=20)).isoformat()
        t0 = time.perf_counter()
        last_id = push_payments(client, ids, events, due)
        added = time.perf_counter() - t0
        wait_applied(client, last_id, timeout=max(120.0, events / 200))
        elapsed = time.perf_counter() - t0
        dead = client.xlen(keys.PAYMENT_DEAD_LETTER)
        rate = events / elapsed
        return {"events": events, "accounts": len(ids), "seconds": elapsed,
                "xadd_seconds": added, "events_per_s": rate, "dead_lettered": dead}
    finally:
        srv.stop()
        client.close()


def payment_stream(redis: EmbeddedRedis, work: Path, events: int) -> dict[str, Any]:
    """The stream applied by `serve` (one consumer), then by `serve --workers 2` (two
    consumers of the group), each on a fresh database."""
    runs = {w: _payment_run(redis, work, events, w) for w in (1, 2)}
    one = runs[1]
    two = runs[2]
    return {
        "summary": f"{one['events_per_s']:,.0f} events/s applied end to end by one process"
        f" ({events:,} events over {one['accounts']:,} accounts in {one['seconds']:.1f} s;"
        f" XADD took {one['xadd_seconds']:.1f} s; dead-lettered {one['dead_lettered']});"
        f" `serve --workers 2`: {two['events_per_s']:,.0f} events/s ({two['seconds']:.1f} s,"
        f" dead-lettered {two['dead_lettered']}); target >= 5,000/s",
        **one, "workers_2": two,
        "meets_target": max(one["events_per_s"], two["events_per_s"]) >= 5000,
    }


# --- usage through the streaming RPC ----------------------------------------------------

# Billing exporters streaming at once, and events per stream.
USAGE_PARALLEL_STREAMS = 4
USAGE_EVENTS_PER_STREAM = 5_000
USAGE_EVENTS_PER_MESSAGE = 500  # RecordUsageBatches
USAGE_SERVICE = "/sessiongate.api.v1.SessionControl/"


def _usage_bodies(work: Path, events: int, per_stream: int, per_message: int, tag: str
                  ) -> list[Path]:
    """One request body per stream: its messages framed one after another, as a client
    streaming them would send them. One event per message (`RecordUsageStream`), or
    `per_message` events per `UsageBatch` (`RecordUsageBatches`). Event ids are unique."""
    files = []
    for s in range(math.ceil(events / per_stream)):
        evs = [spb.UsageEvent(event_id=f"u{tag}-{s}-{j}", account_id="bench-usage",
                              user_id=USERS[j % len(USERS)], feature="api-calls", quantity=1)
               for j in range(min(per_stream, events - s * per_stream))]
        messages: list[Any] = evs if not per_message else [
            spb.UsageBatch(events=evs[j:j + per_message]) for j in range(0, len(evs), per_message)]
        path = work / f"usage-{tag}-{s}.bin"
        path.write_bytes(b"".join(h2load.grpc_frame(m) for m in messages))
        files.append(path)
    return files


def _usage(port: int, method: str, bodies: list[Path], parallel: int) -> float:
    """Seconds to send every body as one streaming call, `parallel` calls at a time.

    h2load sends a body as the DATA of one request, so each stream is one h2load run
    (`-n 1`): the client costs next to nothing, unlike a Python gRPC client, which took
    about as much CPU as the server on this 2-core machine. h2load cannot see grpc-status:
    the caller checks what was recorded."""
    exe = h2load.ensure_h2load()
    url = f"http://127.0.0.1:{port}{USAGE_SERVICE}{method}"
    waiting, running = list(bodies), []
    t0 = time.perf_counter()
    while waiting or running:
        while waiting and len(running) < parallel:
            cmd = [exe, url, "-d", str(waiting.pop(0)), "-n", "1", "-c", "1", "-m", "1", "-t", "1",
                   "-H", "content-type: application/grpc", "-H", "te: trailers",
                   "-H", f"authorization: Bearer {procs.APP_TOKEN}"]
            running.append(subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT))
        out = running.pop(0).communicate()[0].decode()
        if "1 succeeded" not in out:
            raise RuntimeError(f"h2load: a usage stream failed:\n{out}")
    return time.perf_counter() - t0


def usage_stream(redis: EmbeddedRedis, work: Path, events: int) -> dict[str, Any]:
    """The same streams against the floor (messages read, nothing recorded), then the server;
    then `RecordUsageBatches` with `USAGE_EVENTS_PER_MESSAGE` events per message. What the
    server recorded is read back from the usage stream: every event, once."""
    from sessiongate.service.session_control import SessionControlServicer

    if "RecordUsageStream" not in SessionControlServicer.__dict__:
        return {"skipped": "feature absent"}
    per_stream, parallel = min(events, USAGE_EVENTS_PER_STREAM), USAGE_PARALLEL_STREAMS
    streams = math.ceil(events / per_stream)
    shape = f"{streams} streams of {per_stream:,}, {parallel} at a time"
    flo = procs.floor(work)
    try:
        floor_rate = events / _usage(flo.port, "RecordUsageStream",
                                     _usage_bodies(work, events, per_stream, 0, "f"), parallel)
    finally:
        flo.stop()
    client = sync_redis.Redis.from_url(redis.url)
    srv = procs.serve(redis.url, work, name="usage")
    try:
        asyncio.run(_setup_usage_account(srv.port))
        rates = {}
        for method, per_message in (("RecordUsageStream", 0),
                                    ("RecordUsageBatches", USAGE_EVENTS_PER_MESSAGE)):
            bodies = _usage_bodies(work, events, per_stream, per_message, method)
            before = client.xlen(keys.USAGE_STREAM)
            seconds = _usage(srv.port, method, bodies, parallel)
            recorded = client.xlen(keys.USAGE_STREAM) - before
            if recorded != events:
                raise RuntimeError(f"{method}: {recorded} of {events} events recorded")
            rates[method] = events / seconds
    finally:
        srv.stop()
        client.close()
    rate, batched = rates["RecordUsageStream"], rates["RecordUsageBatches"]
    return {
        "summary": f"{rate:,.0f} events/s recorded through RecordUsageStream ({events:,} events,"
        f" {shape}, one event per message, sent by h2load; target >= 20,000/s); the floor"
        f" (messages read, nothing recorded): {floor_rate:,.0f}/s, ratio"
        f" {rate / floor_rate:.2f}. RecordUsageBatches ({USAGE_EVENTS_PER_MESSAGE} events per"
        f" message): {batched:,.0f} events/s",
        "events": events, "events_per_s": rate, "floor_events_per_s": floor_rate,
        "ratio_to_floor": rate / floor_rate, "batches": {"events_per_s": batched},
        "meets_target": rate >= 20_000,
    }


async def _setup_usage_account(port: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        await upsert_many(ch, ["bench-usage"], users=USERS)


# --- in-process: the timed dunning sweep and memory per account (a manual clock) ---------

@contextlib.asynccontextmanager
async def inprocess(redis_url: str, now: datetime) -> AsyncIterator[tuple[Any, grpc.aio.Channel]]:
    from sessiongate.app import Application
    from sessiongate.config import Settings
    from sessiongate.domain.clock import ManualClock

    settings = Settings.from_env({}, grpc_addr="127.0.0.1:0", redis_url=redis_url,
                                 metrics_addr="", http_addr="", access_log=False, scheduler=False,
                                 log_level="warning")
    app = Application(settings, clock=ManualClock(now))
    port = await app.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            yield app, ch
    finally:
        await app.stop()


async def _invoice_all(ch: grpc.aio.Channel, ids: list[str], due: datetime) -> None:
    billing = bpb_grpc.BillingStub(ch)
    await gather_limited((billing.PushPaymentEvent(bpb.PaymentEvent(
        event_id=f"{aid}-inv", account_id=aid, type=bpb.PAYMENT_EVENT_TYPE_INVOICE_ISSUED,
        invoice_id=f"{aid}-inv", amount_minor=12000, due_at=stamp(due)), timeout=60)
        for aid in ids), 64)


async def _direct_setup(rt: Any, engine: Any, ids: list[str], due: datetime) -> None:
    """Accounts and their invoices through the store and engine (what the RPCs call), without
    gRPC: setting up 100k accounts must not take longer than the measurement."""
    from sessiongate.domain.model import Account
    from sessiongate.domain.payment_event import new_payment_event

    now = rt.clock.now()

    async def one(aid: str) -> None:
        res = await rt.accounts.commit(
            Account(account_id=aid, users=frozenset(USERS[:1]), state_since=now),
            expected_version=0, now=now)
        if not res.ok:
            raise RuntimeError(f"creating {aid}: {res.status}")
        await engine.apply_event(new_payment_event(
            event_id=f"{aid}-inv", account_id=aid, type="INVOICE_ISSUED",
            invoice_id=f"{aid}-inv", amount_minor=12000, due_at=due))

    await gather_limited((one(aid) for aid in ids), 48)


async def _memory(redis_url: str, n: int) -> dict[str, Any]:
    client = sync_redis.Redis.from_url(redis_url)
    client.flushall()
    before = int(client.info("memory")["used_memory"])
    t0 = datetime.now(UTC)
    ids = [f"mem-{i:05d}" for i in range(n)]
    sessions = seats_present()
    async with inprocess(redis_url, t0) as (_, ch):
        await upsert_many(ch, ids, users=USERS, seat_limit=len(USERS))
        await _invoice_all(ch, ids, t0 + timedelta(days=10))
        if sessions:
            stub = spb_grpc.SessionControlStub(ch)
            await gather_limited((stub.CheckSession(spb.CheckSessionRequest(
                account_id=aid, user_id=USERS[0]), timeout=60) for aid in ids), 64)
        await asyncio.sleep(1.5)  # login records are written off the hot path, in batches
    # The app's connections are gone, and so are their buffers (hundreds of bytes per account
    # if read while they close): what stays is what the accounts cost.
    for _ in range(100):
        if int(client.info("clients")["connected_clients"]) <= 1:
            break
        await asyncio.sleep(0.1)
    after = int(client.info("memory")["used_memory"])
    per_key: dict[str, int] = {}
    sample = ids[0]
    prefix = keys.account(sample).removesuffix(":account")
    for key in client.scan_iter(match=f"{prefix}:*"):
        name = key.decode().removeprefix(prefix + ":")
        per_key[name] = int(client.memory_usage(key, samples=0) or 0)
    client.close()
    per_account = (after - before) / n
    return {
        "summary": f"{per_account:,.0f} bytes per account (INFO used_memory delta over {n:,}"
        f" accounts with 10 users, an open invoice{', a live session' if sessions else ''};"
        f" MEMORY USAGE of one account's own keys: {sum(per_key.values()):,} bytes;"
        f" target < 1 KiB)",
        "accounts": n, "bytes_per_account": per_account, "live_session": sessions,
        "one_account_keys": per_key, "meets_target": per_account < 1024,
    }


def memory(redis: EmbeddedRedis, n: int) -> dict[str, Any]:
    return asyncio.run(_memory(redis.url, n))


# --- serve --workers N ----------------------------------------------------------------------

def workers(redis: EmbeddedRedis, work: Path, h2: str, quick: bool) -> dict[str, Any]:
    """The default login, saturated, on `serve --workers N` pinned to every core but the
    last, with h2load pinned to the last (taskset): the generator does not eat the
    workers' cores, so what more workers buy shows (on 2 cores the server has 1: no gain
    is possible there). CPU per request is the server's processes' over the requests
    sent; per worker, each worker's CPU per request it served at an even share."""
    cores = os.cpu_count() or 1
    if cores < 2 or shutil.which("taskset") is None:
        return {"skipped": "needs 2 cores and taskset"}
    server_cores = f"0-{cores - 2}" if cores > 2 else "0"
    gen = ["taskset", "-c", str(cores - 1)]
    load = h2load.Load(clients=8, streams=8, duration=3.0 if quick else 8.0,
                       warmup=1.0 if quick else 2.0)
    body = h2load.write_request(work / "workers.bin", check_request())
    out: dict[str, Any] = {"server_cores": cores - 1, "generator_core": cores - 1}
    sizes = sorted({1, 2, cores - 1})
    for n in sizes:
        srv = procs.serve(redis.url, work, name=f"workers-{n}", workers=n,
                          prefix=["taskset", "-c", server_cores])
        try:
            with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
                apb_grpc.AccountsStub(ch).UpsertAccount(apb.UpsertAccountRequest(
                    account=apb.Account(account_id=check_request().account_id, users=USERS)),
                    metadata=admin_md(), timeout=10)
            url = f"http://127.0.0.1:{srv.port}/sessiongate.api.v1.SessionControl/CheckSession"
            before = srv.tree_cpu_seconds()
            res = h2load.run(h2, url, body, load, work, app_md(), prefix=gen)
            after = srv.tree_cpu_seconds()
            sent = res.rps * (load.duration + load.warmup)
            used = {pid: after[pid] - before.get(pid, 0.0) for pid in after}
            busy = sorted((c for c in used.values() if c > 0.05), reverse=True)[:n]
            out[f"workers_{n}"] = {
                "rps": res.rps, "p99_ms": res.p99_ms,
                "cpu_us_per_request": sum(used.values()) / sent * 1e6 if sent else math.nan,
                "cpu_us_per_request_per_worker": [c / (sent / n) * 1e6 for c in busy]
                if sent else []}
        finally:
            srv.stop()
    one = out["workers_1"]["rps"]
    out["summary"] = "; ".join(
        f"{n} worker{'s' if n > 1 else ''}: {out[f'workers_{n}']['rps']:,.0f} req/s"
        f" (x{out[f'workers_{n}']['rps'] / one:.2f}),"
        f" {out[f'workers_{n}']['cpu_us_per_request']:.0f} us CPU per request"
        f" ({', '.join(f'{c:.0f}' for c in out[f'workers_{n}']['cpu_us_per_request_per_worker'])}"
        " us per worker)" for n in sizes) + (
        f"; default login saturated, server pinned to {cores - 1} core(s), h2load to its own")
    return out
