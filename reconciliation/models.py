"""Reconciliation of internal records against external confirmations: filled in by its issue."""
