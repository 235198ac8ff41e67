"""Summaries of paired runs (`bench.sweep_ab`, `bench.payments_ab`): a figure's median and
range, and the median of each pair's ratio to the first tree's."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


def spread(values: Sequence[float]) -> str:
    """`median (min-max)`, two decimals."""
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def paired(runs: Sequence[dict[str, Any]], first: Sequence[dict[str, Any]], key: str) -> str:
    """`spread` of each pair's `key` over the first tree's in the same pair."""
    return spread([a[key] / b[key] for a, b in zip(runs, first, strict=True)])
