"""The command line every example's enqueue.py takes, and its checks:

    REDIS_URL=redis://… enqueue.py --count N [--seconds S] [--delay SECONDS] [--hold] [--id-prefix P]

Job ids are <P>-1 … <P>-N. --seconds is how long each job works, --delay defers it the library's own
way, --hold makes it wait for the key example:<library>:release."""
import argparse
import os
import sys


def arguments(doc: str) -> argparse.Namespace:
    """Parsed arguments (delay None when not given); a usage error for bad values, exit 2 without REDIS_URL."""
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=0.5, help="how long each job works")
    parser.add_argument("--delay", type=float, default=None, help="seconds to defer each job by")
    parser.add_argument("--hold", action="store_true", help="jobs wait for example:<library>:release")
    parser.add_argument("--id-prefix", default="job")
    args = parser.parse_args()
    if args.count < 1:
        parser.error("--count must be at least 1")
    if args.seconds < 0 or (args.delay is not None and args.delay < 0):
        parser.error("--seconds and --delay must not be negative")
    if not os.environ.get("REDIS_URL"):
        print("enqueue.py: REDIS_URL is not set (see app.env)", file=sys.stderr)
        sys.exit(2)
    return args
