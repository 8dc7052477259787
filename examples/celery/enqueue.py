"""Enqueue example jobs with Celery's own producer API (apply_async), to queue "system".

    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python enqueue.py --count 20 [--seconds 0.5] \
        [--delay SECONDS] [--hold] [--id-prefix job]

Job ids (Celery task ids) are <prefix>-1 … <prefix>-N. --delay uses Celery's countdown: the message
goes onto the list at once, and the worker that takes it keeps it in memory until it is due.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "common"))
import enqueue_cli  # noqa: E402


def main() -> int:
    args = enqueue_cli.arguments(__doc__)

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
