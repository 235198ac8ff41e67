"""`Kept`: bounded by emptying when full, a hit is a plain dict lookup."""

from __future__ import annotations

from sessiongate.speed.kept import Kept


def test_keep_returns_the_value_and_empties_the_memo_when_full() -> None:
    kept: Kept[int, str] = Kept(3)
    assert [kept.keep(i, str(i)) for i in range(3)] == ["0", "1", "2"]
    assert dict(kept) == {0: "0", 1: "1", 2: "2"} and kept.get(1) == "1"
    assert kept.keep(3, "3") == "3"  # full: emptied, then kept
    assert dict(kept) == {3: "3"}
    assert kept.get(0) is None


def test_keeping_a_present_key_again_replaces_it_within_the_bound() -> None:
    kept: Kept[str, int] = Kept(2)
    kept.keep("a", 1)
    kept.keep("a", 2)
    assert dict(kept) == {"a": 2}
    for i in range(100):
        kept.keep(f"k{i}", i)
        assert len(kept) <= 2
