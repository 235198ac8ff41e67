"""Prometheus metrics on `SESSIONGATE_METRICS_ADDR` (default 127.0.0.1:9464; empty: off).

Two kinds, to keep the login path cheap:
- per-RPC, updated inline by `Observer` hooks: latency by method and status, decisions by
  decision/reason/source, the age of the state behind each decision, Redis errors seen by RPCs.
  These are plain cumulative numbers (`Buckets`, dicts of ints) that only the event-loop
  thread writes, without prometheus_client's lock per update: a hook costs a dict lookup, a
  bisection and two additions. The scrape thread reads them (a list copy is atomic under the
  GIL) and renders the same families prometheus_client's Histogram and Counter would, minus
  their `_created` samples.
- read at scrape time by a custom collector, off the hot path (the scrape runs in the HTTP
  server's thread, on an event loop of its own with its own short-timeout Redis transport,
  `store/client.py`): near-cache hits and
  misses, Redis reachability, the payment stream (length, per-group pending entries, entries
  not yet delivered, lag in seconds of the oldest undelivered and the oldest pending entry),
  dead letters, accounts by state, notifications sent/failed, and the login batch writer's
  queue (length, oldest record's age, records written / dead-lettered / lost, failed writes).

Accounts by state is a SCAN of the account hashes, O(accounts), so it is cached and redone at
most every `ACCOUNTS_SCAN_INTERVAL` seconds: an approximate, slightly old count, which is what a
dashboard needs. Notifications are read from any component (the outbox deliverer) whose
`sent`, `failed` and `dead` attributes are `collections.Counter`s by sink name: the notifier
owns its counters, the metrics only read them.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.store import keys, streams
from sessiongate.store.batch import BatchWriter
from sessiongate.store.codec import decode_account
from sessiongate.store.nearcache import NearCache
from sessiongate.store.transport import RedisError, ResponseError, Transport, raise_first

if TYPE_CHECKING:
    from sessiongate.service.rpc import CallRecord

log = structlog.get_logger(__name__)

ACCOUNTS_SCAN_INTERVAL = 60.0
LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
AGE_BUCKETS = (0.001, 0.1, 0.5, 1.0, 2.0, 5.0, 30.0, 300.0)
_DEGRADED = (cpb.STATE_SOURCE_FAILURE_MODE, cpb.STATE_SOURCE_STALE)
# The `source` label of a refused call's conflicting duplicate, by method.
CONFLICT_SOURCE = {"PushPaymentEvent": "payments_grpc", "RecordUsage": "usage",
                   "RecordUsageStream": "usage", "RecordUsageBatches": "usage",
                   "ConsumeEntitlement": "usage"}


def _enum_label(enum: Any, value: int, prefix: str) -> str:
    try:
        return str(enum.Name(value)).removeprefix(prefix)
    except ValueError:
        return str(value)


class Buckets:
    """A histogram's cumulative state: count per bucket (the last one: +Inf) and the sum.

    Written by one thread (the event loop's); read by the scrape thread, which copies the
    counts (atomic under the GIL) and derives the total from that copy, so `+Inf` and
    `_count` always agree.
    """

    __slots__ = ("_le", "bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        # The `le` labels as prometheus_client writes them ("0.0002", "1.0", "+Inf").
        self._le = [floatToGoString(b) for b in (*bounds, float("inf"))]  # type: ignore[no-untyped-call]  # unannotated upstream

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1  # first bound >= value
        self.sum += value

    def samples(self) -> tuple[list[tuple[str, float]], float]:
        counts, total = list(self.counts), self.sum
        cumulative, buckets = 0, []
        for le, n in zip(self._le, counts, strict=True):
            cumulative += n
            buckets.append((le, float(cumulative)))
        return buckets, total


class Metrics:
    """The registry, the inline instruments, the scrape-time collector and the HTTP server."""

    def __init__(
        self,
        redis: Transport,
        cache: NearCache,
        components: Callable[[], Iterable[object]] = tuple,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.rpc_seconds: dict[tuple[str, str], Buckets] = {}  # by (method, code)
        self.decisions: dict[tuple[int, int, int], int] = {}  # by (decision, reason, source)
        self.state_age = Buckets(AGE_BUCKETS)
        self.redis_errors = {"rpc": 0, "lookup": 0, "scrape": 0}  # one writer per key
        self.conflicting_duplicates: dict[str, int] = {}  # refused calls, by source
        self.collector = ScrapeCollector(self, redis, cache, components)
        self.registry.register(self.collector)
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- inline hooks (the hot path) -------------------------------------------------------

    def observe(self, calls: list[CallRecord]) -> None:
        """Finished calls (the observer's hook, a batch at a time): latency by method and
        status; for CheckSession answers, the decision and the age of the state behind it."""
        rpc_seconds, decisions, age = self.rpc_seconds, self.decisions, self.state_age
        conflicts = self.conflicting_duplicates
        last: tuple[str, str] | None = None
        hist = None
        for method, code, seconds, _, _, _, _, response in calls:
            if last is None or last[0] is not method or last[1] is not code:
                last = (method, code)
                hist = rpc_seconds.get(last)
                if hist is None:
                    hist = rpc_seconds[last] = Buckets(LATENCY_BUCKETS)
            assert hist is not None
            hist.observe(seconds)
            if response is None:
                if code == "UNAVAILABLE":
                    self.redis_errors["rpc"] += 1
                elif code == "ALREADY_EXISTS":
                    source = CONFLICT_SOURCE.get(method, method)
                    conflicts[source] = conflicts.get(source, 0) + 1
                continue
            if method != "CheckSession":
                continue
            key = (response.decision, response.reason, response.source)
            decisions[key] = decisions.get(key, 0) + 1
            if key[2] in _DEGRADED:
                self.redis_errors["lookup"] += 1
            age.observe(response.state_age_ms / 1000.0)

    def families(self) -> Iterator[Metric]:
        """The inline instruments as Prometheus families (called by the scrape thread)."""
        rpc = HistogramMetricFamily(
            "sessiongate_rpc_duration_seconds", "RPC latency by method and gRPC status",
            labels=["method", "code"])
        for (method, code), hist in sorted(list(self.rpc_seconds.items())):
            buckets, total = hist.samples()
            rpc.add_metric([method, code], buckets, total)
        decisions = CounterMetricFamily(
            "sessiongate_decisions", "CheckSession answers by decision, reason and state source",
            labels=["decision", "reason", "source"])
        for (decision, reason, source), n in sorted(list(self.decisions.items())):
            decisions.add_metric([_enum_label(cpb.Decision, decision, "DECISION_"),
                                  _enum_label(cpb.Reason, reason, "REASON_"),
                                  _enum_label(cpb.StateSource, source, "STATE_SOURCE_")], n)
        age = HistogramMetricFamily(
            "sessiongate_decision_state_age_seconds",
            "age of the state behind each CheckSession answer")
        buckets, total = self.state_age.samples()
        age.add_metric([], buckets, total)
        errors = CounterMetricFamily(
            "sessiongate_redis_errors",
            "Redis failures: rpc (UNAVAILABLE answers), lookup (failure-mode or stale answers),"
            " scrape (this endpoint could not read Redis)", labels=["where"])
        for where, n in list(self.redis_errors.items()):
            errors.add_metric([where], n)
        yield from (rpc, decisions, age, errors)

    def conflicts_family(self, stream_entries: int) -> Metric:
        """Event ids reused with other content: refused calls by source (ALREADY_EXISTS),
        and `stream_entries` dead-lettered by this process's payment consumer."""
        fam = CounterMetricFamily(
            "sessiongate_conflicting_duplicates",
            "events refused for reusing an event id with different content, by source",
            labels=["source"])
        counts = dict(self.conflicting_duplicates)
        counts["payments_stream"] = stream_entries
        for source in ("payments_grpc", "payments_stream", "usage"):
            counts.setdefault(source, 0)
        for source, n in sorted(counts.items()):
            fam.add_metric([source], n)
        return fam

    # -- HTTP endpoint ---------------------------------------------------------------------

    def serve(self, addr: str) -> int:
        """Start the scrape endpoint in a daemon thread; return its port (addr may use :0)."""
        host, _, port = addr.rpartition(":")
        self._server, self._thread = start_http_server(
            int(port), host.strip("[]") or "0.0.0.0", registry=self.registry)
        self.port = int(self._server.server_port)
        log.info("metrics serving", addr=addr, port=self.port)
        return self.port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.collector.close()


class ScrapeCollector(Collector):
    """What is cheaper to read when Prometheus asks than to keep up to date on every call.

    Its Redis reads run on an event loop of its own, in the scraping thread (one scrape at a
    time), over a transport of its own (`redis`, which it closes): never on the logins'
    loop or connection."""

    def __init__(self, metrics: Metrics, redis: Transport, cache: NearCache,
                 components: Callable[[], Iterable[object]]) -> None:
        self._metrics = metrics
        self._cache = cache
        self._components = components
        self._redis = redis
        self._loop = asyncio.new_event_loop()
        self._lock = threading.Lock()
        self._accounts: dict[str, int] = {}
        self._accounts_at = float("-inf")

    def close(self) -> None:
        """Close the transport on its loop, in a thread of its own: the caller's may be
        running another loop."""
        with self._lock:
            if self._loop.is_closed():
                return
            closing = threading.Thread(target=self._loop.run_until_complete,
                                       args=(self._redis.aclose(),))
            closing.start()
            closing.join()
            self._loop.close()

    def describe(self) -> Iterable[Metric]:
        return ()  # dynamic: collected at scrape time only

    def collect(self) -> Iterator[Metric]:
        with self._lock:  # concurrent scrapes would only repeat the same Redis reads
            yield from self._near_cache()
            yield from self._notifications()
            yield from self._batch_writers()
            up = GaugeMetricFamily("sessiongate_redis_up", "1 if this scrape could read Redis")
            try:
                families = self._loop.run_until_complete(self._from_redis())
            except (RedisError, OSError) as exc:
                log.warning("metrics: redis unreachable", error=str(exc))
                self._metrics.redis_errors["scrape"] += 1  # the scrape thread's own key
                up.add_metric([], 0)
                families = []
            else:
                up.add_metric([], 1)
            yield up
            yield from families
            yield from self._metrics.families()
            stream = [getattr(c, "conflicting_duplicates", 0) for c in self._components()]
            yield self._metrics.conflicts_family(sum(n for n in stream if isinstance(n, int)))

    def _near_cache(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "sessiongate_near_cache_hits", "lookups served from the near-cache",
            value=self._cache.hits)
        yield CounterMetricFamily(
            "sessiongate_near_cache_misses", "lookups that went to Redis",
            value=self._cache.misses)

    def _notifications(self) -> Iterator[Metric]:
        fams = {
            "sent": CounterMetricFamily(
                "sessiongate_notifications_sent", "notifications delivered", labels=["sink"]),
            "failed": CounterMetricFamily(
                "sessiongate_notifications_failed",
                "delivery attempts that failed and will be retried", labels=["sink"]),
            "dead": CounterMetricFamily(
                "sessiongate_notifications_dead",
                "notifications refused for good (dead-lettered)", labels=["sink"]),
        }
        totals: dict[str, collections.Counter[str]] = {k: collections.Counter() for k in fams}
        for component in self._components():
            for attr, total in totals.items():
                counts = getattr(component, attr, None)
                if isinstance(counts, collections.Counter):
                    total.update(counts)
        for attr, fam in fams.items():
            for sink, n in sorted(totals[attr].items()):
                fam.add_metric([sink], n)
            yield fam

    def _batch_writers(self) -> Iterator[Metric]:
        """The login records' queue (`store/batch.py`): a backlog, a stall, refused records."""
        writers = [c for c in self._components() if isinstance(c, BatchWriter)]
        length = GaugeMetricFamily(
            "sessiongate_batch_queue_length", "login records queued, not yet written")
        length.add_metric([], sum(w.pending for w in writers))
        age = GaugeMetricFamily(
            "sessiongate_batch_queue_oldest_seconds",
            "how long the oldest queued login record has waited (0: none queued)")
        age.add_metric([], max((w.oldest_age() for w in writers), default=0.0))
        records = CounterMetricFamily(
            "sessiongate_batch_records",
            "login records by outcome: written; dead_lettered (Redis refused them, see the"
            " stream sessiongate:batch:dead); lost (neither: queue overflow, a stop with Redis"
            " unreachable, an unwritable dead letter)", labels=["outcome"])
        for outcome, attr in (("written", "written"), ("dead_lettered", "dead"),
                              ("lost", "lost")):
            records.add_metric([outcome], sum(getattr(w, attr) for w in writers))
        failures = CounterMetricFamily(
            "sessiongate_batch_write_failures",
            "batch writes that failed (Redis unreachable or not writable now) and are retried")
        failures.add_metric([], sum(w.write_failures for w in writers))
        yield from (length, age, records, failures)

    async def _from_redis(self) -> list[Metric]:
        r = self._redis
        now_ms = int(time.time() * 1000)
        stream = keys.PAYMENT_STREAM
        size, dead_letters = raise_first(await r.many([
            ("XLEN", stream), ("XLEN", keys.PAYMENT_DEAD_LETTER)]))
        length = GaugeMetricFamily(
            "sessiongate_payment_stream_length", "entries in the payment stream")
        length.add_metric([], size)
        dead = GaugeMetricFamily(
            "sessiongate_payment_dead_letters", "payment events moved to the dead-letter stream")
        dead.add_metric([], dead_letters)
        pending = GaugeMetricFamily(
            "sessiongate_payment_pending", "entries delivered to a consumer, not yet acknowledged",
            labels=["group"])
        undelivered = GaugeMetricFamily(
            "sessiongate_payment_undelivered",
            "entries not yet delivered to the group (Redis 7+ reports it; else absent)",
            labels=["group"])
        lag = GaugeMetricFamily(
            "sessiongate_payment_lag_seconds",
            "age of the oldest entry not yet delivered to the group (0: caught up)",
            labels=["group"])
        pending_age = GaugeMetricFamily(
            "sessiongate_payment_oldest_pending_seconds",
            "age of the oldest delivered but unacknowledged entry (0: none)", labels=["group"])
        try:
            groups = streams.records(await r.call("XINFO", "GROUPS", stream))
        except ResponseError:  # no stream yet: nothing queued
            groups = []
        for g in groups:
            name = streams.text(g["name"])
            pending.add_metric([name], g["pending"])
            if g.get("lag") is not None:
                undelivered.add_metric([name], g["lag"])
            last = streams.text(g["last-delivered-id"])
            nxt = streams.entries(await r.call("XRANGE", stream, f"({last}", "+", "COUNT", 1))
            lag.add_metric([name], max(0, now_ms - streams.id_ms(nxt[0][0])) / 1000
                           if nxt else 0)
            oldest = 0.0
            if g["pending"]:
                _, first = streams.pending_summary(await r.call("XPENDING", stream, name))
                if first:
                    oldest = max(0, now_ms - streams.id_ms(first)) / 1000
            pending_age.add_metric([name], oldest)
        return [length, dead, pending, undelivered, lag, pending_age,
                await self._accounts_by_state()]

    async def _accounts_by_state(self) -> Metric:
        if time.monotonic() - self._accounts_at >= ACCOUNTS_SCAN_INTERVAL:
            counts: dict[str, int] = {}
            now = datetime.now(UTC)
            batch: list[bytes] = []
            async for key in self._redis.scan(keys.ACCOUNT_GLOB, "hash", 1000):
                batch.append(key)
                if len(batch) >= 500:
                    await self._count_states(batch, now, counts)
                    batch = []
            await self._count_states(batch, now, counts)
            self._accounts, self._accounts_at = counts, time.monotonic()
        fam = GaugeMetricFamily(
            "sessiongate_accounts",
            f"accounts by state (a SCAN, refreshed at most every {ACCOUNTS_SCAN_INTERVAL:.0f} s)",
            labels=["state"])
        for state, n in sorted(self._accounts.items()):
            fam.add_metric([state], n)
        return fam

    async def _count_states(self, batch: list[bytes], now: datetime, counts: dict[str, int]
                            ) -> None:
        if not batch:
            return
        replies = await self._redis.many([("HMGET", key, "data", "v") for key in batch])
        for data, version in raise_first(replies):
            if data is None:
                continue
            try:
                state = decode_account(data, int(version or 0)).state_at(now).value
            except (ValueError, KeyError, TypeError):
                continue  # not an account hash
            counts[state] = counts.get(state, 0) + 1
