"""Runs one bullmq.Worker on queue "system" (BullMQ's Python port has no worker CLI).

One job at a time (concurrency 1). READY=1 once Redis answers and the worker loop starts; BUSY=1 on
the worker's "active" event, BUSY=0 on "completed" / "failed".

SIGTERM or SIGINT: Worker.close(), BullMQ's graceful close: it stops fetching jobs, waits for the
running job to finish and be recorded, closes its connections, and the process exits 0. A second
signal forces it: Worker.close(force=True) cancels the job, which stays in bull:system:active until
its lock lapses and a live worker's stalled check moves it back to wait (it runs again).
"""
import asyncio
import logging
import signal
import sys

from bullmq import Worker

import app

import poolvisor_notify  # noqa: E402  (examples/common: app puts it on sys.path)

log = logging.getLogger("worker")


async def main() -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals_seen = []

    def on_signal(sig: signal.Signals) -> None:
        signals_seen.append(sig)
        if len(signals_seen) == 1:
            log.info("%s: closing: finishing the current job, taking no more", sig.name)
            stop.set()
        else:
            log.warning("%s again: force-closing, the current job is cancelled", sig.name)
            loop.create_task(worker.close(force=True))

    worker = Worker(app.QUEUE_NAME, app.process, {**app.worker_options(), "autorun": False})
    worker.on("active", lambda job, prev: poolvisor_notify.busy())
    worker.on("completed", lambda job, result: poolvisor_notify.idle())
    worker.on("failed", lambda job, err: (log.warning("job %s failed: %r", job.id, err), poolvisor_notify.idle()))
    worker.on("error", lambda err, *rest: log.error("worker error: %r", err))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)

    await worker.client.ping()  # connected (the client retries while Redis is unreachable)
    run = asyncio.create_task(worker.run())
    poolvisor_notify.ready()
    log.info("worker %s taking jobs from bull:%s (concurrency 1)", worker.id, app.QUEUE_NAME)

    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({run, stopped}, return_when=asyncio.FIRST_COMPLETED)
    try:
        if not run.done():
            await worker.close()
            await run
        else:
            run.result()  # the worker loop ended by itself: surface its error
            await worker.close()
    except asyncio.CancelledError:
        if len(signals_seen) < 2:
            raise
        log.warning("force-closed: the cancelled job stays in bull:%s:active until its lock lapses; "
                    "a live worker's stalled check then puts it back in wait", app.QUEUE_NAME)
        return 1
    log.info("closed")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    sys.exit(asyncio.run(main()))
