"""A real 3-master Redis Cluster for the session, and a server on it per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.cluster import LocalCluster
from tests.support import ServerThread, make_settings


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path_factory.mktemp("cluster")).start()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
def cluster_server(cluster: LocalCluster) -> Iterator[ServerThread]:
    cluster.flush()
    srv = ServerThread(make_settings(cluster.url, redis_cluster=True)).start()
    try:
        yield srv
    finally:
        srv.stop()
