"""Benchmarks (``mmimic bench``): speed as ratios measured in one run, never as timed tests."""

from mmimic.bench.throughput import format_table, run_bench, write_json

__all__ = ["format_table", "run_bench", "write_json"]
