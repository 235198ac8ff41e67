"""The access log's output: one write per event-loop iteration, nothing held past it."""

from __future__ import annotations

import asyncio

import pytest

from sessiongate.service.rpc import LoopBatchedStderr


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
