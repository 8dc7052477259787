"""Enqueue example jobs on Dramatiq's queue "system" with Dramatiq's own producer API (actor.send).

    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python enqueue.py --count 20 [--seconds 0.5]
        [--delay SECONDS] [--hold] [--id-prefix job]

--delay sends with Dramatiq's delay= (milliseconds): the messages go to dramatiq:system.DQ and a
running worker moves each to dramatiq:system when it is due.
"""
import argparse
import os
import sys

import redis


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--delay", type=float, default=None, help="seconds to delay each job by")
    parser.add_argument("--hold", action="store_true", help="jobs wait for example:dramatiq:release")
    parser.add_argument("--id-prefix", default="job")
    args = parser.parse_args()
    if args.count < 1:
        parser.error("--count must be at least 1")
    if args.delay is not None and args.delay < 0:
        parser.error("--delay must not be negative")
    if "REDIS_URL" not in os.environ:
        print("enqueue.py: REDIS_URL is not set (see app.env)", file=sys.stderr)
        return 2

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
