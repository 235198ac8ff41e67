"""The seat log per billing period (issue #26.6): a snapshot at the start of each period with
changes, then deltas; what lies before the retained periods is dropped, and summaries of the
retained periods bill as before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
import redis

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.domain.periods import months_before
from sessiongate.store import keys
from sessiongate.store.activity import DELTA, SNAPSHOT
from sessiongate.store.usage import SEAT_LOG_MONTHS
from tests.support import ServerThread

DAY = 86_400
MONTHS = SEAT_LOG_MONTHS + 5  # Jan 2026 .. Jun 2028


def month(m: int) -> datetime:
    return datetime(2026 + m // 12, m % 12 + 1, 1, tzinfo=UTC)


def entries(r: redis.Redis, aid: str) -> list[list[str]]:
    raw = r.lrange(keys.seat_changes(aid), 0, -1)
    raw += (r.hget(keys.account(aid), "s") or b"").split(b"\x1e")[1:]
    return [e.decode().split("\x1f") for e in raw]


def summary(srv: ServerThread, period: str) -> apb.UsageSummary:
    return srv.accounts.GetUsageSummary(apb.GetUsageSummaryRequest(
        account_id="acme", period=period, seat_unit_price_minor=3000))


def test_each_period_keeps_a_snapshot_and_its_changes_and_old_periods_are_trimmed(
    server: ServerThread, redis_client: redis.Redis
) -> None:
    server.clock.set(month(0))
    server.accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(
        account_id="acme", users=["a", "b"])))
    for m in range(MONTHS):  # on the 10th, c joins (even months) or leaves (odd months)
        server.clock.set(month(m) + timedelta(days=9))
        users = ["a", "b", "c"] if m % 2 == 0 else ["a", "b"]
        server.accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(
            account_id="acme", users=users)))

    got = entries(redis_client, "acme")
    oldest = months_before(month(MONTHS - 1), SEAT_LOG_MONTHS - 1)
    # The log begins with the snapshot of the oldest retained period, then two entries per
    # period: its snapshot, its change (a few bytes, not the roster).
    assert got[0][2] == SNAPSHOT and int(got[0][1]) == int(oldest.timestamp() * 1000)
    assert len(got) == 2 * SEAT_LOG_MONTHS
    assert [e[2] for e in got] == [SNAPSHOT, DELTA] * SEAT_LOG_MONTHS
    assert {e[3] for e in got[1::2]} == {"+c", "-c"}

    for m in (MONTHS - SEAT_LOG_MONTHS, MONTHS - 2, MONTHS - 1):
        s = summary(server, f"{month(m):%Y-%m}")
        length = int((month(m + 1) - month(m)).total_seconds())
        c = length - 9 * DAY if m % 2 == 0 else 9 * DAY
        assert s.seat_seconds == 2 * length + c, m
        assert s.peak_concurrent_seats == 3
        charges = {x.mode: x.amount_minor for x in s.seat_charges}
        assert charges[apb.PRORATION_MODE_WHOLE_PERIOD] == 3 * 3000
        assert charges[apb.PRORATION_MODE_NEXT_PERIOD] == (2 if m % 2 == 0 else 3) * 3000
        assert charges[apb.PRORATION_MODE_PRORATA] == (2 * 3000 * (2 * length + c)
                                                       + length) // (2 * length)

    with pytest.raises(grpc.RpcError) as err:
        summary(server, f"{month(MONTHS - SEAT_LOG_MONTHS - 1):%Y-%m}")
    assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert (err.value.details() or "").startswith("period:")
