"""Reconciliation: does our database agree with PortOne? Rules, real-time checks, runs, the schedule."""
