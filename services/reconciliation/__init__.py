"""reconciliation"""
