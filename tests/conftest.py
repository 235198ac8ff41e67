"""Shared fixtures: a real redis-server on a free port (or SESSIONGATE_TEST_REDIS_URL)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from sessiongate.logs import configure
from sessiongate.store.embedded import EmbeddedRedis
from tests.support import ServerThread, make_settings
from tests.system_packages import ensure_all

configure("warning", "json")

# Servers the tests start as processes inherit this environment: none binds the default HTTP
# or metrics port (a developer's own `make run`, or a parallel test, may hold them) unless
# the test asks for an address of its own.
os.environ.setdefault("SESSIONGATE_HTTP_ADDR", "")
os.environ.setdefault("SESSIONGATE_METRICS_ADDR", "")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Debian packages the suite runs (nginx, Caddy, Chromium) installed up front, outside
    any test's timeout (tests/system_packages.py)."""
    ensure_all()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("SESSIONGATE_TEST_REDIS_URL")
    if url:
        yield url
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), persistent=False)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A sync client on a Redis flushed before the test."""
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def server(redis_client: redis.Redis, redis_url: str) -> Iterator[ServerThread]:
    srv = ServerThread(make_settings(redis_url)).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
