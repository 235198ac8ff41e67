"""The access log's output: one write per event-loop iteration, nothing held past it."""

from __future__ import annotations

import asyncio
import json

import pytest

from sessiongate import logs
from sessiongate.service.rpc import MAX_PENDING, CallRecord, LoopBatchedStderr, Observer


class CountingStream:
    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_lines_of_one_iteration_go_out_in_one_write_at_its_end(
        monkeypatch: pytest.MonkeyPatch) -> None:
    stream = CountingStream()
    monkeypatch.setattr("sys.stderr", stream)
    out = LoopBatchedStderr()

    async def main() -> None:
        out.info("a")
        out.info("b")
        assert stream.writes == []  # not yet: the iteration is still running
        await asyncio.sleep(0)
        assert stream.writes == ["a\nb\n"]
        out.info("c")
        await asyncio.sleep(0)

    asyncio.run(main())
    assert stream.writes == ["a\nb\n", "c\n"]


def test_outside_an_event_loop_a_line_is_written_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    stream = CountingStream()
    monkeypatch.setattr("sys.stderr", stream)
    out = LoopBatchedStderr()
    out.info("now")
    assert stream.writes == ["now\n"]


def test_calls_are_reported_together_a_moment_later(monkeypatch: pytest.MonkeyPatch) -> None:
    """The observer keeps a record per call and reports them together `flush_after` later:
    the hooks get the batch, the access log writes its lines in one write, with request ids
    made then for callers that gave none (or an unusable one), the caller's otherwise."""
    stream = CountingStream()
    monkeypatch.setattr("sys.stderr", stream)
    batches: list[list[CallRecord]] = []
    logs.configure("info", "json")
    try:
        async def main() -> None:
            observer = Observer(loop=asyncio.get_running_loop(), flush_after=0.05)
            observer.add_hook(batches.append)
            observer.record("CheckSession", "OK", 0.001, "ipv4:127.0.0.1:1", None, "given-1")
            observer.record("CheckSession", "OK", 0.002, "ipv4:127.0.0.1:1", None, None)
            observer.record("GetAccount", "NOT_FOUND", 0.003, "ipv4:127.0.0.1:2", "made-9")
            observer.record("GetAccount", "OK", 0.004, "ipv4:127.0.0.1:2", None, b"bad\nid")
            await asyncio.sleep(0)
            assert stream.writes == [] and batches == []  # not yet
            await asyncio.sleep(0.2)
            assert len(stream.writes) == 1 and len(batches) == 1
            observer.flush()  # nothing left: nothing reported
            assert len(stream.writes) == 1 and len(batches) == 1

        asyncio.run(main())
    finally:
        logs.configure("warning", "json")
    assert [(r[0], r[1], r[2]) for r in batches[0]] == [
        ("CheckSession", "OK", 0.001), ("CheckSession", "OK", 0.002),
        ("GetAccount", "NOT_FOUND", 0.003), ("GetAccount", "OK", 0.004)]
    lines = [json.loads(x) for x in stream.writes[0].splitlines()]
    assert [(x["method"], x["code"], x["ms"]) for x in lines] == [
        ("CheckSession", "OK", 1.0), ("CheckSession", "OK", 2.0),
        ("GetAccount", "NOT_FOUND", 3.0), ("GetAccount", "OK", 4.0)]
    ids = [x["request_id"] for x in lines]
    assert ids[0] == "given-1" and ids[2] == "made-9"
    assert ids[1] != ids[3] and "-" in ids[1] and "\n" not in ids[3]


def test_a_full_batch_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    batches: list[int] = []
    observer = Observer(access_log=False)
    observer.add_hook(lambda calls: batches.append(len(calls)))

    async def main() -> None:
        for _ in range(MAX_PENDING + 1):
            observer.record("CheckSession", "OK", 0.001, "", None)
        assert batches == [MAX_PENDING]
        observer.flush()

    asyncio.run(main())
    assert batches == [MAX_PENDING, 1]
