"""Celery example for poolvisor: one task, queue "system", Redis broker (REDIS_URL).

Run as poolvisor runs it (see pools.toml):
    .venv/bin/celery -A app worker -Q system --pool prefork --concurrency 1 --prefetch-multiplier 1 \
        --without-mingle --without-gossip --without-heartbeat

One task at a time per worker process, so that replicas = parallelism:
- concurrency 1: one pool process;
- task_acks_late + prefetch multiplier 1: the broker's prefetch limit is 1 unacknowledged message, and
  the running task stays unacknowledged until it ends, so the worker never reserves a second message
  while one runs. (With early acks, prefetch 1 still lets the worker reserve one more message
  while a task runs: the running one is already acknowledged.)

Notifications to poolvisor (examples/common/poolvisor_notify.py):
- READY=1 from the worker_ready signal: the consumer is connected and consuming;
- BUSY=1 / BUSY=0 from task_prerun / task_postrun (sent from the pool process that runs the task; it
  is in the worker's process group, so poolvisor accepts it).

Stopping: see pools.toml (stop_signal). Tasks with a countdown or an eta are taken off the list at
once and held by the worker until they are due (Celery's Redis transport has no delayed queue).
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "common"))

from celery import Celery, signals  # noqa: E402

import example_job  # noqa: E402
import poolvisor_notify  # noqa: E402

QUEUE = "system"

# Replicas on one host would all be "celery@<host>" (remote control and inspect replies collide): name
# each after its poolvisor replica. The worker's --hostname reads CELERY_WORKER_HOSTNAME, and the
# `celery` command imports this module (-A app) before it parses the worker's options.
if "POOLVISOR_REPLICA" in os.environ:
    os.environ.setdefault("CELERY_WORKER_HOSTNAME", f"{QUEUE}-{os.environ['POOLVISOR_REPLICA']}@%h")

app = Celery("app", broker=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_default_queue=QUEUE,
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    worker_concurrency=1,
    task_ignore_result=True,  # no result backend: the example records its own results in Redis
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    # A task whose worker died (SIGKILL at the drain deadline) stays in the Redis hash "unacked" and is
    # put back on the list by a running worker once it is this old: at-least-once, an hour later.
    broker_transport_options={"visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "3600"))},
    # Soft shutdown (Celery 5.5+) applies to SIGQUIT, which poolvisor would send to the whole process
    # group, killing the pool process at once: not used here (see pools.toml).
    worker_soft_shutdown_timeout=float(os.environ.get("CELERY_SOFT_SHUTDOWN_TIMEOUT", "0")),
)


@app.task(name="example.work")
def work(job_id: str, seconds: float = 0.5, hold: bool = False) -> None:
    example_job.work("celery", job_id, seconds, hold)


@signals.worker_ready.connect
def _ready(**_):
    poolvisor_notify.ready()


@signals.task_prerun.connect
def _busy(**_):
    poolvisor_notify.busy()


@signals.task_postrun.connect
def _idle(**_):
    poolvisor_notify.idle()
