"""Test helpers: a real server in a background thread, talking to a real redis-server."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any

import grpc
from redis.asyncio import Redis as AsyncRedis

from sessiongate.api.v1 import accounts_pb2_grpc, billing_pb2_grpc, session_control_pb2_grpc
from sessiongate.app import Application
from sessiongate.config import Settings
from sessiongate.domain.clock import ManualClock
from sessiongate.store.client import transport
from sessiongate.store.transport import Transport


class ServerThread:
    """Runs `Application` on its own event loop in a daemon thread; stubs use real sockets."""

    def __init__(self, settings: Settings, clock: ManualClock | None = None,
                 configure: Callable[[Application], None] | None = None) -> None:
        self.clock = clock or ManualClock()
        self.app = Application(settings, clock=self.clock)
        if configure is not None:
            configure(self.app)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.channel: grpc.Channel | None = None
        self.port = 0

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        """Run a coroutine on the server's loop and wait for its result."""
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def start(self) -> ServerThread:
        self.thread.start()
        self.port = self.call(self.app.start())
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        return self

    def stop(self) -> None:
        if self.channel is not None:
            self.channel.close()
        try:
            self.call(self.app.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sessions(self) -> session_control_pb2_grpc.SessionControlStub:
        return session_control_pb2_grpc.SessionControlStub(self.channel)

    @property
    def accounts(self) -> accounts_pb2_grpc.AccountsStub:
        return accounts_pb2_grpc.AccountsStub(self.channel)

    @property
    def billing(self) -> billing_pb2_grpc.BillingStub:
        return billing_pb2_grpc.BillingStub(self.channel)


def make_settings(redis_url: str, **overrides: Any) -> Settings:
    base: dict[str, Any] = dict(
        grpc_addr="127.0.0.1:0",
        redis_url=redis_url,
        metrics_addr="",
        http_addr="",
        access_log=False,
        log_format="json",
        drain_timeout=2.0,
        reports=False,  # the report and digest jobs run in the tests that ask for them
    )
    base.update(overrides)
    return Settings.from_env({}, **base)


async def async_until(pred: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Wait on the running loop until `pred()` holds; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


Connect = Callable[[], Transport]


def run_with(redis_url: str, scenario: Callable[[AsyncRedis, Connect], Awaitable[None]]
             ) -> None:
    """Run `scenario` on a fresh event loop with an asyncio Redis client of its own, and
    `connect`: a new transport for each stream worker (as `Stores.stream_transport` gives
    one), all closed at the end."""
    async def main() -> None:
        r = AsyncRedis.from_url(redis_url)
        opened: list[Transport] = []

        def connect() -> Transport:
            opened.append(transport(redis_url, block=1.0))
            return opened[-1]
        try:
            await scenario(r, connect)
        finally:
            await r.aclose()
            for t in opened:
                await t.aclose()

    asyncio.run(main())
