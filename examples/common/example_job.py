"""The one task every example runs: it works for a moment and records, in Redis, that it started and
that it finished, with the worker's pid and EXAMPLE_GENERATION (so a test can tell which worker ran
it, and whether that worker came from before or after a reload). A job with hold=True waits until
the key `example:<name>:release` exists: a job that is certainly still running when a test looks.

Keys, all under `example:<name>:` (name = the library):
  started    hash  job id -> times started
  done       hash  job id -> times finished
  pid        hash  job id -> pid of the worker that last started it
  generation hash  job id -> EXAMPLE_GENERATION of that worker
  release    string, set by the test to let held jobs finish
"""
import asyncio
import os
import time

import redis
import redis.asyncio

HOLD_LIMIT_SECONDS = 120  # a held job never outlives a forgotten test


def keys(name: str) -> dict:
    base = f"example:{name}:"
    return {k: base + k for k in ("started", "done", "pid", "generation", "release")}


def _start(client, k: dict, job_id: str):
    pipe = client.pipeline()
    pipe.hincrby(k["started"], job_id, 1)
    pipe.hset(k["pid"], job_id, os.getpid())
    pipe.hset(k["generation"], job_id, os.environ.get("EXAMPLE_GENERATION", ""))
    return pipe.execute()


def work(name: str, job_id: str, seconds: float, hold: bool = False) -> None:
    """For synchronous workers (Dramatiq, Celery, RQ)."""
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    k = keys(name)
    _start(client, k, job_id)
    time.sleep(seconds)
    deadline = time.monotonic() + HOLD_LIMIT_SECONDS
    while hold and not client.exists(k["release"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    client.hincrby(k["done"], job_id, 1)
    client.close()


async def work_async(name: str, job_id: str, seconds: float, hold: bool = False) -> None:
    """For asyncio workers (arq, TaskIQ, BullMQ)."""
    client = redis.asyncio.Redis.from_url(os.environ["REDIS_URL"])
    k = keys(name)
    await _start(client, k, job_id)
    await asyncio.sleep(seconds)
    deadline = time.monotonic() + HOLD_LIMIT_SECONDS
    while hold and not await client.exists(k["release"]) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await client.hincrby(k["done"], job_id, 1)
    await client.aclose()
