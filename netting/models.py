"""Netting windows and net obligations: filled in by the netting issue (see docs/DESIGN in shared)."""
