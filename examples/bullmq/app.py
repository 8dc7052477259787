"""BullMQ (Python port) example for poolvisor: the processor and the worker's settings.

BullMQ's Python package has no worker CLI: worker.py runs a bullmq.Worker with what is here.
The queue is "system" under BullMQ's default prefix "bull": its keys are bull:system:wait (list),
bull:system:prioritized, bull:system:delayed (sorted sets), bull:system:active (list), …
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "common"))
import example_job  # noqa: E402

QUEUE_NAME = "system"  # what the application passes to Queue() and Worker(); poolvisor's queue_name


def redis_url() -> str:
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def worker_options() -> dict:
    return {
        "connection": redis_url(),
        # One job at a time per process: replicas = parallelism. (BullMQ's default is also 1.)
        "concurrency": 1,
        # BullMQ's defaults, written out because they decide what happens to a job whose worker is
        # killed: its lock (bull:system:<id>:lock) lasts lockDuration ms and is renewed while the
        # job runs; once it has lapsed, a live worker's stalled-job check (every stalledInterval
        # ms) puts the job back in wait; a job that stalls more than maxStalledCount times fails.
        "lockDuration": 30000,
        "stalledInterval": 30000,
        "maxStalledCount": 1,
    }


async def process(job, token):
    """The one task: job.data = {"job_id": ..., "seconds": ..., "hold": ...}."""
    data = job.data
    await example_job.work_async("bullmq", data["job_id"], float(data.get("seconds", 0.5)), bool(data.get("hold")))
