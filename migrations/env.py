"""Alembic environment: runs revisions online against the URL given by bandit-router or -x url=."""

from __future__ import annotations

from alembic import context

from bandit_router.config import get_settings
from bandit_router.store.db import make_engine
from bandit_router.store.models import Base

config = context.config
url = (
    context.get_x_argument(as_dictionary=True).get("url")
    or config.get_main_option("sqlalchemy.url")
    or get_settings().database_url
)

engine = make_engine(url)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
