"""Enqueue example jobs with Celery's own producer API (apply_async), to queue "system".

    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python enqueue.py --count 20 [--seconds 0.5] \
        [--delay SECONDS] [--hold] [--id-prefix job]

Job ids (Celery task ids) are <prefix>-1 … <prefix>-N. --delay uses Celery's countdown: the message
goes onto the list at once, and the worker that takes it keeps it in memory until it is due.
"""
import argparse
import os
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description="Enqueue example Celery tasks on queue 'system'.")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--delay", type=float, default=None, help="countdown in seconds")
    parser.add_argument("--hold", action="store_true")
    parser.add_argument("--id-prefix", default="job")
    args = parser.parse_args()
    if "REDIS_URL" not in os.environ:
        print("enqueue.py: REDIS_URL is not set", file=sys.stderr)
        return 2
    if args.count < 0:
        print("enqueue.py: --count must be 0 or more", file=sys.stderr)
        return 2

    from app import QUEUE, app, work

    retry_policy = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
    try:
        with app.producer_or_acquire() as producer:
            for i in range(1, args.count + 1):
                work.apply_async(
                    args=(f"{args.id_prefix}-{i}", args.seconds, args.hold),
                    task_id=f"{args.id_prefix}-{i}",
                    queue=QUEUE,
                    countdown=args.delay,
                    producer=producer,
                    retry_policy=retry_policy,
                )
    except Exception as error:  # the broker is down, the URL is wrong, …
        print(f"enqueue.py: cannot enqueue to Celery queue '{QUEUE}': {error}", file=sys.stderr)
        return 1
    delayed = f", due in {args.delay:g} s" if args.delay else ""
    print(f"enqueued {args.count} Celery tasks to queue '{QUEUE}'{delayed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
