"""The access log's own renderer writes exactly what structlog's configured JSON chain would."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from sessiongate import logs
from sessiongate.service.rpc import request_id_of

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$")


class Capture:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def msg(self, message: str) -> None:
        self.lines.append(message)

    info = msg


@pytest.fixture
def json_info() -> Iterator[None]:
    logs.configure("info", "json")
    try:
        yield
    finally:
        structlog.contextvars.clear_contextvars()
        logs.configure("warning", "json")  # as tests/conftest.py


def by_structlog(**fields: Any) -> str:
    out = Capture()
    structlog.wrap_logger(out).info("rpc", **fields)
    (line,) = out.lines
    return line


def without_timestamp(line: str) -> tuple[str, dict[str, Any]]:
    """The text with its timestamp blanked (byte-for-byte comparable), and the parsed rest."""
    parsed = json.loads(line)
    assert ISO_UTC.match(parsed.pop("timestamp")), line
    return re.sub(r'"timestamp": "[^"]*"', '"timestamp": ""', line), parsed


@pytest.mark.parametrize(("peer", "rid"), [
    ("ipv4:127.0.0.1:5555", "b1f677d5-7"),
    ('ipv6:[::1]:80 "quoted" \\ back', "r\u00e9sum\u00e9-\u2603"),
    ("unix:/tmp/x\n\x01", "plain"),
])
def test_same_keys_order_and_values_as_the_structlog_chain(
        json_info: None, peer: str, rid: str) -> None:
    fields = dict(method="CheckSession", code="OK", ms=0.125, peer=peer, request_id=rid)
    fast = logs.access_line("CheckSession", "OK", 0.125, peer, rid)
    slow = by_structlog(**fields)
    assert without_timestamp(fast) == without_timestamp(slow)
    assert fast.isascii() and "\n" not in fast  # one JSON line, escaped like json.dumps
    assert list(json.loads(fast)) == ["method", "code", "ms", "peer", "request_id", "event",
                                      "level", "timestamp"]


def test_bound_context_variables_are_merged_like_structlog(json_info: None) -> None:
    structlog.contextvars.bind_contextvars(worker=3, method="shadowed", zone={"a": [1]})
    fast = logs.access_line("GetAccount", "NOT_FOUND", 12.5, "ipv4:1.2.3.4:9", "x")
    slow = by_structlog(method="GetAccount", code="NOT_FOUND", ms=12.5, peer="ipv4:1.2.3.4:9",
                        request_id="x")
    assert without_timestamp(fast) == without_timestamp(slow)
    assert json.loads(fast)["worker"] == 3 and json.loads(fast)["method"] == "GetAccount"


def test_a_batch_of_lines_renders_as_each_would_alone(json_info: None) -> None:
    structlog.contextvars.bind_contextvars(worker=1)
    ns = 1_769_817_600_123_456_789
    records = [("CheckSession", "OK", 0.000125, "ipv4:127.0.0.1:5555", "a-1", ns),
               ("GetAccount", "NOT_FOUND", 0.0125, 'ipv6:[::1]:80 "q"', "r\u00e9sum\u00e9", ns),
               ("CheckSession", "OK", 1.5, "ipv4:127.0.0.1:5556", "a-2", ns + 2_000_000)]
    together = logs.access_lines(records).split("\n")
    alone = [logs.access_line(m, c, round(s * 1000, 3), p, r) for m, c, s, p, r, _ in records]
    assert [without_timestamp(x) for x in together] == [without_timestamp(x) for x in alone]
    assert [json.loads(x)["timestamp"] for x in together] == [  # each its own call's end
        "2026-01-31T00:00:00.123456Z", "2026-01-31T00:00:00.123456Z",
        "2026-01-31T00:00:00.125456Z"]
    assert logs.access_lines([]) == ""


def test_configure_records_whether_the_fast_shape_applies() -> None:
    try:
        logs.configure("info", "console")
        assert (logs.state.json_lines, logs.state.info) == (False, True)
        logs.configure("error", "json")
        assert (logs.state.json_lines, logs.state.info) == (True, False)
    finally:
        logs.configure("warning", "json")


def test_request_id_is_the_callers_when_sane_else_a_fresh_unique_one() -> None:
    assert request_id_of("abc-1") == "abc-1"
    assert request_id_of(b"from-bytes") == "from-bytes"
    made = {request_id_of(v) for v in (None, "", "x" * 129, "bad\nid", None)}
    assert len(made) == 5 and all(re.fullmatch(r"[0-9a-f]{8}-\d+", m) for m in made)


def test_timestamps_are_those_of_structlogs_iso_utc_stamper() -> None:
    from datetime import UTC, datetime, timedelta

    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for ns in (0, 999, 1_000, 1_769_817_600_000_000_000, 1_769_817_600_123_456_789,
               1_769_817_659_999_999_999, 1_769_817_660_000_001_000, 4_102_444_800_500_000_000):
        expected = (epoch + timedelta(microseconds=ns // 1000)).isoformat().replace("+00:00", "Z")
        assert logs.iso_utc(ns) == expected, ns


def test_console_format_goes_through_structlog(monkeypatch: pytest.MonkeyPatch) -> None:
    from sessiongate.service.rpc import Observer

    written: list[str] = []

    class Stream:
        def write(self, text: str) -> int:
            written.append(text)
            return len(text)

        def flush(self) -> None:
            pass

    monkeypatch.setattr("sys.stderr", Stream())
    try:
        logs.configure("info", "console")
        Observer().record("CheckSession", "OK", 0.000125, "ipv4:127.0.0.1:1", "req-7")
    finally:
        logs.configure("warning", "json")
    (line,) = written
    assert not line.startswith("{") and "rpc" in line and "req-7" in line


def test_ms_is_written_as_the_repr_of_its_rounding() -> None:
    """`access_line` writes `ms` from `:.3f` (cheaper): the text `repr(round(ms, 3))` gives."""
    import random

    rng = random.Random(7)
    values = [0.0, 0.0005, 0.0015, 1.5, 2.0, 123.4565, 1e-9, 999.9995, 1e14 + 0.25, 1e16,
              *(rng.random() * rng.choice((1, 10, 1_000, 100_000)) for _ in range(20_000))]
    for ms in values:
        line = logs.access_line("CheckSession", "OK", ms, "ipv4:1", "r", 0, "")
        assert line.split('"ms": ')[1].split(",")[0] == repr(round(ms, 3)), ms


def test_peers_are_quoted_each_time_they_are_new_and_the_table_is_bounded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "MAX_PEERS", 3)
    monkeypatch.setattr(logs, "_peers", {})
    peers = [f'ipv4:10.0.0.{i}:"{i}"' for i in range(7)]
    for peer in (*peers, *peers):
        line = logs.access_line("CheckSession", "OK", 1.0, peer, "r", 0, "")
        assert json.loads(line.split('"peer": ')[1].split(', "request_id"')[0]) == peer
    assert len(logs._peers) <= 3
