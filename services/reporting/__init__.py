"""Figures and files for people: the overview, sales summaries, CSV exports and their download links."""
