"""The audit trail: who did what to which payment (trail.py writes, reader.py lists)."""
