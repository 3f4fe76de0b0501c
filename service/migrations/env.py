"""Alembic environment: runs on the engine the service hands it (no URL in an ini file)."""
from alembic import context

from service.storage.models import Base

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    context.run_migrations()
