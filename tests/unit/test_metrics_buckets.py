"""The inline instruments render exactly as prometheus_client's Histogram would."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from sessiongate.metrics import AGE_BUCKETS, LATENCY_BUCKETS, Buckets

VALUES = [0.0, 0.0001, 0.0002, 0.00020001, 0.0005, 0.003, 1.0, 4.99, 5.0, 7.5, 1e9]


class One(Collector):
    def __init__(self, fam: Metric) -> None:
        self.fam = fam

    def collect(self) -> Iterator[Metric]:
        yield self.fam


def text(registry: CollectorRegistry) -> list[str]:
    return [line for line in generate_latest(registry).decode().splitlines()
            if "_created" not in line]


def test_buckets_expose_what_a_prometheus_histogram_would() -> None:
    for bounds in (LATENCY_BUCKETS, AGE_BUCKETS):
        reference = CollectorRegistry()
        hist = Histogram("h_seconds", "doc", ["method"], buckets=bounds, registry=reference)
        ours = Buckets(bounds)
        for v in VALUES:
            hist.labels("M").observe(v)
            ours.observe(v)
        fam = HistogramMetricFamily("h_seconds", "doc", labels=["method"])
        buckets, total = ours.samples()
        fam.add_metric(["M"], buckets, total)
        registry = CollectorRegistry()
        registry.register(One(fam))
        assert text(registry) == text(reference)


def test_bucket_counts_are_cumulative_and_end_with_the_total() -> None:
    ours = Buckets((1.0, 2.0))
    for v in (0.5, 1.0, 1.5, 3.0):
        ours.observe(v)
    assert ours.samples() == ([("1.0", 2.0), ("2.0", 3.0), ("+Inf", 4.0)], 6.0)
