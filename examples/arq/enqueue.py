"""Enqueue example jobs with arq's own producer API (ArqRedis.enqueue_job).

usage: enqueue.py --count N [--seconds S] [--delay SECONDS] [--hold] [--id-prefix P]
Job ids are <P>-1 … <P>-N. --delay defers them with arq's _defer_by. Reads REDIS_URL.
arq refuses an id that is still queued or whose result is still kept (keep_result, 1 h by
default): such jobs are reported and the exit status is 1.
"""
import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "common"))
import enqueue_cli  # noqa: E402

from arq.connections import RedisSettings, create_pool

from app import QUEUE_NAME


async def main(args) -> int:
    settings = RedisSettings.from_dsn(os.environ["REDIS_URL"])
    settings.conn_retries = 0
    try:
        redis = await create_pool(settings, default_queue_name=QUEUE_NAME)
    except Exception as e:  # noqa: BLE001
        print(f"enqueue.py: cannot connect to Redis: {e}", file=sys.stderr)
        return 2
    enqueued, refused = 0, []
    try:
        for i in range(1, args.count + 1):
            job_id = f"{args.id_prefix}-{i}"
            job = await redis.enqueue_job(
                "job", job_id, args.seconds, args.hold,
                _job_id=job_id, _queue_name=QUEUE_NAME, _defer_by=args.delay or None,
            )
            if job is None:
                refused.append(job_id)
            else:
                enqueued += 1
    finally:
        await redis.aclose()
    when = f", deferred by {args.delay:g} s" if args.delay else ""
    print(f"enqueued {enqueued} job(s) to {QUEUE_NAME}{when}")
    if refused:
        print(f"enqueue.py: {len(refused)} id(s) already queued or with a kept result, not enqueued "
              f"({refused[0]}…); use another --id-prefix", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(enqueue_cli.arguments(__doc__))))
