"""Scheduling state: models and queries (filled in by the scheduling work)."""
