"""Benchmarks (scripts, never tests): `make bench` (preview.py), `make bench-verify` (catchup.py)."""
