"""TaskIQ example for poolvisor: one task, `example`, on taskiq-redis's RedisStreamBroker, queue "system".

Run by poolvisor as `.venv/bin/taskiq worker app:broker --workers 1 --max-async-tasks 1` (see
pools.toml): one worker process (the `taskiq worker` main process forks it) running one task at a
time, so that the pool's replicas are its parallelism.

In Redis the queue is the stream named exactly "system" (no prefix) with the consumer group "taskiq":
XINFO GROUPS system shows `lag` (entries not yet delivered to any worker) and `pending` (delivered,
not yet acknowledged: in flight). Jobs delayed with enqueue.py --delay are not in the stream: they wait
in the schedule source (keys schedule:*) until `taskiq scheduler app:scheduler` sends them.
"""
import asyncio
import os
import signal
import sys
from pathlib import Path

from taskiq import TaskiqEvents, TaskiqMiddleware, TaskiqScheduler
from taskiq_redis import ListRedisScheduleSource, RedisStreamBroker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "common"))
import example_job  # noqa: E402
import poolvisor_notify  # noqa: E402

QUEUE = "system"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


class PoolvisorNotify(TaskiqMiddleware):
    """BUSY=1 before a task runs, BUSY=0 once it has finished (failed or not)."""

    def pre_execute(self, message):
        poolvisor_notify.busy()
        return message

    def post_execute(self, message, result):
        poolvisor_notify.idle()


broker = RedisStreamBroker(
    url=REDIS_URL,
    queue_name=QUEUE,  # the stream's key, exactly
    consumer_group_name="taskiq",  # the default, written out: poolvisor reads this group's lag
    # "0", not the default "$": a group made by the first worker then also delivers entries that were
    # added before any worker or producer created it (with "$" those are skipped for ever).
    consumer_id="0",
    # One entry per XREADGROUP / XAUTOCLAIM (defaults 100): otherwise one worker takes up to 100
    # entries at once into its pending list while running one, the group's lag drops to 0 and the
    # autoscaler sees nothing to scale on.
    xread_count=1,
    unacknowledged_batch_size=1,
).with_middlewares(PoolvisorNotify())

# For enqueue.py --delay: TaskIQ has no delayed messages in the stream; a scheduled task waits in this
# source (lists schedule:time:<minute>, strings schedule:data:<id>) until a `taskiq scheduler` sends it.
schedule_source = ListRedisScheduleSource(REDIS_URL)
scheduler = TaskiqScheduler(broker, sources=[schedule_source])


@broker.on_event(TaskiqEvents.WORKER_STARTUP)
async def worker_ready(state) -> None:
    # taskiq's worker process sets its stop event from a plain signal.signal() handler, which does not
    # wake the event loop: an idle worker sees the stop only when its blocking XREADGROUP (2 s) returns,
    # in the same loop turn as that reply, and the cancellation of the read is then lost: the worker
    # keeps polling and never exits (until a new job arrives, which it runs, or SIGKILL). Re-installing
    # the same handlers through the loop (add_signal_handler wakes it at once) makes it stop promptly.
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        handler = signal.getsignal(signum)
        if callable(handler):
            loop.add_signal_handler(signum, handler, signum, None)
    poolvisor_notify.ready()


@broker.task(task_name="example")
async def example(job_id: str, seconds: float = 0.5, hold: bool = False) -> None:
    await example_job.work_async("taskiq", job_id, seconds, hold=hold)
