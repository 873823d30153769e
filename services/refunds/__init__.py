"""Refunds: the engine that never sends one twice, the dashboard's desk, approvals and bulk refunds."""
