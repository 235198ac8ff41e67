"""Access and error lines of one RPC from `sessiongate serve`: one request id per call.

The request id is the caller's `x-request-id` when sane, else made once by the server: the
`backend error` line and the access line of the same call must carry the same one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import accounts_pb2_grpc as apb_grpc
from sessiongate.store.embedded import EmbeddedRedis, free_port
from tests.e2e.test_process import wait_serving


def test_error_and_access_lines_of_a_call_share_its_request_id(tmp_path: Path) -> None:
    redis = EmbeddedRedis(tmp_path / "redis", persistent=False)
    redis.start()
    addr = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "SESSIONGATE_GRPC_ADDR": addr, "SESSIONGATE_LOG_FORMAT": "json",
           "SESSIONGATE_LOG_LEVEL": "info", "SESSIONGATE_ACCESS_LOG": "1",
           "SESSIONGATE_SCHEDULER": "0", "SESSIONGATE_METRICS_ADDR": "",
           "SESSIONGATE_HTTP_ADDR": "",
           "SESSIONGATE_REDIS_URL": redis.url}
    with (tmp_path / "sidecar.log").open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "sessiongate.cli", "serve"], env=env,
                                stderr=log, stdout=subprocess.DEVNULL)
    try:
        wait_serving(addr)
        redis.stop()  # every account read now fails: UNAVAILABLE and a `backend error` line
        with grpc.insecure_channel(addr) as ch:
            stub = apb_grpc.AccountsStub(ch)
            for metadata in ((), (("x-request-id", "req-42"),)):
                try:
                    stub.GetAccount(apb.GetAccountRequest(account_id="acme"),
                                    metadata=metadata, timeout=30)
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE
                else:
                    raise AssertionError("GetAccount answered without Redis")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0  # drained and flushed: every line is in the file
        redis.stop()
    lines = [json.loads(line) for line in (tmp_path / "sidecar.log").read_text().splitlines()
             if line.startswith("{")]
    calls: list[dict[str, Any]] = [e for e in lines if e.get("method") == "GetAccount"]
    errors = [e for e in calls if e["event"] == "backend error"]
    access = [e for e in calls if e["event"] == "rpc"]
    assert len(errors) == len(access) == 2, calls
    assert [e["code"] for e in access] == ["UNAVAILABLE", "UNAVAILABLE"]
    assert [e["request_id"] for e in errors] == [e["request_id"] for e in access]
    generated, given = (e["request_id"] for e in access)
    assert generated and generated != "req-42" and given == "req-42"
