"""Benchmark drivers (make bench); results under bench/results/."""
