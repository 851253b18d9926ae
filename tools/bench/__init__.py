"""Benchmarks (scripts, never tests): `make bench` (preview.py), `make bench-verify` (catchup.py),
`make bench-clone` (clone.py) and `make bench-apply` (apply.py, with sync_delay.c)."""
