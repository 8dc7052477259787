"""Enqueue example jobs with RQ's own producer API (Queue.enqueue / Queue.enqueue_in), to queue "system".

    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python enqueue.py --count 20 [--seconds 0.5] \
        [--delay SECONDS] [--hold] [--id-prefix job]

Job ids are <prefix>-1 … <prefix>-N. --delay uses enqueue_in: the job waits in the sorted set
rq:scheduled:system until a worker started with --with-scheduler moves it to rq:queue:system.
"""
import os
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "common"))
import enqueue_cli  # noqa: E402


def main() -> int:
    args = enqueue_cli.arguments(__doc__)
    url = os.environ["REDIS_URL"]

    from redis import Redis
    from rq import Queue

    from app import QUEUE, work

    try:
        queue = Queue(QUEUE, connection=Redis.from_url(url))
        for i in range(1, args.count + 1):
            job_id = f"{args.id_prefix}-{i}"
            job_args = (job_id, args.seconds, args.hold)
            if args.delay:
                queue.enqueue_in(timedelta(seconds=args.delay), work, *job_args, job_id=job_id)
            else:
                queue.enqueue(work, *job_args, job_id=job_id)
    except Exception as error:  # Redis is down, the URL is wrong, …
        print(f"enqueue.py: cannot enqueue to RQ queue '{QUEUE}': {error}", file=sys.stderr)
        return 1
    delayed = f", scheduled in {args.delay:g} s" if args.delay else ""
    print(f"enqueued {args.count} RQ jobs to queue '{QUEUE}'{delayed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
