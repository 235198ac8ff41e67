"""The bench harness without h2load: request bodies, command lines, log and report parsing."""

from __future__ import annotations

import struct
from pathlib import Path

from bench import h2load, report
from bench.run import ratios
from sessiongate.api.v1 import session_control_pb2 as spb

STDOUT = """
finished in 3.00s, 3250.33 req/s, 120.11KB/s
requests: 9751 total, 9751 started, 9751 done, 9750 succeeded, 1 failed, 0 errored, 0 timeout
"""


def test_the_body_is_a_grpc_frame_of_the_message(tmp_path: Path) -> None:
    msg = spb.CheckSessionRequest(account_id="acme", user_id="alice", no_session=True)
    body = h2load.write_request(tmp_path / "req.bin", msg).read_bytes()
    flag, length = struct.unpack(">BI", body[:5])
    assert (flag, length) == (0, len(body) - 5)
    assert spb.CheckSessionRequest.FromString(body[5:]) == msg


def test_fixed_rate_is_split_over_the_clients(tmp_path: Path) -> None:
    load = h2load.Load(clients=10, streams=1, duration=5, warmup=1, rate=2000)
    cmd = h2load.command("h2load", "http://127.0.0.1:1/S/M", tmp_path / "b", load,
                         tmp_path / "log", headers=[("authorization", "Bearer t")])
    assert cmd[cmd.index("--rps") + 1] == "200"
    assert "content-type: application/grpc" in cmd and "te: trailers" in cmd
    assert "authorization: Bearer t" in cmd
    assert cmd[cmd.index("-c") + 1] == "10" and cmd[cmd.index("-D") + 1] == "5"
    closed = h2load.command("h2load", "u", tmp_path / "b", h2load.Load(), tmp_path / "log")
    assert "--rps" not in closed


def test_http1_runs_one_request_per_connection_at_a_time_without_grpc_headers(
        tmp_path: Path) -> None:
    cmd = h2load.command("h2load", "http://127.0.0.1:1/authz", None,
                         h2load.Load(clients=8, streams=8), tmp_path / "log",
                         headers=[("x-user-id", "u")], h1=True)
    assert "--h1" in cmd and "-d" not in cmd
    assert cmd[cmd.index("-c") + 1] == "64" and cmd[cmd.index("-m") + 1] == "1"
    assert "te: trailers" not in cmd and "x-user-id: u" in cmd


def test_log_and_summary_parsing() -> None:
    log = "1700000000000000\t200\t1500\n1700000000000100\t200\t500\n1700000000000200\t503\t90\n"
    durations, bad = h2load.parse_log(log)
    assert (sorted(durations), bad) == ([500, 1500], 1)
    summary = h2load.parse_summary(STDOUT)
    assert summary["rps"] == 3250.33 and summary["failed"] == 1 and summary["seconds"] == 3.0
    res = h2load.summarize(STDOUT, log, h2load.Load())
    assert (res.requests, res.failed, res.p50_ms, res.max_ms) == (2, 2, 0.5, 1.5)
    assert h2load.percentile(list(range(1, 101)), 99) == 99.0
    assert h2load.percentile(list(range(1, 1001)), 99.9) == 999.0
    assert res.p999_ms == 1.5


def test_ratios_and_report(tmp_path: Path) -> None:
    def run(rps: float, p99: float) -> dict[str, object]:
        one = {"rps": rps, "failed": 0, "p50_ms": 1.0, "p99_ms": p99, "p999_ms": 1.5 * p99,
               "max_ms": 2 * p99}
        return {"title": "t", "saturated": one, "rate_1000": one, "rate_2000": one}

    latency = {"floor": run(1000, 4.0), "login": run(950, 4.4),
               "seat_login": {"title": "s", "skipped": "feature absent"},
               "http_floor": run(2000, 2.0), "http_authz": run(1500, 3.0)}
    r = ratios(latency)
    assert r["login"]["throughput"] == 0.95
    assert r["login"]["meets_throughput_target"] is True
    assert r["login"]["meets_p99_target"] is True
    assert r["login"]["rate_2000_p999"] == 1.1
    assert "seat_login" not in r and "http_floor" not in r
    # The HTTP endpoint against its own floor, not the gRPC one.
    assert r["http_authz"]["throughput"] == 0.75
    assert r["http_authz"]["meets_throughput_target"] is False
    result = {"started": "now", "machine": {"cpu": "c", "cores": 2, "os": "o", "python": "3",
              "grpcio": "g", "redis": "r", "protobuf": "p"}, "latency": latency, "ratios": r,
              "extras": {"memory": {"summary": "900 bytes"}}}
    doc = tmp_path / "performance.md"
    doc.write_text(f"# Perf\n\nprose\n\n{report.BEGIN}\nold\n{report.END}\n\nmore prose\n")
    report.update_doc(doc, result)
    text = doc.read_text()
    assert "old" not in text and "prose" in text and "more prose" in text
    assert "feature absent" in text and "900 bytes" in text and "| login | 0.95 |" in text
