"""The shop's API, a plain WSGI app served by gunicorn.

GET  /api/health   200 when Postgres and Redis answer (and the schema is migrated), else 503
POST /api/orders   {"item": "..."}: queued on Redis for the worker, 202
GET  /api/orders   the orders the worker has written to Postgres
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import redis
from psycopg_pool import ConnectionPool

from shop import config

if config.RELEASE.endswith("-broken"):
    # A release built to fail as it starts, as a bad deploy would (`make bench` of rollbacks): gunicorn
    # reports the worker's boot error and exits with code 3.
    raise RuntimeError(f"shop: release {config.RELEASE} is built to fail at start")
if config.RELEASE.endswith("-slow"):
    # A release that needs 25 s to boot (a JVM, a model loading): it goes live once it answers.
    time.sleep(25)

# Opened in each gunicorn worker as it imports the app (connections are made in the background).
pool = ConnectionPool(config.DATABASE_URL, min_size=1, max_size=4, open=True, timeout=3)
queue = redis.Redis.from_url(config.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)

Response = tuple[str, dict[str, Any]]


def health() -> Response:
    checks: dict[str, str] = {}
    try:
        with pool.connection() as conn:
            revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        checks["postgres"] = "ok"
        checks["schema"] = revision[0] if revision else "none"
    except Exception as error:
        checks["postgres"] = f"error: {type(error).__name__}"
    try:
        queue.ping()
        checks["redis"] = "ok"
    except redis.RedisError as error:
        checks["redis"] = f"error: {type(error).__name__}"
    if config.RELEASE.endswith("-unhealthy"):
        # A release that runs but cannot work (a wrong setting, the most common bad deploy).
        checks["config"] = "error: built to answer 503"
    healthy = checks["postgres"] == "ok" and checks["redis"] == "ok" and "config" not in checks
    return ("200 OK" if healthy else "503 Service Unavailable"), {
        "status": "ok" if healthy else "failing",
        "release": config.RELEASE,
        **checks,
    }


def queue_order(body: dict[str, Any]) -> Response:
    item = body.get("item")
    if not isinstance(item, str) or not 0 < len(item) <= 200:
        return "400 Bad Request", {"error": 'expected {"item": "<1 to 200 characters>"}'}
    order = {"id": str(uuid.uuid4()), "item": item}
    queue.lpush(config.JOBS, json.dumps(order))
    return "202 Accepted", {"queued": order["id"]}


def list_orders() -> Response:
    with pool.connection() as conn:
        rows = conn.execute("SELECT id, item, created_at FROM orders ORDER BY created_at, id").fetchall()
    return "200 OK", {"orders": [{"id": str(r[0]), "item": r[1], "created_at": r[2].isoformat()} for r in rows]}


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
    if (method, path) == ("GET", "/api/health"):
        status, payload = health()
    elif (method, path) == ("POST", "/api/orders"):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        try:
            body = json.loads(environ["wsgi.input"].read(length) or b"{}")
        except json.JSONDecodeError:
            body = {}
        status, payload = queue_order(body if isinstance(body, dict) else {})
    elif (method, path) == ("GET", "/api/orders"):
        status, payload = list_orders()
    else:
        status, payload = "404 Not Found", {"error": f"no route {method} {path}"}
    data = json.dumps(payload).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
