"""Enqueue example jobs on Dramatiq's queue "system" with Dramatiq's own producer API (actor.send).

    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python enqueue.py --count 20 [--seconds 0.5]
        [--delay SECONDS] [--hold] [--id-prefix job]

--delay sends with Dramatiq's delay= (milliseconds): the messages go to dramatiq:system.DQ and a
running worker moves each to dramatiq:system when it is due.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "common"))
import enqueue_cli  # noqa: E402

import redis


def main() -> int:
    args = enqueue_cli.arguments(__doc__)

    from app import QUEUE, example  # the broker is made from REDIS_URL

    delay_ms = None if args.delay is None else int(args.delay * 1000)
    try:
        for i in range(1, args.count + 1):
            example.send_with_options(
                args=(f"{args.id_prefix}-{i}", args.seconds, args.hold), delay=delay_ms
            )
    except redis.RedisError as e:
        print(f"enqueue.py: cannot enqueue on Redis: {e}", file=sys.stderr)
        return 1
    where = f"dramatiq queue '{QUEUE}'"
    if delay_ms is not None:
        where += f", delayed by {args.delay:g} s ({QUEUE}.DQ)"
    print(f"enqueued {args.count} jobs to {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
