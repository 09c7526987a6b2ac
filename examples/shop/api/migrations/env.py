"""alembic's environment: the database comes from DATABASE_URL (the app's .env)."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from shop.config import sqlalchemy_url
from sqlalchemy import create_engine

if context.config.config_file_name is not None:
    fileConfig(context.config.config_file_name)

with create_engine(sqlalchemy_url()).connect() as connection:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
