"""arq example for poolvisor: one task, `job`, run by `arq app.WorkerSettings`.

The worker runs ONE job at a time (max_jobs = 1), so a pool's replicas are its parallelism. It
sends READY=1 from on_startup (connected to Redis, about to poll the queue), BUSY=1 from
on_job_start and BUSY=0 from after_job_end (once the job's result is recorded).

On SIGTERM or SIGINT (arq treats them alike) with job_completion_wait set, arq stops taking jobs,
lets the running one finish for up to job_completion_wait seconds, then cancels it; a cancelled job
stays in the queue and runs again (retry_jobs). Keep job_completion_wait below the pool's
drain_seconds so arq cancels cleanly before poolvisor's SIGKILL.
"""
import os
import sys
from pathlib import Path

from arq.connections import RedisSettings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "common"))
import example_job  # noqa: E402
import poolvisor_notify  # noqa: E402

# arq's queue name is the whole Redis key: a sorted set of job ids scored by run-at time (ms).
# poolvisor's queue_name must be exactly this.
QUEUE_NAME = "arq:queue:system"


async def job(ctx, job_id: str, seconds: float = 0.5, hold: bool = False) -> None:
    await example_job.work_async("arq", job_id, seconds, hold)


async def startup(ctx) -> None:
    poolvisor_notify.ready()


async def job_start(ctx) -> None:
    poolvisor_notify.busy()


async def job_end(ctx) -> None:
    poolvisor_notify.idle()


class WorkerSettings:
    functions = [job]
    queue_name = QUEUE_NAME
    redis_settings = RedisSettings.from_dsn(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    on_startup = startup
    on_job_start = job_start
    after_job_end = job_end
    # One job at a time per process: replicas = parallelism.
    max_jobs = 1
    # Seconds to let the running job finish after SIGTERM/SIGINT before cancelling it (0, the
    # default, cancels at once). Below drain_seconds (30) so arq cancels, and the job goes back to
    # the queue for another worker at once, before poolvisor's SIGKILL. NB: arq 0.28 calls this
    # `job_completion_wait`; its docs' name `wait_for_job_completion_on_signal_second` is NOT a
    # Worker argument and is silently ignored in WorkerSettings.
    job_completion_wait = 25
    # A job running longer fails (TimeoutError, not retried). Also sets how long a killed worker's
    # claim (arq:in-progress:<id>) blocks a re-run: job_timeout + 10 s.
    job_timeout = 300
