"""Dramatiq example for poolvisor: one actor, `example`, on the Redis queue "system".

Run by poolvisor as `.venv/bin/dramatiq app --processes 1 --threads 1` (see pools.toml), with
dramatiq_queue_prefetch=1 in the environment: one worker process running one message at a time, so
that the pool's replicas are its parallelism. The `dramatiq` command is a main process that forks the
worker process; poolvisor's stop signal (SIGINT) reaches both (it signals the process group), the
worker ignores SIGINT and the main process turns it into one SIGTERM for the worker, which finishes
its current message and takes no other.
"""
import os
import sys
from pathlib import Path

import dramatiq
from dramatiq.brokers.redis import RedisBroker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "common"))
import example_job  # noqa: E402
import poolvisor_notify  # noqa: E402

QUEUE = "system"


class PoolvisorNotify(dramatiq.Middleware):
    """READY=1 once the worker's consumers and its thread run; BUSY=1 / BUSY=0 around each message."""

    def after_worker_boot(self, broker, worker):
        poolvisor_notify.ready()

    def before_process_message(self, broker, message):
        poolvisor_notify.busy()

    def after_process_message(self, broker, message, *, result=None, exception=None):
        poolvisor_notify.idle()

    def after_skip_message(self, broker, message):
        poolvisor_notify.idle()


# Keys live under the namespace "dramatiq": dramatiq:system (list of ready message ids),
# dramatiq:system.msgs (hash id -> message), dramatiq:system.DQ (+ .msgs) for delayed messages.
broker = RedisBroker(url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
broker.add_middleware(PoolvisorNotify())
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE)
def example(job_id: str, seconds: float = 0.5, hold: bool = False) -> None:
    example_job.work("dramatiq", job_id, seconds, hold=hold)
