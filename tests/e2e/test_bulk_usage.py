"""Issue #26.7: bulk usage uploads do not share fate with logins, and are bounded in memory.

Against a real sidecar process and redis-server: three concurrent `RecordUsageBatches`
streams of 10,000 events of the largest documented size (32 attributes of 128-character
keys and 256-character values, ~12 KB an event). The attack: all three failed UNAVAILABLE
after writing 5,800 of 30,000 events, a seat-limited login of another account was denied
(the shared Redis connection dropped by its 2 s watchdog), and the server held 1.2-1.4 GB.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import redis

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import accounts_pb2_grpc as apb_grpc
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.api.v1 import session_control_pb2_grpc as spb_grpc
from sessiongate.store import keys
from tests.e2e.sidecar import rss_bytes, sidecar

STREAMS = 3
EVENTS = 10_000  # the most one stream may carry
PER_MESSAGE = 250  # ~3 MB: under gRPC's 4 MB message limit
RSS_GROWTH = 400 * 1024 * 1024  # the attack: +1.2 GB

# Every distinct event id of the usage stream, counted inside Redis (its entries are ~12 KB).
DISTINCT_IDS = """
local seen, n, last = {}, 0, '-'
while true do
  local got = redis.call('XRANGE', KEYS[1], last, '+', 'COUNT', 1000)
  if #got == 0 then break end
  for _, entry in ipairs(got) do
    local f = entry[2]
    for i = 1, #f, 2 do
      if f[i] == 'event_id' then
        if not seen[f[i + 1]] then seen[f[i + 1]] = true n = n + 1 end
      end
    end
    last = '(' .. entry[1]
  end
end
return n
"""


def batches(account: str) -> Iterator[spb.UsageBatch]:
    attributes = {f"{k:03d}" + "k" * 125: "v" * 256 for k in range(32)}
    for start in range(0, EVENTS, PER_MESSAGE):
        yield spb.UsageBatch(events=[
            spb.UsageEvent(event_id=f"{account}-{i:05d}", account_id=account, user_id="u",
                           feature="api", quantity=1, attributes=attributes)
            for i in range(start, start + PER_MESSAGE)])


def test_three_bulk_streams_land_once_while_a_seat_limited_login_stays_allowed(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> None:
    tenants = [f"tenant-{i}" for i in range(STREAMS)]
    try:
        with sidecar(redis_url, tmp_path) as (pid, addr), grpc.insecure_channel(addr) as ch:
            accounts = apb_grpc.AccountsStub(ch)
            for aid in tenants:
                accounts.UpsertAccount(apb.UpsertAccountRequest(
                    account=apb.Account(account_id=aid)), timeout=10)
            accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(
                account_id="other", users=["alice"], seat_limit=1)), timeout=10)
            sessions = spb_grpc.SessionControlStub(ch)
            login = spb.CheckSessionRequest(account_id="other", user_id="alice")
            assert sessions.CheckSession(login, timeout=5).decision == cpb.DECISION_ALLOW
            before = rss_bytes(pid)

            results: dict[str, object] = {}

            def upload(aid: str) -> None:
                with grpc.insecure_channel(addr) as own:
                    try:
                        results[aid] = spb_grpc.SessionControlStub(own).RecordUsageBatches(
                            batches(aid), timeout=120)
                    except grpc.RpcError as exc:
                        results[aid] = (exc.code(), exc.details(), exc.trailing_metadata())

            uploads = [threading.Thread(target=upload, args=(aid,)) for aid in tenants]
            for t in uploads:
                t.start()
            answers: list[tuple[int, int]] = []
            while any(t.is_alive() for t in uploads):
                r = sessions.CheckSession(login, timeout=10)
                answers.append((r.decision, r.reason))
                time.sleep(0.02)
            for t in uploads:
                t.join()
            grown = rss_bytes(pid) - before

        for aid in tenants:
            resp = results[aid]
            assert isinstance(resp, spb.RecordUsageBatchResponse), (aid, resp)
            assert (resp.accepted, resp.duplicates) == (EVENTS, 0)
        assert len(answers) > 5, "the logins did not overlap the uploads"
        assert set(answers) == {(cpb.DECISION_ALLOW, cpb.REASON_OK)}, set(answers)
        assert redis_client.xlen(keys.USAGE_STREAM) == STREAMS * EVENTS
        assert redis_client.eval(DISTINCT_IDS, 1, keys.USAGE_STREAM) == STREAMS * EVENTS
        assert grown < RSS_GROWTH, grown
    finally:
        redis_client.flushall()  # ~400 MB of events
