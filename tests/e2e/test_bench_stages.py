"""bench.stages leaves out what each stage says it leaves out (bench/stages_site): else the
differences it reports between stages would be the cost of something else.

Each stage against a real sidecar process (its PYTHONPATH loading the stage's site) and the
test's redis-server: whether logins open new sessions, write their records (the account's
lease set) and log an access line.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import grpc
import pytest
import redis

from bench.stages import SITE
from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import accounts_pb2_grpc as apb_grpc
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.api.v1 import session_control_pb2_grpc as spb_grpc
from sessiongate.store import keys
from tests.e2e.sidecar import poll, sidecar

LOGINS = 25  # past the answer stage's 20th call


def logins(addr: str, account: str) -> list[str]:
    """The session ids of LOGINS logins of one user of a new `account`."""
    with grpc.insecure_channel(addr) as ch:
        apb_grpc.AccountsStub(ch).UpsertAccount(apb.UpsertAccountRequest(
            account=apb.Account(account_id=account, users=["alice"])), timeout=10)
        stub = spb_grpc.SessionControlStub(ch)
        return [stub.CheckSession(spb.CheckSessionRequest(account_id=account, user_id="alice"),
                                  timeout=10).session_id for _ in range(LOGINS)]


def access_lines(log: Path) -> int:
    return sum(1 for line in log.read_text().splitlines()
               if line.startswith("{") and json.loads(line).get("method") == "CheckSession")


@pytest.mark.parametrize(("stage", "records", "logged"), [
    ("", True, True), ("records", True, False), ("handler", False, False)])
def test_a_stage_leaves_out_the_records_and_lines_it_names(
        tmp_path: Path, redis_url: str, redis_client: redis.Redis, stage: str, records: bool,
        logged: bool) -> None:
    account = f"stage-{stage or 'whole'}-{time.monotonic_ns()}"
    path = os.pathsep.join(p for p in (str(SITE), os.environ.get("PYTHONPATH", "")) if p)
    with sidecar(redis_url, tmp_path, PYTHONPATH=path, BENCH_STAGE=stage,
                 SESSIONGATE_ACCESS_LOG="1") as (_, addr):
        ids = logins(addr, account)
        assert len(set(ids)) == LOGINS  # every login opened its own session
        if records:
            poll("the logins' records", lambda: redis_client.zcard(keys.leases(account)) >= LOGINS)
        else:
            time.sleep(0.5)  # ten times the batch writer's interval
            assert redis_client.zcard(keys.leases(account)) == 0
    assert (access_lines(tmp_path / "sidecar.log") == LOGINS) is logged


def test_the_answer_stage_answers_its_20th_answer_from_then_on(
        tmp_path: Path, redis_url: str) -> None:
    path = os.pathsep.join(p for p in (str(SITE), os.environ.get("PYTHONPATH", "")) if p)
    with sidecar(redis_url, tmp_path, PYTHONPATH=path, BENCH_STAGE="answer") as (_, addr):
        ids = logins(addr, f"stage-answer-{time.monotonic_ns()}")
    assert len(set(ids[:20])) == 20
    assert set(ids[19:]) == {ids[19]}
