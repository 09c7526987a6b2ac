"""What the API and the worker read from their environment (compose passes .env and the release)."""

from __future__ import annotations

import os

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://shop@db/shop")
REDIS_URL = os.environ.get("REDIS_URL", "redis://redis:6379/0")
RELEASE = os.environ.get("RELEASE", "dev")
JOBS = "shop:jobs"
"""The Redis list the API pushes orders onto and the worker pops them from."""


def sqlalchemy_url() -> str:
    """DATABASE_URL for SQLAlchemy (alembic), with the psycopg 3 driver."""
    return DATABASE_URL.replace("postgresql://", "postgresql+psycopg://", 1)
