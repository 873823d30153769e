"""End-to-end tests: the whole stack as subprocesses, driven in a real browser."""
