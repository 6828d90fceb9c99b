"""Benchmarks of Pier (run by `make bench`; see bench/run.py)."""
