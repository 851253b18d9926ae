"""Helpers shared by tests and rehearsal scripts (real servers on loopback)."""
