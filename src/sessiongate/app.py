"""Composition root: build every part from the settings, start, drain, stop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import pathlib
import signal
import urllib.parse
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any, Protocol

import grpc
import structlog
from envoy.service.auth.v3 import external_auth_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from sessiongate.api.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    billing_pb2,
    billing_pb2_grpc,
    session_control_pb2,
    session_control_pb2_grpc,
)
from sessiongate.billing.components import billing_components
from sessiongate.billing.notify.outbox import build_deliverer
from sessiongate.billing.notify.standing import link_signer
from sessiongate.config import Settings
from sessiongate.domain.access import parse_open_paths
from sessiongate.domain.clock import Clock, SystemClock
from sessiongate.domain.errors import InvalidArgument
from sessiongate.http.authz import AuthzHandler
from sessiongate.http.server import HttpServer
from sessiongate.http.standing import add_standing_routes
from sessiongate.metrics import Metrics
from sessiongate.rendering import renderer
from sessiongate.reporting.builder import ReportBuilder
from sessiongate.reporting.digest import Digest
from sessiongate.reporting.mail import report_parts
from sessiongate.reporting.scheduler import ReportsScheduler, report_scheduler
from sessiongate.service.accounts import AccountsServicer
from sessiongate.service.answer_memo import AnswerMemo
from sessiongate.service.auth import ROLES, Authenticator
from sessiongate.service.billing import BillingServicer
from sessiongate.service.envoy_authz import CHECK_METHOD as ENVOY_CHECK
from sessiongate.service.envoy_authz import SERVICE_NAME as ENVOY_AUTHZ
from sessiongate.service.envoy_authz import EnvoyAuthzServicer
from sessiongate.service.proxy_check import ProxyCheck
from sessiongate.service.registration import add_services
from sessiongate.service.rpc import Observer
from sessiongate.service.runtime import Runtime
from sessiongate.service.session_control import RAW_METHOD, SessionControlServicer
from sessiongate.service.wire import as_wire
from sessiongate.store.accounts import AccountStore
from sessiongate.store.batch import BatchWriter
from sessiongate.store.children import ChildrenIndex
from sessiongate.store.client import transport
from sessiongate.store.embedded import EmbeddedRedis
from sessiongate.store.nearcache import NearCache
from sessiongate.store.plans import PlanStore
from sessiongate.store.policies import PolicyCache, PolicyStore
from sessiongate.store.scripts import Scripts
from sessiongate.store.sessions import SessionStore
from sessiongate.store.stores import Stores
from sessiongate.store.transport import Transport
from sessiongate.store.usage import UsageStore
from sessiongate.usecases.account_state import AccountLookup
from sessiongate.usecases.accounts import AccountAdmin
from sessiongate.usecases.dunning import DunningEngine
from sessiongate.usecases.entitlements import Entitlements
from sessiongate.usecases.login import LoginChecker
from sessiongate.usecases.payments import PaymentPushes
from sessiongate.usecases.policies import PolicyAdmin
from sessiongate.usecases.proxied import ProxiedRequests
from sessiongate.usecases.sessions import Sessions
from sessiongate.usecases.usage import UsageRecorder

log = structlog.get_logger(__name__)

SCRAPE_TIMEOUT = 1.0  # seconds: a metrics scrape's Redis reads, each

SERVICE_NAMES = (
    session_control_pb2.DESCRIPTOR.services_by_name["SessionControl"].full_name,
    accounts_pb2.DESCRIPTOR.services_by_name["Accounts"].full_name,
    billing_pb2.DESCRIPTOR.services_by_name["Billing"].full_name,
    ENVOY_AUTHZ,
)


class Component(Protocol):
    """A long-running part (scheduler, consumer, batch writer): started after the server."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def is_loopback(addr: str) -> bool:
    host = addr.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def redacted(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def settle_heap() -> None:
    """Once the server is up: what start-up made (modules, stubs, settings) lives as long as
    the process, so it is moved out of the collector's reach (`gc.freeze`). Every full
    collection would otherwise walk that whole heap again: ~13 times in a 100k-account sweep,
    ~0.4 s of its CPU (docs/performance.md, row "gc.freeze() after start-up"). Garbage made
    later is collected as usual."""
    gc.collect()
    gc.freeze()


class Application:
    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.embedded: EmbeddedRedis | None = None
        self.server: grpc.aio.Server | None = None
        self.health = health.aio.HealthServicer()
        self.components: list[Component] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.port = 0
        self.rt: Runtime | None = None
        self.metrics: Metrics | None = None
        self.session_control: SessionControlServicer | None = None
        self.batch: BatchWriter | None = None  # login records of logins without a seat limit
        self.answers: AnswerMemo | None = None  # the one answer memo (service/answer_memo.py)
        self.http: HttpServer | None = None
        self.http_port = 0
        self.reports: ReportsScheduler | None = None
        self.stream_transports: list[Transport] = []  # the stream workers', closed at stop

    def _credentials(self) -> grpc.ServerCredentials | None:
        s = self.settings
        if not s.tls_cert:
            return None
        key = pathlib.Path(s.tls_key).read_bytes()
        cert = pathlib.Path(s.tls_cert).read_bytes()
        if s.tls_client_ca:
            ca = pathlib.Path(s.tls_client_ca).read_bytes()
            return grpc.ssl_server_credentials([(key, cert)], ca, require_client_auth=True)
        return grpc.ssl_server_credentials([(key, cert)])

    async def start(self) -> int:
        s = self.settings
        auth = Authenticator({role: s.tokens(role) for role in ROLES})
        if not auth.enabled and not is_loopback(s.grpc_addr):
            raise SystemExit(
                f"refusing to listen on {s.grpc_addr} without tokens: set"
                " SESSIONGATE_APP_TOKENS, SESSIONGATE_BILLING_TOKENS and"
                " SESSIONGATE_ADMIN_TOKENS, or use a loopback address"
            )
        if s.http_addr and not auth.enabled and not is_loopback(s.http_addr):
            raise SystemExit(
                f"refusing to serve HTTP on {s.http_addr} without tokens: set"
                " SESSIONGATE_APP_TOKENS (the proxy sends one in x-sessiongate-token), or use"
                " a loopback address"
            )
        if not auth.enabled:
            log.warning("no tokens configured: every caller is trusted (loopback only)")
        url = s.redis_url
        if not url:
            self.embedded = EmbeddedRedis(s.data_dir)
            await asyncio.to_thread(self.embedded.start)
            url = self.embedded.url
        tr = transport(url, cluster=s.redis_cluster)

        def stream_transport(block: float) -> Transport:
            t = transport(url, cluster=s.redis_cluster, block=block)
            self.stream_transports.append(t)
            return t

        scripts = Scripts(tr)
        store = AccountStore(tr, scripts)
        cache = NearCache(
            store, ttl=s.near_cache_ttl, enabled=s.near_cache, stale_max_age=s.static_max_age,
            max_entries=s.near_cache_entries, max_unknown=s.near_cache_unknown,
            load_timeout=s.login_redis_timeout,
        )
        policies = PolicyStore(tr)
        policy_cache = PolicyCache(tr, s.near_cache_ttl)
        lookup = AccountLookup(cache, s.failure_mode)
        # The Redis side on its own, for the parts below the servicers (reporting).
        usage_log = UsageStore(tr, scripts)
        stores = Stores(clock=self.clock, transport=tr, stream_transport=stream_transport,
                        scripts=scripts, accounts=store, cache=cache, usage=usage_log,
                        bulk_transport=transport(url, cluster=s.redis_cluster, bulk=True))
        plans = PlanStore(tr, scripts, s.near_cache_ttl)
        reports = ReportBuilder(stores, plans, link_signer(s, self.clock.now))
        digest = Digest(tr, scripts, store, s, self.clock)
        rt = self.rt = Runtime(
            settings=s, clock=self.clock, transport=tr, stream_transport=stream_transport,
            scripts=scripts,
            accounts=store, cache=cache, usage=usage_log, auth=auth,
            observer=Observer(access_log=s.access_log, loop=asyncio.get_running_loop()),
            bulk_transport=stores.bulk_transport,
            policies=policies, policy_cache=policy_cache, plans=plans,
            engine=DunningEngine(store, policies, self.clock.now),
            lookup=lookup, logins=LoginChecker(lookup, policy_cache, self.clock),
            reports=reports, digest=digest,
        )
        if s.metrics_addr:
            self._start_metrics(transport(url, cluster=s.redis_cluster,
                                          timeout=SCRAPE_TIMEOUT), cache)
        server = self.server = grpc.aio.server(
            options=[("grpc.so_reuseport", 1 if s.workers > 1 else 0)],
        )
        answers = self.answers = AnswerMemo(cache)  # CheckSession's, Envoy's, /authz's
        sessions, entitlements, usage = self._session_usecases(rt)
        session_control = self.session_control = SessionControlServicer(
            rt, answers, sessions, entitlements, usage)
        try:
            open_paths = parse_open_paths(s.authz_open_paths)
        except ValueError as exc:
            raise InvalidArgument("SESSIONGATE_AUTHZ_OPEN_PATHS", str(exc)) from None
        proxy = ProxyCheck(rt, answers, ProxiedRequests(rt.logins, entitlements, open_paths))
        admin, policy_admin, payments = self._admin_usecases(rt)
        table = add_services(server, [  # one method table, nothing pre-registered
            (session_control_pb2_grpc.add_SessionControlServicer_to_server, session_control),
            (accounts_pb2_grpc.add_AccountsServicer_to_server,
             AccountsServicer(rt, admin, policy_admin)),
            (billing_pb2_grpc.add_BillingServicer_to_server, BillingServicer(rt, payments)),
            (external_auth_pb2_grpc.add_AuthorizationServicer_to_server,
             EnvoyAuthzServicer(rt, proxy)),
            (health_pb2_grpc.add_HealthServicer_to_server, self.health),
            # `reflection.enable_server_reflection`, but through the same view: it would
            # pre-register ServerReflectionInfo, a pending call more for every RPC to wait on.
            (reflection_pb2_grpc.add_ServerReflectionServicer_to_server,
             reflection.aio.ReflectionServicer(
                 (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME))),
        ])
        table.raw(RAW_METHOD, as_wire)  # the login check's hot path (service/wire.py)
        table.raw(ENVOY_CHECK, as_wire, requests=False)  # remembered answers as bytes
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        creds = self._credentials()
        if creds is None:
            self.port = server.add_insecure_port(s.grpc_addr)
        else:
            self.port = server.add_secure_port(s.grpc_addr, creds)
        await server.start()
        if s.http_addr:
            await self._start_http(rt, proxy)
        ready = asyncio.Event()
        self.tasks.append(asyncio.create_task(cache.listen(tr, ready)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), 5.0)
        if s.scheduler:
            self.components.extend(billing_components(s, rt, rt.engine))
            if s.reports:
                self.reports = report_scheduler(s, stores, reports, digest)
                self.components.append(self.reports)
        # None when no sink is configured.
        deliverer = build_deliverer(s, stream_transport, report_parts=report_parts)
        if deliverer is not None:
            self.components.append(deliverer)
        for component in self.components:
            await component.start()
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info("sessiongate serving", addr=s.grpc_addr, port=self.port, http=self.http_port,
                 redis=redacted(url),
                 auth=auth.enabled, tls=creds is not None)
        return self.port

    def _session_usecases(self, rt: Runtime
                          ) -> tuple[Sessions, Entitlements, UsageRecorder]:
        """SessionControl's use-cases over their stores, built once; the login-records
        writer becomes a component (records of logins off the hot path)."""
        s = self.settings
        batch = self.batch = BatchWriter(rt.transport)
        self.components.append(batch)
        entitlements = Entitlements(rt.plans, rt.logins, self.clock)
        sessions = Sessions(SessionStore(rt.transport, rt.scripts), batch, rt.logins,
                            entitlements, self.clock, ttl=timedelta(seconds=s.session_ttl),
                            timeout=s.login_redis_timeout)
        events = rt.usage
        bulk = rt.bulk_transport  # bulk uploads' own connection (`client.transport(bulk=True)`)
        usage = UsageRecorder(events, events if bulk is None else UsageStore(bulk, Scripts(bulk)),
                              rt.lookup, entitlements, self.clock)
        return sessions, entitlements, usage

    def _admin_usecases(self, rt: Runtime
                        ) -> tuple[AccountAdmin, PolicyAdmin, PaymentPushes]:
        """The Accounts and Billing servicers' writes, built once: an account's upsert and
        override, a policy's upsert, a pushed payment event."""
        admin = AccountAdmin(rt.accounts, rt.accounts, rt.engine, rt.cache,
                             ChildrenIndex(rt.transport), rt.usage,
                             self.clock)
        return (admin, PolicyAdmin(rt.policies, rt.policy_cache),
                PaymentPushes(rt.engine, rt.accounts, rt.cache))

    async def _start_http(self, rt: Runtime, proxy: ProxyCheck) -> None:
        """The HTTP endpoint: /authz for proxies (more routes are added to `self.http.app`
        here, before it starts)."""
        s = self.settings
        http = HttpServer(s.http_addr, drain_timeout=s.drain_timeout, reuse_port=s.workers > 1)
        http.add_routes(AuthzHandler(rt, proxy).routes())
        links = link_signer(s, self.clock.now)  # None without SESSIONGATE_LINK_SECRET
        if links is not None:  # before start: aiohttp freezes its router then
            add_standing_routes(http.app, accounts=rt.accounts, links=links,
                                renderer=renderer(s.templates_dir), clock=self.clock,
                                pay_url_template=s.pay_url_template)
        try:
            self.http_port = await http.start()
        except OSError as exc:
            assert self.server is not None
            await self.server.stop(0)
            raise SystemExit(f"cannot serve HTTP on {s.http_addr}: {exc}") from None
        self.http = http

    def _start_metrics(self, redis: Transport, cache: NearCache) -> None:
        """The scrape endpoint, reading Redis through `redis` (its own: it closes it)."""
        assert self.rt is not None
        metrics = Metrics(redis, cache, lambda: self.components)
        try:
            metrics.serve(self.settings.metrics_addr)
        except OSError as exc:  # e.g. the port of another worker: logins matter more
            log.error("metrics endpoint not started", addr=self.settings.metrics_addr,
                      error=str(exc))
            metrics.close()
            return
        self.metrics = metrics
        self.rt.observer.add_hook(metrics.observe)

    async def _set_health(self, status: int) -> None:
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, status)

    async def stop(self) -> None:
        """Drain: NOT_SERVING first (so probes route away), let in-flight calls finish, close."""
        log.info("draining", grace_s=self.settings.drain_timeout)
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        if self.settings.drain_delay > 0:
            await asyncio.sleep(self.settings.drain_delay)  # still serving while routed away
        draining: list[Coroutine[Any, Any, Any]] = []
        if self.server is not None:
            draining.append(self.server.stop(self.settings.drain_timeout))
        if self.http is not None:
            draining.append(self.http.stop())
        await asyncio.gather(*draining)  # gRPC and HTTP calls in flight finish side by side
        if self.rt is not None:
            self.rt.observer.flush()  # the access lines of the last calls, now
        for component in reversed(self.components):
            try:
                await component.stop()
            except Exception:
                log.exception("component stop failed", component=type(component).__name__)
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.close)
        if self.rt is not None:
            await self.rt.transport.aclose()
            for t in self.stream_transports:
                await t.aclose()
            if self.rt.bulk_transport is not None:
                await self.rt.bulk_transport.aclose()
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)
        log.info("stopped")

    async def serve_forever(self, ready: Callable[[Application], None] | None = None) -> None:
        """Run until SIGTERM or SIGINT, then drain and return (exit status 0).

        The handlers are in place before start-up, so a Ctrl-C while the embedded Redis starts
        lets start-up finish (or fail) and then drains: nothing is left running, exit 0.
        `ready` is called once serving (the CLI's greeting on a terminal).
        """
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            try:
                await self.start()
            except Exception:
                # The same Ctrl-C can reach a redis-server still being forked (in our process
                # group until it execs) and fail the start: an interrupt, not an error.
                if not stop.is_set():
                    raise
                log.info("interrupted during start-up")
                return
            settle_heap()
            if ready is not None and not stop.is_set():
                ready(self)
            await stop.wait()
        finally:
            await self.stop()
