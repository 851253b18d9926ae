"""make roll-nodes: replace a stack's nodes one at a time (tools/roll_nodes/procedure.py)."""
