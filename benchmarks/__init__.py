"""Benchmarks: `make bench` runs every ``bench_*.py`` module's ``main()`` (not run by CI)."""
