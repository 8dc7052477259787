"""Enqueue example jobs with BullMQ's own producer API (bullmq.Queue.add).

usage: enqueue.py --count N [--seconds S] [--delay SECONDS] [--hold] [--id-prefix P]
Job ids (BullMQ's jobId) are <P>-1 … <P>-N. --delay adds them with BullMQ's `delay` option (they wait
in bull:system:delayed). Reads REDIS_URL.
BullMQ silently ignores a job whose id already exists (and keeps completed jobs by default): such
ids are reported and the exit status is 1.
"""
import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "common"))
import enqueue_cli  # noqa: E402

import redis.asyncio
from bullmq import Queue

from app import QUEUE_NAME


async def main(args) -> int:
    url = os.environ["REDIS_URL"]
    # Our own client, without the long reconnect retries BullMQ's default connection has, so an
    # unreachable Redis is a quick, clear error.
    client = redis.asyncio.Redis.from_url(url, decode_responses=True, socket_connect_timeout=5)
    try:
        await client.ping()
    except Exception as e:  # noqa: BLE001
        print(f"enqueue.py: cannot connect to Redis: {e}", file=sys.stderr)
        return 2
    queue = Queue(QUEUE_NAME, {"connection": client})
    enqueued, refused = 0, []
    try:
        for i in range(1, args.count + 1):
            job_id = f"{args.id_prefix}-{i}"
            if await queue.getJobState(job_id) != "unknown":
                refused.append(job_id)
                continue
            opts = {"jobId": job_id}
            if args.delay:
                opts["delay"] = int(args.delay * 1000)
            await queue.add("job", {"job_id": job_id, "seconds": args.seconds, "hold": args.hold}, opts)
            enqueued += 1
    finally:
        await queue.close()
    when = f", delayed by {args.delay:g} s" if args.delay else ""
    print(f"enqueued {enqueued} job(s) to BullMQ queue {QUEUE_NAME} (bull:{QUEUE_NAME}:*){when}")
    if refused:
        print(f"enqueue.py: {len(refused)} id(s) already exist in the queue, not enqueued "
              f"({refused[0]}…); use another --id-prefix", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(enqueue_cli.arguments(__doc__))))
