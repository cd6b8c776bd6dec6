"""Benchmarks of the hub against local clusters: they print figures beside their goals
and write bench/results/; they never gate CI and are never part of `make test`."""
