"""Adapters to the outside world behind the domain's interfaces (SMTP today)."""
