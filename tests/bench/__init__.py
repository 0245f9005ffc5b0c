"""Benchmarks (`make bench`): each `bench_*.py` module measures; `__main__` writes the report."""
