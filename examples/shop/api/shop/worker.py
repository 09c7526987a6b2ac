"""The shop's worker: takes queued orders from Redis and writes them to Postgres."""

from __future__ import annotations

import json
import signal
import sys
import time
from types import FrameType

import psycopg
import redis

from shop import config

stopping = False


def stop(signum: int, frame: FrameType | None) -> None:
    global stopping
    stopping = True


def main() -> None:
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    queue = redis.Redis.from_url(config.REDIS_URL, socket_timeout=10)
    print(f"worker {config.RELEASE}: waiting for orders on {config.JOBS}", flush=True)
    while not stopping:
        try:
            with psycopg.connect(config.DATABASE_URL, autocommit=True) as conn:
                while not stopping:
                    job = queue.brpop([config.JOBS], timeout=1)
                    if job is None:
                        continue
                    order = json.loads(job[1])
                    conn.execute("INSERT INTO orders (id, item) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING", (order["id"], order["item"]))
                    print(f"worker: order {order['id']} written", flush=True)
        except (psycopg.OperationalError, redis.RedisError) as error:
            print(f"worker: {type(error).__name__}: {error}; retrying in 1 s", file=sys.stderr, flush=True)
            time.sleep(1)
    print("worker: stopped", flush=True)


if __name__ == "__main__":
    main()
