"""`serve --workers N`: N server processes sharing the port through SO_REUSEPORT.

Python serves one core per process; the kernel spreads connections across the workers. The
parent owns the embedded Redis (when no URL is set), forwards SIGTERM, and exits when all
workers have drained.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing as mp
import signal
import sys

import structlog

from sessiongate.config import Settings
from sessiongate.store.embedded import EmbeddedRedis

log = structlog.get_logger(__name__)


def _worker(settings: Settings, index: int) -> None:
    from sessiongate.app import Application
    from sessiongate.logs import configure

    configure(settings.log_level, settings.log_format)
    structlog.contextvars.bind_contextvars(worker=index)
    asyncio.run(Application(settings).serve_forever())


def worker_settings(settings: Settings, index: int) -> Settings:
    """Worker i sweeps its share of the due buckets (`worker_index`), and serves metrics on
    the metrics port + i: each process has its own registry, and Prometheus scrapes each (the
    sum over workers is the sidecar's)."""
    settings = dataclasses.replace(settings, worker_index=index)
    if not settings.metrics_addr or index == 0:
        return settings
    host, _, port = settings.metrics_addr.rpartition(":")
    return dataclasses.replace(settings, metrics_addr=f"{host}:{int(port) + index}")


def run_workers(settings: Settings) -> int:
    embedded = None
    if not settings.redis_url:
        embedded = EmbeddedRedis(settings.data_dir)
        embedded.start()
        settings = dataclasses.replace(settings, redis_url=embedded.url)
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_worker, args=(worker_settings(settings, i), i),
                    name=f"sessiongate-{i}")
        for i in range(settings.workers)
    ]
    for p in procs:
        p.start()

    def forward(signum: int, _frame: object) -> None:
        for p in procs:
            if p.pid is not None and p.is_alive():
                p.terminate()  # SIGTERM: each worker drains

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = 0
    for p in procs:
        p.join()
        code = code or (p.exitcode or 0)
    if embedded is not None:
        embedded.stop()
    log.info("all workers stopped", exit_code=code)
    return 0 if code in (0, -signal.SIGTERM) else code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_workers(Settings.from_env()))
