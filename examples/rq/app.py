"""RQ example for poolvisor: one job function, queue "system", Redis at REDIS_URL.

Run as poolvisor runs it (see pools.toml):
    .venv/bin/rq worker --worker-class app.NotifyingWorker --with-scheduler system

The rq command takes its Redis connection from REDIS_URL in the environment (no --url needed) and
puts the current directory on the import path (--path defaults to "."), so `app` imports as is.

One job at a time per worker process, so that replicas = parallelism: that is RQ's only mode. The
worker takes one job off the list, forks a work horse for it, waits for the horse, and only then
takes the next one; there is no prefetch or concurrency setting to turn down.

Notifications to poolvisor (examples/common/poolvisor_notify.py), from a worker class of our own
(rq worker --worker-class), because RQ has no start-up or job-start hooks:
- READY=1 when the worker first waits for a job (registered, signal handlers installed, scheduler
  started);
- BUSY=1 / BUSY=0 around execute_job, in the main worker process (the horse is in a process group of
  its own: RQ calls os.setpgrp() in it, and poolvisor accepts notifications from the worker's group).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "common"))

from rq import Worker  # noqa: E402

import example_job  # noqa: E402
import poolvisor_notify  # noqa: E402

QUEUE = "system"


def work(job_id: str, seconds: float = 0.5, hold: bool = False) -> None:
    example_job.work("rq", job_id, seconds, hold)


class NotifyingWorker(Worker):
    _told_ready = False

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        if not self._told_ready:
            self._told_ready = True
            poolvisor_notify.ready()
        return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)

    def execute_job(self, job, queue):
        poolvisor_notify.busy()
        try:
            return super().execute_job(job, queue)
        finally:
            poolvisor_notify.idle()
