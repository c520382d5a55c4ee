"""Benchmarks (``mmimic bench``): speed as ratios measured in one run, never as timed tests."""

from mmimic.bench.throughput import format_table, format_train_table, run_bench, run_train_bench, write_json

__all__ = ["format_table", "format_train_table", "run_bench", "run_train_bench", "write_json"]
