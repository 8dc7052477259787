"""Enqueue example jobs on TaskIQ's queue "system" (a Redis stream) with TaskIQ's own API (task.kiq).

    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python enqueue.py --count 20 [--seconds 0.5]
        [--delay SECONDS] [--hold] [--id-prefix job]

TaskIQ has no delay on kiq(). --delay uses task.schedule_by_time() on app.py's ListRedisScheduleSource:
the jobs wait in Redis (schedule:*), outside the stream, and only a running `taskiq scheduler
app:scheduler` puts them on the stream when they are due (it checks once a minute by default).
"""
import asyncio
import datetime
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "common"))
import enqueue_cli  # noqa: E402

import redis


async def enqueue(args) -> str:
    from app import QUEUE, broker, example, schedule_source

    await broker.startup()  # the client side: also creates the stream and its consumer group
    try:
        if args.delay is None:
            for i in range(1, args.count + 1):
                await example.kiq(f"{args.id_prefix}-{i}", args.seconds, args.hold)
            return f"taskiq queue '{QUEUE}' (stream '{QUEUE}', consumer group '{broker.consumer_group_name}')"
        await schedule_source.startup()
        at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=args.delay)
        for i in range(1, args.count + 1):
            await example.schedule_by_time(schedule_source, at, f"{args.id_prefix}-{i}", args.seconds, args.hold)
        await schedule_source.shutdown()
        return (
            f"taskiq queue '{QUEUE}', scheduled for {at:%H:%M:%S} UTC in the schedule source "
            "(not in the stream; `taskiq scheduler app:scheduler` must run to send them)"
        )
    finally:
        await broker.shutdown()


def main() -> int:
    args = enqueue_cli.arguments(__doc__)
    try:
        where = asyncio.run(enqueue(args))
    except (redis.RedisError, OSError) as e:
        print(f"enqueue.py: cannot enqueue on Redis: {e}", file=sys.stderr)
        return 1
    print(f"enqueued {args.count} jobs to {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
