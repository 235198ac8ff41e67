"""The HTTP server's lifecycle: one aiohttp application on the sidecar's event loop.

app.py builds it, lets each part add its routes (`add_routes`, or `app` for a module that
takes an `aiohttp.web.Application`), starts it after the gRPC server and drains it on
SIGTERM like the others: requests in flight get the drain timeout to finish.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web


def split_addr(addr: str) -> tuple[str, int]:
    """`host:port` ("[::1]:9465" for IPv6) -> (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{addr!r} is not host:port")
    return host.strip("[]") or "127.0.0.1", int(port)


class HttpServer:
    def __init__(self, addr: str, *, drain_timeout: float = 10.0,
                 reuse_port: bool = False) -> None:
        self.host, self.port = split_addr(addr)
        self.app = web.Application()
        self._drain_timeout = drain_timeout
        self._reuse_port = reuse_port
        self._runner: web.AppRunner | None = None

    def add_routes(self, routes: Iterable[web.AbstractRouteDef]) -> None:
        """Before `start`: aiohttp freezes the router when the app starts."""
        self.app.add_routes(routes)

    async def start(self) -> int:
        """Listen; the port bound (the one asked for, or the kernel's pick for port 0)."""
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False,
                               shutdown_timeout=self._drain_timeout)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port,
                           reuse_port=self._reuse_port or None)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish (up to the drain timeout), close."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
