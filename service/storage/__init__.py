"""SQLAlchemy models and the queries the domain needs; nothing here knows HTTP or Polar."""
