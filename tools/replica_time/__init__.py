"""How long one new MySQL replica takes to get its data, estimated from a stack's offline plan (estimate.py)."""
