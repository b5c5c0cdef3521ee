"""Benchmarks: each module has run() -> dict and writes bench/results/<name>.json."""
