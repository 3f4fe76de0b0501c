"""Lifecycle and decision rules in plain Python: no Flask, no oso."""
