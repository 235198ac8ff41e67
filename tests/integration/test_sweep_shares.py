"""`serve --workers N` splits the dunning sweep: each worker sweeps its share of the buckets,
and takes over another's accounts once they have been due for `takeover_after`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.billing.scheduler import Sweeper
from sessiongate.config import Settings
from sessiongate.domain.errors import InvalidArgument
from sessiongate.service.billing import engine_for
from sessiongate.store import keys
from sessiongate.store.slots import bucket_of
from sessiongate.workers import worker_settings
from tests.integration.dunning_support import DAY, invoice, start, upsert
from tests.support import ServerThread

ACCOUNTS = [f"share-{i}" for i in range(24)]


@pytest.fixture
def srv(redis_client: redis.Redis, redis_url: str) -> Iterator[ServerThread]:
    s = start(redis_url)  # redis_client first: it empties the database
    try:
        yield s
    finally:
        s.stop()


def due_now(client: redis.Redis, now_ms: int) -> set[str]:
    return {bytes(m).decode() for b in keys.ALL_BUCKETS
            for m in client.zrangebyscore(keys.due_index(b), "-inf", now_ms)}


def test_workers_sweep_their_own_buckets_and_take_over_stalled_ones(
    srv: ServerThread, redis_client: redis.Redis
) -> None:
    for aid in ACCOUNTS:
        upsert(srv, account_id=aid)
        invoice(srv, f"{aid}-inv", account=aid, invoice_id=f"{aid}-inv")
    even = {a for a in ACCOUNTS if bucket_of(a) % 2 == 0}
    assert even and even != set(ACCOUNTS)  # both shares have accounts
    rt = srv.app.rt
    assert rt is not None
    first = Sweeper(rt.transport, engine_for(rt), rt.clock, share=(0, 2), takeover_after=30)
    srv.clock.advance(DAY + timedelta(seconds=1))  # every account crosses into REMINDER
    now_ms = int(srv.clock.now().timestamp() * 1000)
    assert due_now(redis_client, now_ms) == set(ACCOUNTS)

    assert srv.call(first.sweep_once()) == len(even)  # its own share only
    assert due_now(redis_client, now_ms) == set(ACCOUNTS) - even

    srv.clock.advance(timedelta(seconds=28))  # due 29 s: the other worker is late, not stalled
    assert srv.call(first.sweep_once()) == 0
    srv.clock.advance(timedelta(seconds=2))  # due 31 s: taken over
    assert srv.call(first.sweep_once()) == len(ACCOUNTS) - len(even)
    assert not due_now(redis_client, int(srv.clock.now().timestamp() * 1000))
    for aid in ACCOUNTS:  # each moved once
        history = srv.accounts.GetAccountHistory(apb.GetAccountHistoryRequest(account_id=aid))
        assert [t.to_state for t in history.transitions].count(cpb.ACCOUNT_STATE_REMINDER) == 1


def test_the_share_comes_from_the_worker_index() -> None:
    base = Settings(workers=3, metrics_addr="")
    assert [worker_settings(base, i).worker_index for i in range(3)] == [0, 1, 2]
    with pytest.raises(InvalidArgument, match="worker_index"):
        Settings(workers=2, worker_index=2)
    with pytest.raises(ValueError, match="share"):
        Sweeper(None, None, None, share=(1, 1))  # type: ignore[arg-type]
