#!/usr/bin/env python3
"""scripts/bench.py: the driver of the poolvisor benchmark. Run it through scripts/bench, which builds
poolvisor, the C worker and the C floor, and passes their paths here. Python 3 standard library only.

For each N and each contender (poolvisor, floor, supervisord), one "cell" is measured:

  start    supervisor launched -> N distinct worker pids reported (the latest worker's own
           CLOCK_MONOTONIC stamp minus the launch time)
  idle     the supervising processes' CPU time and context switches over a quiet window
  RSS      VmRSS of the supervisor, plus the private memory of its helpers (poolvisor's spawn server),
           with N workers up (right after the idle window)
  restart  SIGKILL a random worker whose replica was never killed before; latency = the replacement's
           CLOCK_MONOTONIC stamp minus the kill time; min(20, N) times, 50-100 ms apart
  stop     SIGTERM to the supervisor -> it and every worker have exited (a zombie counts as exited)

and, for poolvisor only, through its control socket (after restart, before stop):

  reload   `poolvisor reload` of the unchanged pools file: launch of the client -> its exit (status 0);
           no worker may be restarted by it (same worker pids, no new report)
  status   round trip of a status request on the control socket (connect, send, read the answer),
           median of 20; and `poolvisor status`, launch of the client -> its exit, median of 20

Cells alternate between contenders within a round (the order rotates from round to round); the report
gives the median across rounds. Everything the harness starts is tracked and killed on any failure.

After the cells, in every mode (N-independent):

  reload memory  poolvisor with a 50-pool file; R raw reload requests on the control socket, each sent when
                 the previous one is answered; VmRSS after the first and after the last (R = 10,000, or 200
                 with --quick, --reloads R)
  probe cost     poolvisor with N workers whose readiness probe runs every period (N = 1000 every 10 s, or 100
                 every 1 s with --quick: 100 probes/s either way), once per kind (http_get and tcp_socket to one
                 target server, scripts/bench-probe-target.py; exec of /bin/true) and once without a probe (the
                 baseline, whose CPU must be ~0): once status says all N are ready, over a window of whole periods
                 (30 s; 5 s with --quick), the probes per second, poolvisor's own CPU (supervisor and spawn server,
                 not the workers) and CPU per probe, the target's CPU; RSS after. Not in --large; --no-probes skips
                 it, --probes-only runs nothing else (a full run of it rewrites only its own block of
                 BENCHMARKS.md, between the bench:probes markers, and `probe_cost` in BENCHMARKS.json)
  metrics cost   poolvisor with N workers (1000, or 100 with --quick; --metrics-n), once without `metrics_listen` and
                 once with it on a free loopback port: once status says all N are ready, the idle CPU and context
                 switches over an idle window (--idle's) with nobody scraping, and RSS; with metrics on, then the first
                 GET /metrics (it makes the registry's series), 20 in a row (p50, p95, max round trip, poolvisor's CPU,
                 the body's bytes), a few 1.2 s apart (each reads every worker's /proc afresh), RSS after, the last
                 body parsed with prometheus_client (if some python3 can import it; a parse error fails the block),
                 and the idle window again. Not in --large; --no-metrics skips it, --metrics-only runs nothing else (a
                 full run of it rewrites only its own block of BENCHMARKS.md, between the bench:metrics markers after
                 the probes block, and `metrics_cost` in BENCHMARKS.json)
  upgrade        poolvisor with N workers (1000, or 100 with --quick; --upgrade-n), once status says all N are ready:
                 `poolvisor upgrade --binary OTHER` several times in a row (5, or 2 with --quick; --upgrades), OTHER
                 alternating between two copies of the binary: the client's launch -> exit (status 0), the handover ->
                 taken over time and the state's size the daemon logs (--log-level notice), the same worker pids
                 after (no new report, status' `upgrades` counting them, /proc/PID/exe on OTHER), VmRSS before and
                 after each. Not in --large; --no-upgrade skips it, --upgrade-only runs nothing else (a full run of it
                 rewrites only its own block of BENCHMARKS.md, between the bench:upgrade markers after the metrics
                 block, and `upgrade` in BENCHMARKS.json)

--large replaces the cells with N = 10,000 (--large-n), poolvisor and the floor only, under RLIMIT_NOFILE
20,000 (--nofile): start, restart, RSS and open fds before and after status, status settled (raw), `status
--json` (CLI), a reload after status, stop; then poolvisor launched again with status requests sent from
the launch on until all N workers are up (the start wave), and once more beside 1,000 crash-looping workers
(BENCH_EXIT=1) for 10 s. A measurement that fails (an error answer, no descriptors left, workers that never
come up) is recorded with its reason and the run goes on. Its report stays under bench-results/.
"""

import argparse
import ctypes
import datetime
import errno
import hashlib
import json
import os
import platform
import random
import re
import resource
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

CONTENDERS = ("poolvisor", "floor", "supervisord")
BEGIN_MARK = "<!-- bench:begin -->"
END_MARK = "<!-- bench:end -->"
CHANGES_HEADING = "## Changes and their effect"
CHANGES_PLACEHOLDER = ("_Hand-written, kept by the generator: for each change that moved a number above, "
                       "what changed, the numbers before and after, and the commit._")
DRAIN_SECONDS = 10
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
RCVBUF_BYTES = 8 << 20
PR_SET_CHILD_SUBREAPER = 36


class HarnessError(Exception):
    """A measurement could not be completed (timeout, a contender died, a process leaked)."""


class Interrupted(Exception):
    pass


def log(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


def now_ns():
    return time.monotonic_ns()   # CLOCK_MONOTONIC on Linux, the clock the worker stamps with


# --------------------------------------------------------------------------------------------------
# /proc helpers

def read_text(path):
    try:
        with open(path, "r") as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def proc_stat(pid):
    """(state, ppid, pgrp, utime_ticks, stime_ticks) or None when the process is gone."""
    s = read_text(f"/proc/{pid}/stat")
    if s is None:
        return None
    try:
        rest = s[s.rindex(")") + 2:].split()
        return rest[0], int(rest[1]), int(rest[2]), int(rest[11]), int(rest[12])
    except (ValueError, IndexError):
        return None


def exited(pid):
    st = proc_stat(pid)
    return st is None or st[0] in ("Z", "X")


def all_pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def children_map():
    kids = {}
    for pid in all_pids():
        st = proc_stat(pid)
        if st is not None:
            kids.setdefault(st[1], []).append(pid)
    return kids


def descendants(pid, kids=None):
    kids = children_map() if kids is None else kids
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, ()):
            out.append(c)
            todo.append(c)
    return out


def exe_of(pid):
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def status_fields(pid, task=None):
    path = f"/proc/{pid}/task/{task}/status" if task else f"/proc/{pid}/status"
    s = read_text(path)
    out = {}
    if s:
        for line in s.splitlines():
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def kib(field):
    # "1234 kB" -> 1234
    try:
        return int(field.split()[0])
    except (AttributeError, IndexError, ValueError):
        return 0


def tasks_of(pid):
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def cpu_sample(pids):
    """Per process: stat ticks (utime+stime, whole thread group) and, per thread, the scheduler's
    on-CPU nanoseconds and the context switches."""
    sample = {}
    for pid in pids:
        st = proc_stat(pid)
        if st is None:
            continue
        threads = {}
        for tid in tasks_of(pid):
            ss = read_text(f"/proc/{pid}/task/{tid}/schedstat")
            fields = status_fields(pid, tid)
            if ss is None or not fields:
                continue
            try:
                run_ns = int(ss.split()[0])
            except (ValueError, IndexError):
                run_ns = 0
            ctx = int(fields.get("voluntary_ctxt_switches", "0")) + int(fields.get("nonvoluntary_ctxt_switches", "0"))
            threads[tid] = (run_ns, ctx)
        sample[pid] = {"ticks": st[3] + st[4], "threads": threads}
    return sample


def system_busy_ticks():
    """(busy, total) jiffies over all CPUs from /proc/stat."""
    f = [int(x) for x in (read_text("/proc/stat") or "cpu 0 0 0 0").splitlines()[0].split()[1:]]
    idle = f[3] + (f[4] if len(f) > 4 else 0)
    total = sum(f[:8])
    return total - idle, total


def other_busy_processes(exclude_pid, seconds=1.0):
    """Processes outside the harness that used more than 5 % of a CPU over `seconds`: a benchmark on a
    busy machine measures the other load as much as the contenders."""
    mine = {exclude_pid} | set(descendants(exclude_pid))

    def snap():
        out = {}
        for pid in all_pids():
            st = proc_stat(pid)
            if st is not None and pid not in mine:
                out[pid] = st[3] + st[4]
        return out

    a = snap()
    time.sleep(seconds)
    b = snap()
    hz = os.sysconf("SC_CLK_TCK")
    busy = []
    for pid, t in b.items():
        share = (t - a.get(pid, t)) / hz / seconds
        if share > 0.05:
            comm = (read_text(f"/proc/{pid}/comm") or "?").strip()
            args = (read_text(f"/proc/{pid}/cmdline") or "").replace("\0", " ").strip()[:120]
            busy.append({"pid": pid, "comm": comm, "cmdline": args, "cpu_share": round(share, 2)})
    return busy


def cpu_delta(a, b):
    ticks = run_ns = ctx = 0
    for pid, sb in b.items():
        sa = a.get(pid, {"ticks": 0, "threads": {}})
        ticks += sb["ticks"] - sa["ticks"]
        for tid, (r, c) in sb["threads"].items():
            ra, ca = sa["threads"].get(tid, (0, 0))
            run_ns += r - ra
            ctx += c - ca
    return ticks, run_ns, ctx


# --------------------------------------------------------------------------------------------------
# Everything the harness starts, so that it can all be killed

class Tracker:
    def __init__(self):
        self.procs = []          # Popen of every supervisor started
        self.worker_exe = None   # the per-run copy of the worker: any process running it is ours

    def add(self, proc):
        self.procs.append(proc)

    def our_workers(self):
        if not self.worker_exe:
            return []
        out = []
        for pid in all_pids():
            exe = exe_of(pid)
            if exe and (exe == self.worker_exe or exe == self.worker_exe + " (deleted)"):
                out.append(pid)
        return out

    def sweep(self, proc=None):
        """SIGKILL the given supervisor (or all of them), their trees and process groups, and every
        process running our worker binary; reap what we can. Returns the pids still alive after."""
        procs = [proc] if proc is not None else list(self.procs)
        kids = children_map()
        victims = set(self.our_workers())
        for p in procs:
            if p.poll() is None:
                victims.add(p.pid)
                victims.update(descendants(p.pid, kids))
                try:
                    os.killpg(p.pid, signal.SIGKILL)   # started with start_new_session: pgid == pid
                except OSError:
                    pass
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + 5
        left = []
        while True:
            reap_orphans(self)
            left = [pid for pid in victims | set(self.our_workers()) if not exited(pid)]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        reap_orphans(self)
        return left


def reap_orphans(tracker):
    """The harness is a child subreaper: workers orphaned by a dead supervisor become its children.
    Reap those (never a supervisor that a Popen still owns)."""
    me = os.getpid()
    owned = {p.pid for p in tracker.procs if p.returncode is None}
    for pid in all_pids():
        st = proc_stat(pid)
        if st and st[1] == me and st[0] == "Z" and pid not in owned:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


# --------------------------------------------------------------------------------------------------
# The report socket

class Receiver:
    """Binds a UNIX datagram socket and reads it on a dedicated thread, continuously, so that a burst of
    1000 workers (whose blocking sends wait on the small max_dgram_qlen) is drained at once. The waiting
    thread is woken only when what it waits for has happened, not on every datagram, so the harness
    costs the machine as little as it can while a contender works."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF_BYTES)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
        self.sock.bind(path)
        self.sock.settimeout(0.5)
        self.events = []       # (pid, worker_ns, recv_ns) in arrival order
        self.first = {}        # pid -> index of its first event
        self.malformed = 0
        self.lock = threading.Lock()
        self.watch = None      # (predicate on the state, threading.Event), checked after each datagram
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="bench-receiver", daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping:
            try:
                data = self.sock.recv(256)
            except socket.timeout:
                continue
            except OSError:
                break
            t = now_ns()
            try:
                pid_s, ns_s = data.split()[:2]
                ev = (int(pid_s), int(ns_s), t)
            except ValueError:
                self.malformed += 1
                continue
            with self.lock:
                if ev[0] not in self.first:
                    self.first[ev[0]] = len(self.events)
                self.events.append(ev)
                w = self.watch
                if w is not None and not w[1].is_set() and w[0]():
                    w[1].set()

    def _wait(self, pred, timeout):
        done = threading.Event()
        with self.lock:
            if pred():
                return True
            self.watch = (pred, done)
        ok = done.wait(timeout)
        with self.lock:
            self.watch = None
            return ok or pred()

    def wait_distinct(self, n, timeout):
        return self._wait(lambda: len(self.first) >= n, timeout)

    def wait_new_after(self, index, exclude, timeout):
        """The first event at or after `index` from a pid not in `exclude`, or None on timeout."""
        def find():
            for ev in self.events[index:]:
                if ev[0] not in exclude:
                    return ev
            return None

        if not self._wait(lambda: find() is not None, timeout):
            return None
        with self.lock:
            return find()

    def count(self):
        with self.lock:
            return len(self.events)

    def distinct(self):
        with self.lock:
            return len(self.first)

    def snapshot(self):
        with self.lock:
            return list(self.events), dict(self.first)

    def close(self):
        self.stopping = True
        self.thread.join(timeout=2)
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


# --------------------------------------------------------------------------------------------------
# Contenders

POOLS_TOML = """\
[supervisor]
name = "bench"
drain_seconds = {drain}

[pools.bench]
command = ["{worker}"]
replicas = {n}
worker_subscribe = "all"
ready_after_seconds = 0

[pools.bench.env]
BENCH_SOCKET = "{sock}"
"""

SUPERVISORD_CONF = """\
[supervisord]
nodaemon=true
logfile={logdir}/{tag}.supervisord.log
logfile_backups=0
loglevel=warn
pidfile={cell}/supervisord.pid
childlogdir={cell}/childlogs
minfds={minfds}
minprocs={minprocs}

[program:bench]
command={worker}
numprocs={n}
process_name=%(program_name)s_%(process_num)d
autostart=true
autorestart=true
startsecs=0
startretries=1000
stopsignal=TERM
stopwaitsecs={drain}
environment=BENCH_SOCKET="{sock}"
stdout_logfile=NONE
stderr_logfile=NONE
"""


def base_env():
    return {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "HOME": os.environ.get("HOME", "/root"),
    }


def prepare(ctx, contender, n, cell, sock, tag):
    """argv and environment that start `contender` with n workers reporting to `sock`."""
    if contender == "poolvisor":
        cfg = os.path.join(cell, "pools.toml")
        with open(cfg, "w") as f:
            f.write(POOLS_TOML.format(drain=DRAIN_SECONDS, worker=ctx.worker, n=n, sock=sock))
        runtime = os.path.join(cell, "runtime")
        os.makedirs(runtime, exist_ok=True)
        env = base_env()
        env["RUNTIME_DIRECTORY"] = runtime
        # the control socket at a known path, for `poolvisor reload` / `poolvisor status` (control_socket())
        return [ctx.poolvisor, "run", "--config", cfg, "--log-level", "warning",
                "--socket", control_socket(cell)], env
    if contender == "floor":
        env = base_env()
        env["BENCH_SOCKET"] = sock
        return [ctx.floor, str(n), ctx.worker], env
    if contender == "supervisord":
        conf = os.path.join(cell, "supervisord.conf")
        os.makedirs(os.path.join(cell, "childlogs"), exist_ok=True)
        with open(conf, "w") as f:
            f.write(SUPERVISORD_CONF.format(
                logdir=ctx.logdir, tag=tag, cell=cell, minfds=supervisord_minfds(n), minprocs=n + 200,
                worker=ctx.worker, n=n, drain=DRAIN_SECONDS, sock=sock))
        return [ctx.supervisord, "-c", conf], base_env()
    raise ValueError(contender)


def control_socket(cell):
    """Where the poolvisor under test serves its control socket (`run --socket`)."""
    return os.path.join(cell, "runtime", "control.sock")


def supervisord_minfds(n):
    # per process: stdin/stdout/stderr pipes (3 fds kept by supervisord) plus slack
    return max(1024, 6 * n + 256)


def supervising_pids(sup_pid, worker_exe):
    """The supervisor and any non-worker process below it (helpers, not-yet-exec'd children)."""
    out = [sup_pid]
    for pid in descendants(sup_pid):
        exe = exe_of(pid)
        if exe is None or not exe.startswith(worker_exe):
            if not exited(pid):
                out.append(pid)
    return out


def p95(samples):
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=20, method="inclusive")[18]


def tail(path, lines=15):
    try:
        with open(path, "rb") as f:
            data = f.read()[-8000:].decode(errors="replace")
        return "\n".join(data.splitlines()[-lines:])
    except OSError:
        return ""


RELOAD_RUNS = 3      # `poolvisor reload` per cell (the cell's value is their median)
STATUS_RUNS = 20     # `poolvisor status` per cell, and as many raw status requests
CONTROL_SETTLE_S = 0.3   # after the reloads, before comparing worker pids: time for a restart to show


def worker_pids(sup_pid, worker_exe):
    """Live processes below the supervisor running the worker binary."""
    out = set()
    for pid in descendants(sup_pid):
        exe = exe_of(pid)
        if exe and exe.startswith(worker_exe) and not exited(pid):
            out.add(pid)
    return out


def control_request(path, command, timeout=60):
    """One raw request on the control socket: (ms from connect to the answer's newline, answer bytes)."""
    line = json.dumps({"v": 1, "command": command}).encode() + b"\n"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        t0 = now_ns()
        s.connect(path)
        s.sendall(line)
        chunks = []
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                raise OSError(f"{path} closed the connection before a full answer ({sum(map(len, chunks))} bytes)")
            chunks.append(chunk)
            if b"\n" in chunk:
                break
        t1 = now_ns()
    finally:
        s.close()
    answer = b"".join(chunks)
    return (t1 - t0) / 1e6, answer[:answer.index(b"\n")]


def timed_cli(argv):
    """Run a client command: (ms from launching it to its exit, CompletedProcess). Its output goes to
    pipes, read as it comes (as a terminal would)."""
    t0 = now_ns()
    p = subprocess.run(argv, env=base_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=90)
    return (now_ns() - t0) / 1e6, p


def measure_control_plane(ctx, proc, recv, cell, res):
    """reload of the unchanged pools file and status, through the CLI (what an operator sees: the
    client's start-up included) and as raw socket round trips. Problems with the contender go to
    res["control_plane_failures"] (shown in the report); a client that cannot talk to the supervisor at
    all is a measurement failure (res["control_plane_errors"])."""
    errors, failures = [], []
    try:
        _measure_control_plane(ctx, proc, recv, cell, res, errors, failures)
    except (subprocess.SubprocessError, OSError) as e:   # a client that hung (timeout) or would not start
        errors.append(f"{res['contender']}-n{res['n']}-r{res['round']}: control plane: {e}")
    finally:
        if errors:
            res["control_plane_errors"] = errors
        if failures:
            res["control_plane_failures"] = failures
        tag = f"{res['contender']}-n{res['n']}-r{res['round']}"
        for e in errors:
            log(f"FAILED {e}")
        for f in failures:
            log(f"{tag}: {f}")


def _measure_control_plane(ctx, proc, recv, cell, res, errors, failures):
    sock = control_socket(cell)
    tag = f"{res['contender']}-n{res['n']}-r{res['round']}"
    deadline = time.monotonic() + 5
    while not os.path.exists(sock):
        if time.monotonic() > deadline:
            errors.append(f"{tag}: no control socket at {sock}")
            return
        time.sleep(0.01)

    # reload of the unchanged file: the CLI RELOAD_RUNS times, then one raw request
    pids_before = worker_pids(proc.pid, ctx.worker)
    reports_before = recv.count()
    samples = []
    for _ in range(RELOAD_RUNS):
        ms, p = timed_cli([ctx.poolvisor, "reload", "--socket", sock])
        if p.returncode != 0:
            errors.append(f"{tag}: `poolvisor reload` exited with status {p.returncode}: {(p.stderr or p.stdout).strip()[:300]}")
            continue
        samples.append(ms)
        res["reload_output"] = p.stdout.strip().splitlines()[:5]
    res["reload_samples_ms"] = samples
    if samples:
        res["reload_unchanged_ms"] = statistics.median(samples)
    try:
        ms, answer = control_request(sock, "reload")
        body = json.loads(answer)
        if body.get("ok") is not True:
            errors.append(f"{tag}: raw reload request refused: {answer[:300].decode(errors='replace')}")
        else:
            res["reload_raw_ms"] = ms
    except (OSError, ValueError) as e:
        errors.append(f"{tag}: raw reload request failed: {e}")
    time.sleep(CONTROL_SETTLE_S)
    pids_after = worker_pids(proc.pid, ctx.worker)
    new_reports = recv.count() - reports_before
    gone, new = pids_before - pids_after, pids_after - pids_before
    res["reload_restarted_workers"] = max(len(gone), len(new), new_reports)
    if gone or new or new_reports:
        failures.append(f"reload restarted workers ({len(gone)} pid(s) gone, {len(new)} new, "
                        f"{new_reports} new worker report(s))")

    # status: the CLI STATUS_RUNS times, then as many raw requests
    samples, codes = [], {}
    for _ in range(STATUS_RUNS):
        ms, p = timed_cli([ctx.poolvisor, "status", "--socket", sock])
        codes[p.returncode] = codes.get(p.returncode, 0) + 1
        if p.returncode not in (0, 3):
            errors.append(f"{tag}: `poolvisor status` exited with status {p.returncode}: {(p.stderr or p.stdout).strip()[:300]}")
            break
        samples.append(ms)
    res["status_samples_ms"] = samples
    res["status_exit_codes"] = {str(k): v for k, v in sorted(codes.items())}
    if samples:
        res["status_cli_ms"] = statistics.median(samples)
    if codes.get(3):
        failures.append(f"`poolvisor status` said degraded (exit 3) {codes[3]} time(s) out of {sum(codes.values())}")
    raw = []
    for _ in range(STATUS_RUNS):
        try:
            ms, answer = control_request(sock, "status")
            body = json.loads(answer)
        except (OSError, ValueError) as e:
            errors.append(f"{tag}: raw status request failed: {e}")
            break
        if body.get("ok") is not True or "status" not in body:
            errors.append(f"{tag}: raw status request refused: {answer[:300].decode(errors='replace')}")
            break
        raw.append(ms)
        res["status_json_bytes"] = len(answer) + 1   # with its newline
    res["status_raw_samples_ms"] = raw
    if raw:
        res["status_ms"] = statistics.median(raw)
    pids_end = worker_pids(proc.pid, ctx.worker)
    if pids_end != pids_after:
        failures.append(f"worker pids changed while status was asked ({len(pids_after - pids_end)} gone, "
                        f"{len(pids_end - pids_after)} new)")


def launch_and_wait(ctx, argv, env, cell, logfile, recv, n, tag, res, start_timeout, record_nofile=False):
    """Launches a contender and waits until n distinct workers have reported: the start figures go into
    `res` (start, first worker, the supervisor's CPU time, when the last report arrived). Returns the
    process, its launch time, the receiver's events and the indices of each worker's first report."""
    with open(logfile, "wb") as out:
        t_launch = now_ns()
        proc = subprocess.Popen(argv, env=env, cwd=cell, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    ctx.tracker.add(proc)
    if record_nofile:
        res["nofile_limit"] = nofile_of(proc.pid)
    give_up = time.monotonic() + start_timeout
    while not recv.wait_distinct(n, 0.25):
        problem = None
        if proc.poll() is not None:
            problem = (f"{tag}: the supervisor exited with status {proc.returncode} after "
                       f"{recv.distinct()}/{n} workers had reported")
        elif time.monotonic() > give_up:
            problem = f"{tag}: only {recv.distinct()}/{n} workers reported within {start_timeout:.0f} s"
        if problem:
            # The caller never gets the process to clean up after: its tree goes here.
            ctx.tracker.sweep(proc)
            raise HarnessError(problem)
    events, first = recv.snapshot()
    firsts = sorted(first.values())[:n]
    res["start_ms"] = (max(events[i][1] for i in firsts) - t_launch) / 1e6
    res["first_worker_ms"] = (min(events[i][1] for i in firsts) - t_launch) / 1e6
    # the supervisor's CPU time from launch to here: on-CPU ns of its live threads (precise), and
    # utime+stime ticks (10 ms resolution, but counting threads that are gone)
    started = cpu_sample([proc.pid]).get(proc.pid)
    if started is not None:
        res["start_cpu_ms"] = sum(r for r, _ in started["threads"].values()) / 1e6
        res["start_cpu_ticks_ms"] = started["ticks"] * 1000 / os.sysconf("SC_CLK_TCK")
    res["start_recv_ms"] = (events[firsts[-1]][2] - t_launch) / 1e6
    return proc, t_launch, events, firsts


def idle_window(pids, seconds):
    """The idle figures of `pids` (the supervising processes) over a window of `seconds` in which the harness does
    nothing: their on-CPU time (schedstat, ns) and utime+stime (ticks) per second, their context switches (each one
    a wake-up), and how many CPUs were busy machine-wide (anything: the contender, the harness, other load)."""
    a = cpu_sample(pids)
    sys_a = system_busy_ticks()
    t_a = now_ns()
    time.sleep(seconds)
    b = cpu_sample(pids)
    sys_b = system_busy_ticks()
    t_b = now_ns()
    window = (t_b - t_a) / 1e9
    ticks, run_ns, ctx_sw = cpu_delta(a, b)
    return {
        "system_busy_cpus_idle_window": (sys_b[0] - sys_a[0]) / max(1, sys_b[1] - sys_a[1]) * (os.cpu_count() or 1),
        "idle_window_s": window,
        "idle_cpu_ms_per_s": run_ns / 1e6 / window,
        "idle_cpu_ticks_ms_per_s": ticks * (1000 / os.sysconf("SC_CLK_TCK")) / window,
        "idle_ctxsw": ctx_sw,
        "idle_ctxsw_per_s": ctx_sw / window,
    }


def run_cell(ctx, contender, n, rnd):
    tag = f"{contender}-n{n}-r{rnd + 1}"
    cell = os.path.join(ctx.tmp, tag)
    os.makedirs(cell)
    sock = os.path.join(cell, "bench.sock")
    logfile = os.path.join(ctx.logdir, f"{tag}.log")
    res = {"contender": contender, "n": n, "round": rnd + 1, "ok": False}
    recv = Receiver(sock)
    proc = None
    try:
        argv, env = prepare(ctx, contender, n, cell, sock, tag)
        res["argv"] = argv
        # start ---------------------------------------------------------------------------------
        proc, t_launch, events, firsts = launch_and_wait(ctx, argv, env, cell, logfile, recv, n, tag, res,
                                                         start_timeout=30 + 0.1 * n)
        live = {events[i][0]: k for k, i in enumerate(firsts)}   # pid -> replica lineage
        if proc.poll() is not None:
            raise HarnessError(f"{tag}: the supervisor exited ({proc.returncode}) right after starting")

        # idle ----------------------------------------------------------------------------------
        time.sleep(ctx.settle)
        sup = supervising_pids(proc.pid, ctx.worker)
        before_events = recv.count()
        res.update(idle_window(sup, ctx.idle))
        res["idle_reports"] = recv.count() - before_events
        res["supervising_processes"] = len(sup)

        # RSS -----------------------------------------------------------------------------------
        rss = hwm = threads = fds = 0
        sup = supervising_pids(proc.pid, ctx.worker)
        res["rss_summed_kib"] = sum(kib(status_fields(pid).get("VmRSS")) for pid in sup)
        for pid in sup:
            f = status_fields(pid)
            rss += resident_kib(pid, helper=pid != proc.pid, fields=f)
            hwm += kib(f.get("VmHWM"))
            threads += int(f.get("Threads", "0") or 0)
            try:
                fds += len(os.listdir(f"/proc/{pid}/fd"))
            except OSError:
                pass
        res["rss_kib"] = rss
        res["rss_hwm_kib"] = hwm
        res["threads"] = threads
        res["fds"] = fds
        res["workers_alive"] = sum(1 for pid in live if not exited(pid))
        if res["workers_alive"] != n:
            raise HarnessError(f"{tag}: {res['workers_alive']}/{n} workers alive after the idle window")

        # restart -------------------------------------------------------------------------------
        samples = []
        killed_lineages = set()
        for _ in range(min(ctx.restarts, n)):
            candidates = sorted(pid for pid, lin in live.items() if lin not in killed_lineages)
            victim = ctx.rng.choice(candidates)
            index = recv.count()
            t_kill = now_ns()
            os.kill(victim, signal.SIGKILL)
            ev = recv.wait_new_after(index, set(live), timeout=15)
            if ev is None:
                raise HarnessError(f"{tag}: no replacement reported within 15 s of killing pid {victim}")
            samples.append((ev[1] - t_kill) / 1e6)
            lineage = live.pop(victim)
            live[ev[0]] = lineage
            killed_lineages.add(lineage)
            time.sleep(ctx.rng.uniform(0.05, 0.10))
        res["restart_samples_ms"] = samples
        res["restart_p50_ms"] = statistics.median(samples)
        res["restart_p95_ms"] = p95(samples)

        # control plane (poolvisor only) ---------------------------------------------------------
        # Here, after idle CPU, RSS and restart and before stop, so that the reloads and status requests
        # (and the client processes they start) disturb none of the other measurements.
        if contender == "poolvisor":
            measure_control_plane(ctx, proc, recv, cell, res)

        # stop ----------------------------------------------------------------------------------
        workers = [pid for pid in live]
        events, first = recv.snapshot()
        extra = [pid for pid in first if pid not in live and not exited(pid)]
        if extra:
            res["unexpected_live_workers"] = extra
            workers += extra
        t_term = now_ns()
        os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + DRAIN_SECONDS + 30
        while not exited(proc.pid):
            if time.monotonic() > deadline:
                raise HarnessError(f"{tag}: the supervisor did not exit within {DRAIN_SECONDS + 30} s of SIGTERM")
            time.sleep(0.001)
        t_end = now_ns()
        for pid in workers:
            while not exited(pid):
                if time.monotonic() > deadline:
                    raise HarnessError(f"{tag}: worker {pid} still alive {DRAIN_SECONDS + 30} s after SIGTERM")
                time.sleep(0.001)
                t_end = now_ns()
        res["stop_ms"] = (t_end - t_term) / 1e6
        res["exit_code"] = proc.wait(timeout=5)
        lingering = [pid for pid in ctx.tracker.our_workers() if not exited(pid)]
        if lingering:
            raise HarnessError(f"{tag}: {len(lingering)} worker(s) still running after the supervisor exited")
        res["malformed_reports"] = recv.malformed
        res["ok"] = True
    except HarnessError as e:
        res["error"] = str(e)
        t = tail(logfile)
        if t:
            res["error_log_tail"] = t
        log(f"FAILED {e}")
        if t:
            print(t, file=sys.stderr)
    finally:
        if proc is not None:
            left = ctx.tracker.sweep(proc)
            if left:
                res["ok"] = False
                res.setdefault("error", f"{tag}: could not kill pids {left}")
        recv.close()
        shutil.rmtree(cell, ignore_errors=True)
    return res


# --------------------------------------------------------------------------------------------------
# Aggregation and the report

# (key in a cell's results, label, unit); every row gets both ratios, N=1000 rows their target.
ROWS = [
    ("start_ms", "start", "ms"),
    ("restart_p50_ms", "restart p50", "ms"),
    ("restart_p95_ms", "restart p95", "ms"),
    ("idle_cpu_ms_per_s", "idle CPU", "ms/s"),
    ("idle_ctxsw_per_s", "idle context switches", "/s"),
    ("rss_kib", "RSS", "MiB"),
    ("stop_ms", "stop", "ms"),
    ("reload_unchanged_ms", "reload of an unchanged pools file", "ms"),
    ("status_ms", "status round trip on the control socket", "ms"),
    ("status_cli_ms", "`poolvisor status` command, start to exit", "ms"),
]
# Rows with no equivalent measured for the other contenders ("n/a" in their columns).
POOLVISOR_ONLY = {"reload_unchanged_ms", "status_ms", "status_cli_ms"}


def fmt(value, unit):
    if value is None:
        return "—"
    if unit == "MiB":
        v = value / 1024
        return f"{v:.2f}" if v < 10 else f"{v:.1f}"
    if unit == "ms/s":
        return f"{value:.3f}"
    if unit == "/s":
        return f"{value:.2f}"
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:.0f}"


def ratio(a, b):
    if a is None or b is None:
        return None
    if b == 0:
        return None if a == 0 else float("inf")
    return a / b


def fmt_ratio(r):
    if r is None:
        return "—"
    if r == float("inf"):
        return "∞"
    return f"{r:.3f}x" if r < 0.1 else f"{r:.2f}x"


def aggregate(cells, ns):
    """medians[contender][n][key] over the rounds whose cell completed."""
    med = {}
    for c in CONTENDERS:
        med[c] = {}
        for n in ns:
            mine = [x for x in cells if x["contender"] == c and x["n"] == n and x["ok"]]
            m = {"rounds": len(mine)}
            for key, _, _ in ROWS + [("start_recv_ms", "", ""), ("idle_cpu_ticks_ms_per_s", "", ""),
                                     ("rss_hwm_kib", "", ""), ("threads", "", ""), ("fds", "", ""),
                                     ("idle_ctxsw", "", ""), ("first_worker_ms", "", ""), ("start_cpu_ms", "", ""),
                                     ("system_busy_cpus_idle_window", "", ""), ("reload_raw_ms", "", ""),
                                     ("status_json_bytes", "", "")]:
                vals = [x[key] for x in mine if x.get(key) is not None]
                m[key] = statistics.median(vals) if vals else None
            if c == "poolvisor":
                # any round in which a reload of the unchanged file restarted a worker fails its target
                m["reload_restarted_workers_max"] = max((x.get("reload_restarted_workers", 0) for x in mine), default=None)
            med[c][str(n)] = m
    return med


def _reload_target(pv, fl, m):
    if m.get("reload_restarted_workers_max"):
        return False
    return None if pv is None else pv <= 50.0


# metric -> (text, check(poolvisor value, floor value, poolvisor's medians at that N))
TARGETS = {
    "start_ms": ("≤ 1.3x floor", lambda pv, fl, m: None if pv is None or fl is None else pv <= 1.3 * fl),
    "restart_p50_ms": ("≤ 2 ms", lambda pv, fl, m: None if pv is None else pv <= 2.0),
    "restart_p95_ms": ("≤ 5 ms", lambda pv, fl, m: None if pv is None else pv <= 5.0),
    "idle_cpu_ms_per_s": ("≤ 0.05 ms/s", lambda pv, fl, m: None if pv is None else pv <= 0.05),
    "rss_kib": ("≤ 16 MiB", lambda pv, fl, m: None if pv is None else pv <= 16 * 1024),
    "stop_ms": ("≤ 1.3x floor", lambda pv, fl, m: None if pv is None or fl is None else pv <= 1.3 * fl),
    "reload_unchanged_ms": ("≤ 50 ms, no worker restarted", _reload_target),
    "status_ms": ("≤ 20 ms", lambda pv, fl, m: None if pv is None else pv <= 20.0),
}
TARGET_N = 1000


def build_table(med, ns):
    rows = []      # list of dicts, also for JSON
    for key, label, unit in ROWS:
        for n in ns:
            m = {c: med[c][str(n)][key] for c in CONTENDERS}
            row = {"metric": key, "label": label, "unit": unit, "n": n, "values": m,
                   "poolvisor_over_floor": ratio(m["poolvisor"], m["floor"]),
                   "poolvisor_over_supervisord": ratio(m["poolvisor"], m["supervisord"])}
            if key == "reload_unchanged_ms":
                row["reload_restarted_workers_max"] = med["poolvisor"][str(n)].get("reload_restarted_workers_max")
            if key in TARGETS and n == TARGET_N:
                text, check = TARGETS[key]
                row["target"] = text
                row["target_met"] = check(m["poolvisor"], m["floor"], med["poolvisor"][str(n)])
            rows.append(row)
    # RSS growth per worker between the two largest N measured
    growth = None
    if len(ns) >= 2:
        lo, hi = sorted(ns)[-2:]
        g = {}
        for c in CONTENDERS:
            a, b = med[c][str(lo)]["rss_kib"], med[c][str(hi)]["rss_kib"]
            g[c] = None if a is None or b is None else (b - a) / (hi - lo)
        growth = {"from_n": lo, "to_n": hi, "values": g,
                  "poolvisor_over_floor": ratio(g["poolvisor"], g["floor"]),
                  "poolvisor_over_supervisord": ratio(g["poolvisor"], g["supervisord"])}
    return rows, growth


def markdown_table(rows, growth, quick, ns, rounds):
    out = ["| metric | N | poolvisor | floor | supervisord | poolvisor/floor | poolvisor/supervisord | target (poolvisor, N=1000) |",
           "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        v = r["values"]
        if "target" in r:
            met = r["target_met"]
            target = ("✓ " if met else "✗ " if met is not None else "? ") + r["target"]
        else:
            target = ""
        pv = fmt(v["poolvisor"], r["unit"])
        if r.get("reload_restarted_workers_max"):
            pv += " ✗ reload restarted workers"
        if r["metric"] in POOLVISOR_ONLY:
            others = ["n/a", "n/a", "", ""]
        else:
            others = [fmt(v["floor"], r["unit"]), fmt(v["supervisord"], r["unit"]),
                      fmt_ratio(r["poolvisor_over_floor"]), fmt_ratio(r["poolvisor_over_supervisord"])]
        out.append(f"| {r['label']} ({r['unit']}) | {r['n']} | {pv} | " + " | ".join(others) + f" | {target} |")
    if growth:
        g = growth["values"]
        f = lambda x: "—" if x is None else f"{x:.1f}"
        out.append(f"| RSS growth per worker (KiB/worker) | {growth['from_n']}→{growth['to_n']} | {f(g['poolvisor'])} | "
                   f"{f(g['floor'])} | {f(g['supervisord'])} | {fmt_ratio(growth['poolvisor_over_floor'])} | "
                   f"{fmt_ratio(growth['poolvisor_over_supervisord'])} | informational |")
    if TARGET_N not in ns:
        out.append("")
        out.append(f"_{'--quick: ' if quick else ''}N = {', '.join(map(str, ns))}, {rounds} round(s); "
                   f"the targets apply to N={TARGET_N}, which this run did not measure._")
    return "\n".join(out)


DIAGNOSTICS = [
    ("first_worker_ms", "first worker reported (ms after launch)", lambda v: f"{v:.1f}"),
    ("start_cpu_ms", "supervisor CPU time during start (ms)", lambda v: f"{v:.1f}"),
    ("rss_hwm_kib", "supervisor peak RSS, VmHWM (MiB)", lambda v: f"{v / 1024:.1f}"),
    ("threads", "supervisor threads", lambda v: f"{v:.0f}"),
    ("fds", "supervisor open fds", lambda v: f"{v:.0f}"),
    ("system_busy_cpus_idle_window", "CPUs busy machine-wide in the idle window", lambda v: f"{v:.2f}"),
    ("reload_raw_ms", "reload of an unchanged file, raw socket round trip (ms)", lambda v: f"{v:.2f}"),
    ("status_json_bytes", "status answer (JSON bytes)", lambda v: f"{v:.0f}"),
]


def diagnostics_table(med, ns):
    head = "| diagnostic (median) | N | " + " | ".join(CONTENDERS) + " |"
    out = [head, "|---|---:|" + "---:|" * len(CONTENDERS)]
    for key, label, f in DIAGNOSTICS:
        for n in ns:
            vals = [med[c][str(n)].get(key) for c in CONTENDERS]
            out.append(f"| {label} | {n} | " + " | ".join("—" if v is None else f(v) for v in vals) + " |")
    return "\n".join(out)


def run(cmd, **kw):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_facts(root, poolvisor_bin):
    cpu = "unknown"
    for line in (read_text("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in (read_text("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = kib(line.split(":", 1)[1])
    debian = (read_text("/etc/debian_version") or "").strip()
    pretty = ""
    for line in (read_text("/etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            pretty = line.split("=", 1)[1].strip('"')
    swift = run(["swift", "--version"]).splitlines()
    swift = next((l for l in swift if "Swift version" in l), swift[0] if swift else "unknown")
    commit = run(["git", "-C", root, "rev-parse", "HEAD"])
    dirty = run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no", "--", "Sources", "Package.swift"])
    sha = hashlib.sha256()
    with open(poolvisor_bin, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "debian": f"{pretty} ({debian})" if pretty else debian,
        "swift": swift,
        "supervisord": run(["supervisord", "--version"]) or "unknown",
        "cc": (run(["cc", "--version"]).splitlines() or ["unknown"])[0],
        "python": platform.python_version(),
        "poolvisor_commit": commit or "unknown",
        "poolvisor_worktree_dirty": bool(dirty),
        "poolvisor_dirty_files": dirty.splitlines() if dirty else [],
        "poolvisor_binary_sha256": sha.hexdigest(),
        "net_unix_max_dgram_qlen": (read_text("/proc/sys/net/unix/max_dgram_qlen") or "").strip(),
    }


def notes_for(cells, med, ns, quick, other_load):
    notes = []
    for when, procs in other_load.items():
        for p in procs:
            notes.append(f"**Machine not quiet ({when}):** pid {p['pid']} ({p['comm']}: `{p['cmdline']}`), not started by "
                         f"the harness, used {p['cpu_share'] * 100:.0f} % of a CPU; every contender ran beside it, "
                         f"so all numbers are perturbed (start, stop and restart most).")
    noisy = [x for x in cells if x["ok"] and x.get("system_busy_cpus_idle_window", 0) > 0.2]
    if noisy:
        worst = max(x["system_busy_cpus_idle_window"] for x in noisy)
        notes.append(f"{len(noisy)} of {sum(1 for x in cells if x['ok'])} completed cells saw more than 0.2 CPUs busy machine-wide during their idle "
                     f"window (at most {worst:.2f} CPUs): other load on the machine.")
    for x in cells:
        if not x["ok"]:
            notes.append(f"**Failed:** {x.get('error', 'unknown error')}")
        elif x.get("exit_code") not in (0, None):
            notes.append(f"{x['contender']} N={x['n']} round {x['round']}: exited with status {x['exit_code']} after SIGTERM (expected 0).")
        if x.get("idle_reports"):
            notes.append(f"{x['contender']} N={x['n']} round {x['round']}: {x['idle_reports']} worker report(s) during the idle window (a worker restarted while nothing should happen).")
        if x.get("unexpected_live_workers"):
            notes.append(f"{x['contender']} N={x['n']} round {x['round']}: {len(x['unexpected_live_workers'])} unexpected extra live worker(s) before stop.")
        if x.get("malformed_reports"):
            notes.append(f"{x['contender']} N={x['n']} round {x['round']}: {x['malformed_reports']} malformed report(s).")
        for f in x.get("control_plane_failures", ()):
            notes.append(f"**{x['contender']} N={x['n']} round {x['round']}: {f}.**")
        for e in x.get("control_plane_errors", ()):
            notes.append(f"**Failed (control plane):** {e}")
    return notes


def render_generated(data, table):
    m = data["machine"]
    cfg = data["config"]
    cmds = data["commands"]
    lines = []
    lines.append(f"Generated by `{cmds['harness']}` on {data['date']} "
                 f"({'quick smoke run' if data['mode'] == 'quick' else 'full run'}; "
                 f"{cfg['rounds']} round(s), medians across rounds; raw numbers in "
                 f"`{data['json_name']}`).")
    lines.append("")
    lines.append("### Machine")
    lines.append("")
    dirty = ""
    if m["poolvisor_worktree_dirty"]:
        dirty = f" + uncommitted changes ({', '.join(f.split()[-1] for f in m['poolvisor_dirty_files'][:8])}{', …' if len(m['poolvisor_dirty_files']) > 8 else ''})"
    lines += [
        f"- CPU: {m['cpu_model']}, {m['cores']} cores; memory {m['memory_gib']} GiB",
        f"- kernel {m['kernel']}; {m['debian']}",
        f"- {m['swift']}; supervisord {m['supervisord']}; {m['cc']}; Python {m['python']}",
        (f"- poolvisor: a binary given with --poolvisor-bin ({m['poolvisor_commit']}), not built from this checkout"
         if m.get("poolvisor_binary_given") else f"- poolvisor commit `{m['poolvisor_commit']}`{dirty}")
        + f"; binary sha256 `{m['poolvisor_binary_sha256'][:16]}…`",
        f"- net.unix.max_dgram_qlen = {m['net_unix_max_dgram_qlen']}",
    ]
    lines.append("")
    lines.append("### Results")
    lines.append("")
    lines.append(table)
    lines.append("")
    lines.append("Not targets, but where the time and memory go:")
    lines.append("")
    lines.append(data["diagnostics_table"])
    lines += reload_memory_section(data)
    lines.append("")
    lines.append("How each number is taken (per cell: one contender, one N, one round):")
    lines.append("")
    lines += [
        "- **start**: `Popen` of the supervisor → the N-th distinct worker pid's own CLOCK_MONOTONIC stamp (taken first thing in `main`).",
        f"- **idle CPU**: on-CPU time of the supervising processes (all threads; `/proc/PID/task/*/schedstat`, ns resolution) over a {cfg['idle_seconds']:g} s window starting {cfg['settle_seconds']:g} s after the last worker reported; `utime+stime` from `/proc/PID/stat` is recorded too (`idle_cpu_ticks_ms_per_s` in the JSON) but its 10 ms tick cannot resolve the 0.05 ms/s target. **idle context switches**: voluntary + nonvoluntary, all threads, same window.",
        "- **RSS**: VmRSS of the supervisor (not the workers) right after the idle window, all N workers up, plus the private memory (`Private_Clean` + `Private_Dirty` of `/proc/PID/smaps_rollup`) of any helper process it forked: poolvisor's spawn server is a copy of poolvisor whose other pages are the supervisor's own, which summing VmRSS would count twice (the sum is `rss_summed_kib` in the JSON).",
        f"- **restart**: SIGKILL a random worker whose replica was never killed before (so no backoff applies), latency = replacement's stamp − kill time; min({cfg['restarts']}, N) kills per cell, {cfg['restart_gap_ms'][0]}–{cfg['restart_gap_ms'][1]} ms apart; p50/p95 per cell (p95 interpolated), then the median over rounds. Taken after idle/RSS.",
        "- **stop**: SIGTERM to the supervisor → it and every worker have exited (zombies count as exited), polled every 1 ms.",
        f"- **reload of an unchanged pools file** (poolvisor only): wall time of `poolvisor reload --socket PATH` from launching the client to its exit (status 0 required), median of {RELOAD_RUNS} per cell; the worker pids before and after ({CONTROL_SETTLE_S:g} s later) must be the same and no worker may report anew, else the cell says \"reload restarted workers\". The diagnostics give one raw socket round trip (connect, send `{{\"v\":1,\"command\":\"reload\"}}`, read the answer line).",
        f"- **status round trip** (poolvisor only): connect to the control socket, send `{{\"v\":1,\"command\":\"status\"}}`, read the whole answer line, median of {STATUS_RUNS} per cell; this is the supervisor's cost, which the target is about. **`poolvisor status` command**: wall time of `poolvisor status --socket PATH` from launching the client to its exit (what an operator sees: the client's own start-up, about 7 ms for a static Swift binary, and parsing and printing the answer included), median of {STATUS_RUNS}. The diagnostics give the size of the JSON answer. Reload and status are measured after restart, before stop, so they disturb no other number.",
        "- Contenders alternate within a round, in an order rotated each round. The harness reads the report socket (SO_RCVBUF 8 MiB) on its own thread.",
    ]
    lines.append("")
    lines.append("### Commands")
    lines.append("")
    lines.append("```sh")
    lines.append(f"# harness\n{cmds['harness']}")
    lines.append(f"# build\n{cmds['build']}")
    for c in cmds["compile"]:
        lines.append(c)
    lines.append("# contenders (per cell; paths are per-run temp dirs; BENCH_SOCKET is the harness's socket)")
    for c in CONTENDERS:
        lines.append(cmds["contenders"][c])
        if c == "poolvisor":
            lines += cmds["contenders"]["poolvisor_control"]
    lines.append("```")
    lines.append("")
    lines.append("<details><summary>pools file and supervisord.conf (N and paths filled in per cell)</summary>")
    lines.append("")
    lines.append("```toml")
    lines.append(cmds["pools_toml"].rstrip())
    lines.append("```")
    lines.append("")
    lines.append("```ini")
    lines.append(cmds["supervisord_conf"].rstrip())
    lines.append("```")
    lines.append("")
    lines.append("</details>")
    if data["notes"]:
        lines.append("")
        lines.append("### Notes from this run")
        lines.append("")
        for n in data["notes"]:
            lines.append(f"- {n}")
    return "\n".join(lines)


def write_markdown(path, generated):
    block = f"{BEGIN_MARK}\n{generated}\n{END_MARK}"
    text = read_text(path)
    if text is None:
        text = f"# poolvisor benchmarks\n\n{block}\n\n{CHANGES_HEADING}\n\n{CHANGES_PLACEHOLDER}\n"
    else:
        b, e = text.find(BEGIN_MARK), text.find(END_MARK)
        if b != -1 and e != -1 and e > b:
            text = text[:b] + block + text[e + len(END_MARK):]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
        # the hand-written section must exist outside the markers
        outside = text[:text.find(BEGIN_MARK)] + text[text.find(END_MARK):]
        if CHANGES_HEADING not in outside:
            text = text.rstrip("\n") + f"\n\n{CHANGES_HEADING}\n\n{CHANGES_PLACEHOLDER}\n"
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------------
# Shared by the reload-memory row and the large mode

def resident_kib(pid, helper, fields=None):
    """The supervisor's VmRSS; for a helper it forked (poolvisor's spawn server), only its private
    memory (Private_Clean + Private_Dirty of /proc/PID/smaps_rollup): the rest is the same pages as the
    supervisor's (the code of the same binary), which VmRSS would count twice."""
    if not helper:
        return kib((fields or status_fields(pid)).get("VmRSS"))
    private = 0
    for line in (read_text(f"/proc/{pid}/smaps_rollup") or "").splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            private += int(line.split()[1])
    return private


def footprint(pids):
    """Resident memory as `resident_kib` counts it (pids[0] the supervisor, the rest its helpers),
    VmHWM, RssAnon (KiB), threads and open fds, summed over `pids`."""
    out = {"rss_kib": 0, "rss_summed_kib": 0, "hwm_kib": 0, "anon_kib": 0, "threads": 0, "fds": 0}
    for i, pid in enumerate(pids):
        f = status_fields(pid)
        out["rss_kib"] += resident_kib(pid, helper=i > 0, fields=f)
        out["rss_summed_kib"] += kib(f.get("VmRSS"))
        out["hwm_kib"] += kib(f.get("VmHWM"))
        out["anon_kib"] += kib(f.get("RssAnon"))
        out["threads"] += int(f.get("Threads", "0") or 0)
        try:
            out["fds"] += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            pass
    return out


def nofile_of(pid):
    """The process's RLIMIT_NOFILE as [soft, hard] (from /proc/PID/limits), or None."""
    for line in (read_text(f"/proc/{pid}/limits") or "").splitlines():
        if line.startswith("Max open files"):
            f = line.split()
            try:
                return [int(f[3]), int(f[4])]
            except (IndexError, ValueError):
                return None
    return None


def answer_error(answer):
    """None when a control-socket answer says ok, else what went wrong (the answer's own words)."""
    try:
        body = json.loads(answer)
    except ValueError as e:
        return f"unreadable answer ({e}): {answer[:200].decode(errors='replace')}"
    if body.get("ok") is True:
        return None
    # the diagnostics carry the cause ("cannot read the pools file: Too many open files"), the error a summary
    words = "; ".join(map(str, body.get("diagnostics") or []))
    summary = body.get("error") or "; ".join(map(str, body.get("lines") or []))
    if words and summary:
        words += f" ({summary})"
    return f"refused: {words or summary or answer[:200].decode(errors='replace')}"


def status_answer_error(answer):
    """Like answer_error, without parsing a multi-megabyte status answer that starts as a good one."""
    head = answer[:64]
    if head.startswith(b'{"v":1,"ok":true,"status":') or head.startswith(b'{"ok":true'):
        return None
    return answer_error(answer)


def wait_for_socket(path, proc, timeout):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None:
            raise HarnessError(f"the supervisor exited ({proc.returncode}) before its control socket {path} appeared")
        if time.monotonic() > deadline:
            raise HarnessError(f"no control socket at {path} within {timeout:g} s")
        time.sleep(0.01)


def stop_quietly(proc, timeout=DRAIN_SECONDS + 30):
    """SIGTERM to a supervisor whose stop is not measured; None once it has exited, else the reason."""
    if proc.poll() is not None:
        return f"it had already exited with status {proc.returncode}"
    try:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"it did not exit within {timeout} s of SIGTERM"
    except OSError as e:
        return str(e)
    return None


def percentile(samples, q):
    """Interpolated percentile q (0-100) of a non-empty list."""
    s = sorted(samples)
    if len(s) == 1:
        return s[0]
    k = (len(s) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


# --------------------------------------------------------------------------------------------------
# Reload memory: poolvisor's RSS across many reloads of an unchanged 50-pool file (N-independent)

RELOAD_MEMORY_POOLS = 50
RELOAD_MEMORY_TARGET_KIB = 2048
RELOAD_MEMORY_DEFAULT = {"quick": 200, "full": 10000, "large": 10000}
SUBSCRIPTIONS = ("all", "all_but_kb", "flow", "chat", "kb")


def reload_pools_toml(worker, sock, pools=RELOAD_MEMORY_POOLS):
    """50 pools, every other one with one replica (25 workers), each with an env table and a backoff."""
    out = [f'[supervisor]\nname = "bench"\ndrain_seconds = {DRAIN_SECONDS}\n\n[env]\nBENCH_SOCKET = "{sock}"\n']
    for i in range(pools):
        name = f"p{i:02d}"
        out.append(f"""
[pools.{name}]
command = ["{worker}"]
replicas = {1 if i % 2 == 0 else 0}
worker_subscribe = "{SUBSCRIPTIONS[i % len(SUBSCRIPTIONS)]}"
ready_after_seconds = 0
drain_seconds = 5

[pools.{name}.env]
QUEUE_NAME = "queue-{name}"
LOG_LEVEL = "info"
FEATURE_FLAGS = "alpha,beta,gamma"
POOL_INDEX = "{i}"

[pools.{name}.backoff]
initial_seconds = 1
max_seconds = 60
reset_after_seconds = 600
""")
    return "".join(out)


def reload_memory_workers(pools=RELOAD_MEMORY_POOLS):
    return (pools + 1) // 2


def measure_reload_memory(ctx, reloads):
    """poolvisor with the 50-pool file; `reloads` raw reload requests on the control socket, each sent as
    soon as the previous one is answered (the answer comes once the reload is applied); VmRSS of the
    supervisor after the first and after the last, and at each power of ten in between."""
    tag = "poolvisor-reload-memory"
    cell = os.path.join(ctx.tmp, tag)
    os.makedirs(cell)
    sock = os.path.join(cell, "bench.sock")
    logfile = os.path.join(ctx.logdir, f"{tag}.log")
    workers = reload_memory_workers()
    res = {"contender": "poolvisor", "kind": "reload-memory", "pools": RELOAD_MEMORY_POOLS, "workers": workers,
           "reloads_asked": reloads, "ok": False}
    recv = Receiver(sock)
    proc = None
    t_cell = time.monotonic()
    try:
        cfg = os.path.join(cell, "pools.toml")
        with open(cfg, "w") as f:
            f.write(reload_pools_toml(ctx.worker, sock))
        runtime = os.path.join(cell, "runtime")
        os.makedirs(runtime)
        env = base_env()
        env["RUNTIME_DIRECTORY"] = runtime
        csock = control_socket(cell)
        argv = [ctx.poolvisor, "run", "--config", cfg, "--log-level", "warning", "--socket", csock]
        res["argv"] = argv
        with open(logfile, "wb") as out:
            proc = subprocess.Popen(argv, env=env, cwd=cell, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        ctx.tracker.add(proc)
        give_up = time.monotonic() + 60
        while not recv.wait_distinct(workers, 0.25):
            if proc.poll() is not None:
                raise HarnessError(f"{tag}: poolvisor exited with status {proc.returncode} after "
                                   f"{recv.distinct()}/{workers} workers had reported")
            if time.monotonic() > give_up:
                raise HarnessError(f"{tag}: only {recv.distinct()}/{workers} workers reported within 60 s")
        wait_for_socket(csock, proc, 10)
        time.sleep(ctx.settle)
        res["before"] = footprint([proc.pid])
        reports_before = recv.count()

        marks = {1, reloads}
        k = 10
        while k < reloads:
            marks.add(k)
            k *= 10
        checkpoints = {}
        samples = []
        failures = 0
        first_error = None
        consecutive = 0
        deadline = time.monotonic() + max(900.0, reloads * 0.25)
        done = 0
        for i in range(1, reloads + 1):
            err = None
            try:
                ms, answer = control_request(csock, "reload", timeout=60)
                err = answer_error(answer)
            except OSError as e:
                err = f"request failed: {e}"
            done = i
            if err is None:
                samples.append(ms)
                consecutive = 0
            else:
                failures += 1
                consecutive += 1
                if first_error is None:
                    first_error = f"reload {i}: {err}"
                    log(f"{tag}: {first_error}")
            if i in marks:
                checkpoints[i] = footprint([proc.pid])
            if proc.poll() is not None:
                res["error"] = f"poolvisor exited with status {proc.returncode} during reload {i}"
                break
            if consecutive >= 20:
                res["error"] = f"{consecutive} reloads in a row failed; stopped after {i}: {first_error}"
                break
            if time.monotonic() > deadline:
                res["error"] = f"stopped after {i} of {reloads} reloads: the time limit ({deadline - t_cell:.0f} s) was reached"
                break
        if done and done not in checkpoints and proc.poll() is None:
            checkpoints[done] = footprint([proc.pid])
        res["reloads_done"] = done
        res["reloads_failed"] = failures
        if first_error:
            res["first_error"] = first_error
        res["checkpoints"] = {str(i): fp for i, fp in sorted(checkpoints.items())}
        if samples:
            res["reload_mean_ms"] = statistics.fmean(samples)
            res["reload_p50_ms"] = statistics.median(samples)
            res["reload_p95_ms"] = percentile(samples, 95)
            res["reload_max_ms"] = max(samples)
            res["reload_first_ms"] = samples[0]
        if 1 in checkpoints and done in checkpoints and done > 1:
            a, b = checkpoints[1], checkpoints[done]
            res["rss_first_kib"] = a["rss_kib"]
            res["rss_last_kib"] = b["rss_kib"]
            res["rss_growth_kib"] = b["rss_kib"] - a["rss_kib"]
            res["anon_growth_kib"] = b["anon_kib"] - a["anon_kib"]
            res["fds_first"] = a["fds"]
            res["fds_last"] = b["fds"]
            res["hwm_last_kib"] = b["hwm_kib"]
        res["workers_restarted"] = recv.count() - reports_before
        if failures and "error" not in res:
            res["error"] = f"{failures} of {done} reloads failed; the first: {first_error}"
        why = stop_quietly(proc)
        if why:
            res.setdefault("error", f"stopping it: {why}")
        res["ok"] = "error" not in res
    except (HarnessError, OSError) as e:
        res["error"] = str(e)
    finally:
        if proc is not None:
            left = ctx.tracker.sweep(proc)
            if left:
                res["ok"] = False
                res.setdefault("error", f"{tag}: could not kill pids {left}")
        recv.close()
        shutil.rmtree(cell, ignore_errors=True)
        res["duration_s"] = round(time.monotonic() - t_cell, 1)
    if res.get("error"):
        t = tail(logfile)
        if t:
            res["error_log_tail"] = t
        log(f"FAILED {tag}: {res['error']}")
    else:
        log(f"{tag}: {res['reloads_done']} reloads, mean {res.get('reload_mean_ms', float('nan')):.2f} ms; RSS "
            f"{res.get('rss_first_kib', 0) / 1024:.2f} MiB after the first, {res.get('rss_last_kib', 0) / 1024:.2f} MiB after "
            f"the last ({res.get('rss_growth_kib', 0):+d} KiB) [{res['duration_s']} s]")
    return res


# (key, label, unit, target text, check(value) -> bool)
RELOAD_MEMORY_ROWS = [
    ("rss_first_kib", "RSS after the first reload", "MiB", None, None),
    ("rss_last_kib", "RSS after the last reload", "MiB", None, None),
    ("rss_growth_kib", "RSS growth, first → last reload", "KiB", f"≤ {RELOAD_MEMORY_TARGET_KIB} KiB",
     lambda v: v <= RELOAD_MEMORY_TARGET_KIB),
    ("anon_growth_kib", "anonymous RSS (heap) growth, first → last", "KiB", None, None),
    ("reload_mean_ms", "reload round trip, mean", "ms", None, None),
    ("reload_p95_ms", "reload round trip, p95", "ms", None, None),
    ("fds_first", "open fds after the first reload", "count", None, None),
    ("fds_last", "open fds after the last reload", "count", None, None),
]


def reload_memory_table(res):
    rows = []
    done = res.get("reloads_done")
    for key, label, unit, target, check in RELOAD_MEMORY_ROWS:
        v = res.get(key)
        row = {"metric": key, "label": label, "unit": unit, "n": "reload", "reloads": done,
               "values": {"poolvisor": v}, "errors": {}}
        if res.get("error") and (v is None or key.startswith(("rss", "anon", "fds"))):
            row["errors"]["poolvisor"] = res["error"]
        if target:
            row["target"] = target
            row["target_met"] = None if v is None or res.get("error") else check(v)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------------
# Probe cost: poolvisor's own CPU for the readiness probes of N workers (poolvisor only, N-independent)

PROBE_VARIANTS = ("none", "http_get", "tcp_socket", "exec")
PROBE_LABELS = {"none": "none (baseline)", "http_get": "`http_get` /healthz", "tcp_socket": "`tcp_socket`",
                "exec": "`exec` /bin/true"}
# N, period_seconds and the window per mode. The window is a whole number of periods: every worker is probed
# once per period, in a wave that follows the start wave, so a window of k periods sees k x N probes whatever
# its phase (half a period would see anything from 0 to N). --quick keeps the rate, 100 probes/s, with a
# tenth of the workers and a tenth of the period.
PROBE_DEFAULTS = {"full": {"n": 1000, "period": 10.0, "window": 30.0},
                  "quick": {"n": 100, "period": 1.0, "window": 5.0}}
PROBE_TIMEOUT_S = 1
PROBE_EXEC = "/bin/true"
PROBE_RATE_TOLERANCE = 0.05       # probes/s within 5 % of N / period_seconds
PROBE_BASELINE_TARGET_MS_PER_S = 0.05   # the idle CPU target of the main table
PROBE_STATUS_GAP_S = 0.2          # between status requests while waiting for every worker to be ready
PROBE_HELPER_AGE_S = 0.2          # a helper (the spawn server) has run this long; an exec probe has not
PROBES_BEGIN_MARK = "<!-- bench:probes:begin -->"
PROBES_END_MARK = "<!-- bench:probes:end -->"

PROBE_POOLS_TOML = """\
[supervisor]
name = "bench"
drain_seconds = {drain}

[pools.probe]
command = ["{worker}"]
replicas = {n}
{ready_after}
[pools.probe.env]
BENCH_SOCKET = "{sock}"
{probe}"""


def probe_pools_toml(variant, worker, n, sock, port, period):
    """The pools file of one variant: N bench workers with a readiness probe of that kind (none: without, and ready
    at once, as in the main table's pools file; with a probe, ready_after_seconds has no effect and check says so)."""
    probe, ready_after = "", "ready_after_seconds = 0\n"
    if variant != "none":
        ready_after = ""
        handler = {"http_get": f'http_get = {{ port = {port}, path = "/healthz" }}',
                   "tcp_socket": f"tcp_socket = {{ port = {port} }}",
                   "exec": f'exec = ["{PROBE_EXEC}"]'}[variant]
        probe = (f"\n[pools.probe.readiness_probe]\n{handler}\nperiod_seconds = {period:g}\n"
                 f"timeout_seconds = {PROBE_TIMEOUT_S}\n")
    return PROBE_POOLS_TOML.format(drain=DRAIN_SECONDS, worker=worker, n=n, sock=sock, probe=probe,
                                   ready_after=ready_after)


class ProbeTarget:
    """scripts/bench-probe-target.py in a process of its own (so that its CPU is its own): one HTTP/TCP server on
    127.0.0.1 that every probe of every worker goes to, counting what it answered."""

    def __init__(self, ctx, logfile):
        with open(logfile, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, ctx.probe_target], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=err, cwd=ctx.tmp, start_new_session=True)
        ctx.tracker.add(self.proc)
        self.buffer = b""
        self.port = int(self._line(10))

    def _line(self, timeout):
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if self.proc.poll() is not None:
                raise HarnessError(f"the probe target server exited with status {self.proc.returncode}")
            if left <= 0:
                raise HarnessError(f"the probe target server did not answer within {timeout:g} s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise HarnessError(f"the probe target server closed its stdout (status {self.proc.wait(timeout=5)})")
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line

    def counts(self):
        """{"http": .., "tcp": .., "other": .., "accepted": .., "open": ..} so far."""
        try:
            self.proc.stdin.write(b"count\n")
            self.proc.stdin.flush()
        except OSError as e:
            raise HarnessError(f"the probe target server is gone: {e}")
        return json.loads(self._line(10))

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass


class ForkWatch:
    """The kernel's process events connector (a netlink socket; root and CONFIG_PROC_EVENTS): every fork on the
    machine, read on a thread of its own; kept are the kernel's CLOCK_MONOTONIC stamps of the processes (not
    threads) created by the watched parents. How the exec probes are counted: each is one process poolvisor
    creates (its spawn server clones with CLONE_PARENT, so poolvisor is the parent either way)."""

    NETLINK_CONNECTOR = 11
    CN_IDX_PROC = 1
    CN_VAL_PROC = 1
    LISTEN, IGNORE = 1, 2
    PROC_EVENT_FORK = 1
    HEADER = 16 + 20   # nlmsghdr, cn_msg; then the proc_event: what, cpu, timestamp_ns, the event's own fields

    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, self.NETLINK_CONNECTOR)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20)
            self.sock.bind((0, self.CN_IDX_PROC))
            self._control(self.LISTEN)
        except OSError:
            self.sock.close()
            raise
        self.sock.settimeout(0.5)
        self.lock = threading.Lock()
        self.parents = set()
        self.stamps = []          # fork stamps (ns) of the watched parents' children
        self.latest = 0           # the stamp of the latest event of any kind
        self.lost = False         # the socket overflowed: the counts are not to be trusted
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="bench-fork-watch", daemon=True)
        self.thread.start()

    def _control(self, op):
        payload = struct.pack("=I", op)
        cn = struct.pack("=IIIIHH", self.CN_IDX_PROC, self.CN_VAL_PROC, 0, 0, len(payload), 0) + payload
        self.sock.send(struct.pack("=IHHII", 16 + len(cn), 3, 0, 0, 0) + cn)   # type NLMSG_DONE

    def _run(self):
        while not self.stopping:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    self.lost = True
                    continue
                break
            if len(data) < self.HEADER + 16:
                continue
            what, _, stamp = struct.unpack_from("=IIQ", data, self.HEADER)
            with self.lock:
                self.latest = max(self.latest, stamp)
                if what == self.PROC_EVENT_FORK and len(data) >= self.HEADER + 32:
                    _, parent, child_pid, child_tgid = struct.unpack_from("=IIII", data, self.HEADER + 16)
                    if parent in self.parents and child_pid == child_tgid:
                        self.stamps.append(stamp)

    def watch(self, pids):
        with self.lock:
            self.parents = set(pids)
            self.stamps = []

    def count(self, t_a, t_b):
        """Forks of the watched parents stamped within [t_a, t_b], once the thread has read past t_b (a process
        started here makes sure there is an event after it); None if the socket overflowed or fell behind."""
        pid = os.posix_spawn("/bin/true", ["true"], {})
        os.waitpid(pid, 0)
        deadline = time.monotonic() + 5
        while True:
            with self.lock:
                if self.latest >= t_b:
                    return None if self.lost else sum(1 for s in self.stamps if t_a <= s <= t_b)
            if time.monotonic() > deadline:
                return None
            time.sleep(0.01)

    def close(self):
        self.stopping = True
        try:
            self._control(self.IGNORE)
        except OSError:
            pass
        self.thread.join(timeout=2)
        self.sock.close()


def machine_forks():
    """Processes and threads created since boot, machine-wide (/proc/stat `processes`)."""
    for line in (read_text("/proc/stat") or "").splitlines():
        if line.startswith("processes "):
            return int(line.split()[1])
    return 0


def long_lived_helpers(sup_pid, poolvisor_exe):
    """The supervisor's helper processes (the spawn server): copies of the poolvisor binary below it that have run
    for PROBE_HELPER_AGE_S at least, so that an exec probe caught between its fork and its exec is not one."""
    hz = os.sysconf("SC_CLK_TCK")
    uptime = float((read_text("/proc/uptime") or "0").split()[0])
    out = []
    for pid in descendants(sup_pid):
        exe = exe_of(pid)
        s = read_text(f"/proc/{pid}/stat")
        if not exe or not exe.startswith(poolvisor_exe) or s is None or exited(pid):
            continue
        try:
            started = int(s[s.rindex(")") + 2:].split()[19]) / hz
        except (ValueError, IndexError):
            continue
        if uptime - started >= PROBE_HELPER_AGE_S:
            out.append(pid)
    return out


def pool_status(sock, pool):
    """(ready, desired, the pool's replicas) from one raw status request."""
    _, answer = control_request(sock, "status", timeout=60)
    err = status_answer_error(answer)
    if err is not None:
        raise HarnessError(f"status request: {err}")
    body = json.loads(answer)
    for p in body["status"]["pools"]:
        if p["name"] == pool:
            return p["ready"], p["desired"], p.get("replicas", [])
    raise HarnessError(f"status shows no pool '{pool}'")


def probe_failures(replicas):
    """(workers whose readiness probe is not passing, the first reason given)."""
    bad, why = 0, None
    for r in replicas:
        for p in r.get("probes", ()):
            if p.get("kind") == "readiness" and p.get("state") != "passing":
                bad += 1
                why = why or p.get("last_failure")
    return bad, why


def measure_probe_variant(ctx, variant, target, forks, n, period, window):
    """poolvisor with n bench workers and a readiness probe of this kind every `period` s (none: no probe).
    Once status says every worker is ready (and ctx.settle later), a window of `window` s: poolvisor's CPU (the
    supervisor and its spawn server, never the workers), the probes the target answered (exec: the processes
    poolvisor created: `forks`, a ForkWatch, or else every process created machine-wide), the target's CPU; then
    the supervisor's footprint and a last status."""
    tag = f"poolvisor-probes-{variant.replace('_', '-')}-n{n}"
    cell = os.path.join(ctx.tmp, tag)
    os.makedirs(cell)
    sock = os.path.join(cell, "bench.sock")
    logfile = os.path.join(ctx.logdir, f"{tag}.log")
    res = {"contender": "poolvisor", "kind": "probe-cost", "probe": variant, "n": n,
           "period_s": period if variant != "none" else None, "ok": False}
    recv = Receiver(sock)
    proc = None
    t_cell = time.monotonic()
    try:
        cfg = os.path.join(cell, "pools.toml")
        with open(cfg, "w") as f:
            f.write(probe_pools_toml(variant, ctx.worker, n, sock, target.port, period))
        runtime = os.path.join(cell, "runtime")
        os.makedirs(runtime)
        env = base_env()
        env["RUNTIME_DIRECTORY"] = runtime
        csock = control_socket(cell)
        argv = [ctx.poolvisor, "run", "--config", cfg, "--log-level", "warning", "--socket", csock]
        res["argv"] = argv
        with open(logfile, "wb") as out:
            t_launch = time.monotonic()
            proc = subprocess.Popen(argv, env=env, cwd=cell, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        ctx.tracker.add(proc)
        wait_for_socket(csock, proc, 30)

        # every worker ready (a probe's first pass), as status tells it
        give_up = time.monotonic() + 60 + 0.05 * n + 3 * period
        while True:
            ready, _, replicas = pool_status(csock, "probe")
            if ready >= n:
                break
            if proc.poll() is not None:
                raise HarnessError(f"{tag}: poolvisor exited with status {proc.returncode} with {ready}/{n} workers ready")
            if time.monotonic() > give_up:
                bad, why = probe_failures(replicas)
                raise HarnessError(f"{tag}: only {ready}/{n} workers ready within {give_up - t_launch:.0f} s"
                                   + (f"; {bad} readiness probe(s) not passing, e.g.: {why}" if bad else ""))
            time.sleep(PROBE_STATUS_GAP_S)
        res["all_ready_s"] = round(time.monotonic() - t_launch, 2)
        time.sleep(ctx.settle)

        # the window
        helpers = long_lived_helpers(proc.pid, ctx.poolvisor)
        res["helpers"] = len(helpers)
        if forks is not None:
            forks.watch([proc.pid] + helpers)
        reports_before = recv.count()
        c_a = target.counts()
        forks_a = machine_forks()
        a = cpu_sample([proc.pid] + helpers)
        ta = cpu_sample([target.proc.pid])
        t_a = now_ns()
        time.sleep(window)
        b = cpu_sample([proc.pid] + helpers)
        tb = cpu_sample([target.proc.pid])
        forks_b = machine_forks()
        c_b = target.counts()
        t_b = now_ns()
        seconds = (t_b - t_a) / 1e9
        hz = os.sysconf("SC_CLK_TCK")
        if proc.poll() is not None:
            raise HarnessError(f"{tag}: poolvisor exited with status {proc.returncode} during the window")
        if proc.pid not in b:
            raise HarnessError(f"{tag}: poolvisor's CPU could not be read at the end of the window")
        _, main_ns, _ = cpu_delta({proc.pid: a[proc.pid]}, {proc.pid: b[proc.pid]})
        ticks, run_ns, ctx_sw = cpu_delta(a, b)
        res["window_s"] = seconds
        res["cpu_ms_per_s"] = run_ns / 1e6 / seconds
        res["cpu_percent"] = run_ns / 1e9 / seconds * 100
        res["cpu_ticks_percent"] = ticks / hz / seconds * 100
        res["cpu_main_percent"] = main_ns / 1e9 / seconds * 100
        res["cpu_helpers_percent"] = (run_ns - main_ns) / 1e9 / seconds * 100
        res["ctxsw_per_s"] = ctx_sw / seconds
        _, t_ns, _ = cpu_delta(ta, tb)
        res["target_cpu_percent"] = t_ns / 1e9 / seconds * 100
        answered = {k: c_b[k] - c_a[k] for k in ("http", "tcp", "other", "accepted")}
        res["target_answered"] = answered
        res["machine_forks"] = forks_b - forks_a
        res["machine_forks_per_s"] = res["machine_forks"] / seconds
        res["poolvisor_forks"] = None if forks is None else forks.count(t_a, t_b)
        if variant == "exec":
            # one process per exec probe (no worker restarted: checked below)
            if res["poolvisor_forks"] is not None:
                probes = res["poolvisor_forks"]
                res["exec_probes_counted_by"] = "poolvisor's forks (proc connector)"
            else:
                probes = res["machine_forks"]
                res["exec_probes_counted_by"] = "processes created machine-wide (/proc/stat)"
        elif variant == "none":
            probes = answered["accepted"]
        else:
            probes = answered["http" if variant == "http_get" else "tcp"]
        res["probes"] = probes
        res["probes_per_s"] = probes / seconds
        res["expected_per_s"] = 0.0 if variant == "none" else n / period
        if probes > 0:
            res["cpu_us_per_probe"] = run_ns / 1e3 / probes
        res["workers_restarted"] = recv.count() - reports_before

        # after the window
        fp = footprint([proc.pid] + [h for h in helpers if not exited(h)])
        res["rss_kib"] = fp["rss_kib"]
        res["hwm_kib"] = fp["hwm_kib"]
        res["fds"] = fp["fds"]
        res["threads"] = fp["threads"]
        ready, _, replicas = pool_status(csock, "probe")
        res["ready_at_end"] = ready
        res["probes_not_passing_at_end"], why = probe_failures(replicas)
        if why:
            res["probe_failure_example"] = why
        res["target_open_at_end"] = c_b["open"]
        why = stop_quietly(proc)
        if why:
            res["stop_problem"] = why
        res["ok"] = True
    except (HarnessError, OSError, ValueError, KeyError) as e:
        res["error"] = str(e) if isinstance(e, HarnessError) else f"{tag}: {type(e).__name__}: {e}"
    finally:
        if proc is not None:
            left = ctx.tracker.sweep(proc)
            if left:
                res["ok"] = False
                res.setdefault("error", f"{tag}: could not kill pids {left}")
        recv.close()
        shutil.rmtree(cell, ignore_errors=True)
        res["duration_s"] = round(time.monotonic() - t_cell, 1)
    if res.get("error"):
        t = tail(logfile)
        if t:
            res["error_log_tail"] = t
        log(f"FAILED {res['error']}")
    else:
        log(f"{tag}: {res['probes_per_s']:.1f} probes/s (expected {res['expected_per_s']:g}), poolvisor CPU "
            f"{res['cpu_percent']:.3f} % ({res['cpu_ticks_percent']:.2f} % by utime+stime ticks), "
            + (f"{res['cpu_us_per_probe']:.0f} µs/probe, " if res.get("cpu_us_per_probe") is not None else "")
            + f"RSS {res['rss_kib'] / 1024:.1f} MiB, target CPU {res['target_cpu_percent']:.2f} %, "
            f"{'?' if res['poolvisor_forks'] is None else res['poolvisor_forks']} processes created by poolvisor, "
            f"{res['machine_forks']} machine-wide [{res['duration_s']} s]")
    return res


def measure_probe_cost(ctx, n, period, window):
    """Every variant in PROBE_VARIANTS with one target server; returns their results (a row that could not be
    measured says why, and the others are measured all the same)."""
    target, why = None, None
    try:
        target = ProbeTarget(ctx, os.path.join(ctx.logdir, "probe-target.log"))
        log(f"probe target server on 127.0.0.1:{target.port}; N={n}, period {period:g} s, window {window:g} s")
    except (HarnessError, OSError, ValueError) as e:
        why = f"the probe target server did not start: {e}"
    try:
        forks = ForkWatch()
    except OSError as e:
        forks = None
        log(f"warning: no process events connector ({e}): the exec probes are counted as every process created "
            f"on the machine in the window")
    results = []
    try:
        for variant in PROBE_VARIANTS:
            if why is None and target.proc.poll() is not None:
                why = f"the probe target server exited with status {target.proc.returncode}"
            if why is not None:
                results.append({"contender": "poolvisor", "kind": "probe-cost", "probe": variant, "n": n,
                                "period_s": period if variant != "none" else None, "ok": False, "error": why})
                log(f"FAILED probe cost ({variant}): {why}")
                continue
            results.append(measure_probe_variant(ctx, variant, target, forks, n, period, window))
            time.sleep(0.3)
    finally:
        if forks is not None:
            forks.close()
        if target is not None:
            target.close()
            ctx.tracker.sweep(target.proc)
    return results


def probe_cost_table(results):
    """One row per variant, with its check: the baseline's CPU against the idle target; a probe's rate
    against N / period_seconds."""
    rows = []
    for r in results:
        row = {"probe": r["probe"], "label": PROBE_LABELS[r["probe"]], "n": r["n"], "period_s": r.get("period_s"),
               "probes_per_s": r.get("probes_per_s"), "expected_per_s": r.get("expected_per_s"),
               "cpu_percent": r.get("cpu_percent"), "cpu_ms_per_s": r.get("cpu_ms_per_s"),
               "cpu_us_per_probe": r.get("cpu_us_per_probe"), "rss_kib": r.get("rss_kib"),
               "target_cpu_percent": r.get("target_cpu_percent") if r["probe"] != "exec" else None,
               "error": r.get("error")}
        if r["probe"] == "none":
            row["check"] = f"poolvisor CPU ≤ {PROBE_BASELINE_TARGET_MS_PER_S} ms/s"
            v = r.get("cpu_ms_per_s")
            row["check_met"] = None if v is None else v <= PROBE_BASELINE_TARGET_MS_PER_S
        else:
            row["check"] = f"probes/s within {PROBE_RATE_TOLERANCE * 100:.0f} % of N / period"
            v, e = r.get("probes_per_s"), r.get("expected_per_s")
            row["check_met"] = None if v is None or not e else abs(v - e) <= PROBE_RATE_TOLERANCE * e
        rows.append(row)
    return rows


def fmt_percent(v):
    if v is None:
        return "—"
    return f"{v:.3f}" if v < 1 else f"{v:.2f}"


def probe_cost_markdown(rows):
    out = ["| readiness probe | N | period (s) | probes/s (expected) | poolvisor CPU (%) | CPU per probe (µs) "
           "| poolvisor RSS (MiB) | target server CPU (%) | check |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        period = "—" if r["period_s"] is None else f"{r['period_s']:g}"
        if r.get("error"):
            msg = re.sub(r"/tmp/poolvisor-bench[.-][A-Za-z0-9_]+", "$TMP", r["error"])
            msg = (msg if len(msg) <= 160 else msg[:157] + "…").replace("|", "/").replace("\n", " ")
            out.append(f"| {r['label']} | {r['n']} | {period} | ✗ failed: {msg} | | | | | |")
            continue
        rate = f"{r['probes_per_s']:.1f}{' †' if r['probe'] == 'exec' else ''} ({r['expected_per_s']:g})"
        per = "—" if r["cpu_us_per_probe"] is None else f"{r['cpu_us_per_probe']:.0f}"
        met = r.get("check_met")
        check = ("✓ " if met else "✗ " if met is not None else "? ") + r["check"]
        out.append(f"| {r['label']} | {r['n']} | {period} | {rate} | {fmt_percent(r['cpu_percent'])} | {per} "
                   f"| {r['rss_kib'] / 1024:.1f} | {fmt_percent(r['target_cpu_percent'])} | {check} |")
    return "\n".join(out)


def probe_cost_notes(results):
    notes = []
    for r in results:
        what = f"probe cost, {PROBE_LABELS[r['probe']]}".replace("`", "")
        if r.get("error"):
            notes.append(f"**Failed ({what}):** {r['error']}")
            continue
        if r.get("workers_restarted"):
            notes.append(f"{what}: {r['workers_restarted']} worker report(s) during the window (a worker restarted).")
        if r.get("ready_at_end", r["n"]) < r["n"] or r.get("probes_not_passing_at_end"):
            notes.append(f"**{what}: {r.get('ready_at_end')}/{r['n']} workers ready after the window, "
                         f"{r.get('probes_not_passing_at_end', 0)} readiness probe(s) not passing"
                         + (f" (e.g. {r['probe_failure_example']})" if r.get("probe_failure_example") else "") + ".**")
        if r.get("target_answered", {}).get("other"):
            notes.append(f"{what}: the target server got {r['target_answered']['other']} request(s) that were not a "
                         f"probe's GET /healthz.")
        if r["probe"] == "none" and r.get("target_answered", {}).get("accepted"):
            notes.append(f"{what}: the target server accepted {r['target_answered']['accepted']} connection(s) in the "
                         f"baseline window, where nothing probes.")
        if r["probe"] != "exec" and r.get("poolvisor_forks"):
            notes.append(f"**{what}: poolvisor created {r['poolvisor_forks']} process(es) during the window, where it "
                         f"should create none.**")
        if r["probe"] == "exec" and r.get("poolvisor_forks") is None:
            notes.append(f"{what}: the exec probes are counted as the processes created machine-wide in the window "
                         f"({r['machine_forks']}): the kernel's process events connector was not available (root "
                         f"only), so other load counts too.")
        if r.get("stop_problem"):
            notes.append(f"{what}: stopping poolvisor: {r['stop_problem']}.")
    return notes


def probe_cost_data(ctx, args, facts, results, mode):
    cfg = ctx.probe_cfg
    data = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "harness": args.harness_cmd,
        "mode": mode,
        "machine": {k: facts[k] for k in ("cpu_model", "cores", "kernel", "poolvisor_commit", "poolvisor_worktree_dirty",
                                          "poolvisor_binary_sha256") if k in facts},
        "config": {"n": cfg["n"], "period_s": cfg["period"], "window_s": cfg["window"], "timeout_s": PROBE_TIMEOUT_S,
                   "settle_s": ctx.settle, "variants": list(PROBE_VARIANTS), "exec": [PROBE_EXEC],
                   "rate_tolerance": PROBE_RATE_TOLERANCE, "baseline_target_ms_per_s": PROBE_BASELINE_TARGET_MS_PER_S},
        "pools_toml": probe_pools_toml("http_get", "$TMP/bin/bench-worker", "N", "$TMP/<cell>/bench.sock", "PORT",
                                       cfg["period"]),
        "results": results,
        "table": probe_cost_table(results),
        "notes": probe_cost_notes(results),
    }
    if facts.get("poolvisor_binary_given"):
        data["machine"]["poolvisor_binary_given"] = facts["poolvisor_binary_given"]
    return data


def probe_cost_section(pc):
    """The probe-cost block: a heading, where it comes from, the table, how each number is taken, notes."""
    cfg, m = pc["config"], pc["machine"]
    n, period, window = cfg["n"], cfg["period_s"], cfg["window_s"]
    if m.get("poolvisor_binary_given"):
        label = m["poolvisor_commit"]
        binary = "a binary given with --poolvisor-bin" + ("" if label.startswith("unknown") else f" ({label})")
    else:
        binary = f"commit `{m['poolvisor_commit'][:12]}`{' + uncommitted changes' if m.get('poolvisor_worktree_dirty') else ''}"
    lines = [
        "### Readiness probes: what they cost poolvisor", "",
        f"Generated by `{pc['harness']}` on {pc['date']} ({pc['mode']} run; poolvisor {binary}, binary sha256 "
        f"`{m['poolvisor_binary_sha256'][:16]}…`; {m['cpu_model']}, {m['cores']} cores, kernel {m['kernel']}; raw numbers "
        f"under `probe_cost` in `BENCHMARKS.json`).", "",
        probe_cost_markdown(pc["table"]), "",
        f"- poolvisor runs one pool of N = {n} bench workers (`scripts/bench-worker.c`, which sleeps) with a "
        f"`[pools.probe.readiness_probe]` of each kind, `period_seconds = {period:g}`, `timeout_seconds = {cfg['timeout_s']}`, "
        f"so N / period = {n / period:g} probes/s; the baseline is the same pool without a probe. Every `http_get` and "
        f"`tcp_socket` probe goes to one target server on 127.0.0.1 (`scripts/bench-probe-target.py`: Python, one "
        f"selectors loop in a process of its own), which answers `GET /healthz` with 200 and counts what it answered.",
        f"- Each row: poolvisor is started, the harness asks status every {PROBE_STATUS_GAP_S:g} s until the pool's `ready` "
        f"is N, waits {cfg['settle_s']:g} s more, then measures over a window of {window:g} s ({window / period:g} periods: "
        f"each worker is probed once per period, so a window of whole periods sees the same count whatever its phase). "
        f"**probes/s**: what the target server answered in the window (HTTP 200s for `http_get`, connections closed "
        f"without a byte for `tcp_socket`); † for `exec`, the processes poolvisor created in the window (one per probe; "
        f"from the kernel's process events connector, which gives each fork's parent and time; the other rows' count, "
        f"0, is in the JSON as `poolvisor_forks`).",
        "- **poolvisor CPU**: on-CPU time of the supervisor (all threads, /proc/PID/task/*/schedstat) and of its spawn "
        "server (which starts exec probes once poolvisor holds 512 output streams), never the workers' or the probes' "
        "own, over the window, as a percentage of one CPU; utime+stime (10 ms ticks) is in the JSON "
        "(`cpu_ticks_percent`), and so is the split between the two processes. **CPU per probe**: that CPU time "
        "divided by the probes in the window. **RSS**: as in the main table, after the window. **target server CPU**: "
        f"its own on-CPU time over the window. The baseline's check is the idle CPU target of the main table "
        f"(≤ {PROBE_BASELINE_TARGET_MS_PER_S} ms/s); a probe row's is that the probes happened at N / period "
        f"(within {PROBE_RATE_TOLERANCE * 100:.0f} %).",
        "",
        "<details><summary>pools file (the http_get row; N, paths and the port filled in per run)</summary>",
        "",
        "```toml",
        pc["pools_toml"].rstrip(),
        "```",
        "",
        "</details>",
    ]
    if pc["notes"]:
        lines += ["", "Notes from this run:", ""]
        lines += ["- " + re.sub(r"/tmp/poolvisor-bench[.-][A-Za-z0-9_]+", "$TMP", x) for x in pc["notes"]]
    return lines


def write_markdown_block(path, begin, end, generated, after=(END_MARK,)):
    """Puts `generated` between `begin` and `end` in the file at `path`, keeping everything else: in place of the
    block if it is there, else right after the first of the `after` markers found, else at the end."""
    block = f"{begin}\n{generated}\n{end}"
    text = read_text(path)
    if text is None:
        text = f"# poolvisor benchmarks\n\n{block}\n"
    else:
        b, e = text.find(begin), text.find(end)
        mark = next((m for m in after if m in text), None)
        if b != -1 and e != -1 and e > b:
            text = text[:b] + block + text[e + len(end):]
        elif mark is not None:
            at = text.find(mark) + len(mark)
            text = text[:at] + "\n\n" + block + text[at:]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_json_key(path, key, value):
    """Sets `key` in the BENCHMARKS.json at `path` (created if missing), keeping the rest."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        data = {"schema": 1}
    data[key] = value
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------------
# Metrics cost: poolvisor's GET /metrics ([supervisor] metrics_listen), poolvisor only, N-independent

METRICS_DEFAULTS = {"full": {"n": 1000, "spaced": 5}, "quick": {"n": 100, "spaced": 3}}
METRICS_SCRAPES = 20              # scrapes in a row after the first
# The spaced scrapes come this long after the previous answer: past poolvisor's reuse of a worker's /proc reading
# (1 s, ProcessUsageReader), so that each reads every worker afresh, as every scrape at Prometheus' interval does.
METRICS_SPACED_GAP_S = 1.2
METRICS_SCRAPE_TARGET_MS = 10.0   # the issue's target for a scrape at N = 1000 (informational)
METRICS_IDLE_TARGET_MS_PER_S = 0.05   # the idle CPU target of the main table
METRICS_STATUS_GAP_S = 0.2        # between status requests while waiting for every worker to be ready
METRICS_BEGIN_MARK = "<!-- bench:metrics:begin -->"
METRICS_END_MARK = "<!-- bench:metrics:end -->"
METRICS_VARIANTS = ("off", "on")

# The exposition parsed with prometheus_client, in a process of its own: the harness keeps to the standard library,
# and the interpreter that runs it (a pyenv one, say) need not be the one that has the Debian package.
PROM_PARSE_SCRIPT = r"""
import json, sys
from prometheus_client.parser import text_string_to_metric_families
try:
    from importlib.metadata import version
    v = version("prometheus_client")
except Exception:
    v = "unknown"
families, per_family, worker = 0, {}, 0
for family in text_string_to_metric_families(sys.stdin.read()):
    families += 1
    per_family[family.name] = per_family.get(family.name, 0) + len(family.samples)
    worker += sum(1 for s in family.samples if "replica" in s.labels)
print(json.dumps({"version": v, "families": families, "samples": sum(per_family.values()),
                  "worker_samples": worker, "samples_per_family": per_family}))
"""


def metrics_pools_toml(worker, n, sock, listen):
    """The main table's pools file, with `metrics_listen` in [supervisor] when `listen` is given."""
    text = POOLS_TOML.format(drain=DRAIN_SECONDS, worker=worker, n=n, sock=sock)
    if listen is None:
        return text
    head = f"drain_seconds = {DRAIN_SECONDS}\n"
    return text.replace(head, head + f'metrics_listen = "{listen}"\n', 1)


def free_loopback_port():
    """A TCP port on 127.0.0.1 that nothing listens on now (the kernel's choice for an ephemeral bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port, timeout=30):
    """One GET /metrics over a new connection: (ms from connect to EOF, the body). An answer other than a 200 with
    as many bytes as its Content-Length is a HarnessError."""
    request = (f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/plain\r\n"
               f"Connection: close\r\n\r\n").encode()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        t0 = now_ns()
        s.connect(("127.0.0.1", port))
        s.sendall(request)
        chunks = []
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        t1 = now_ns()
    finally:
        s.close()
    data = b"".join(chunks)
    head, sep, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].decode(errors="replace")
    if not sep:
        raise HarnessError(f"GET /metrics: no complete answer ({len(data)} bytes: {data[:120]!r})")
    if not status.startswith("HTTP/1.1 200 "):
        raise HarnessError(f"GET /metrics answered {status!r}: {body[:200].decode(errors='replace')}")
    length = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
    if length is None or int(length.group(1)) != len(body):
        raise HarnessError(f"GET /metrics: Content-Length {length.group(1).decode() if length else 'missing'}, "
                           f"{len(body)} bytes of body")
    return (t1 - t0) / 1e6, body


def prometheus_parser_python():
    """An interpreter that can import prometheus_client's parser (this one, else Debian's /usr/bin/python3, where
    python3-prometheus-client puts it), or None."""
    for exe in dict.fromkeys([sys.executable, "/usr/bin/python3"]):
        if not exe or not os.access(exe, os.X_OK):
            continue
        try:
            p = subprocess.run([exe, "-c", "import prometheus_client.parser"], capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            continue
        if p.returncode == 0:
            return exe
    return None


def parse_exposition(python, body):
    """prometheus_client's reading of an exposition: {"families", "samples", "worker_samples" (those with a replica
    label), "samples_per_family", "version", "python"}. A parse error is a HarnessError."""
    try:
        p = subprocess.run([python, "-c", PROM_PARSE_SCRIPT], input=body, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as e:
        raise HarnessError(f"prometheus_client could not be run ({python}): {e}")
    if p.returncode != 0:
        why = p.stderr.decode(errors="replace").strip().splitlines()
        raise HarnessError(f"prometheus_client could not parse the exposition ({len(body)} bytes): "
                           f"{why[-1] if why else f'exit status {p.returncode}'}")
    out = json.loads(p.stdout)
    out["python"] = python
    return out


def poolvisor_cpu_ns(pid):
    """On-CPU nanoseconds of every live thread of `pid` so far."""
    s = cpu_sample([pid]).get(pid)
    return None if s is None else sum(r for r, _ in s["threads"].values())


def timed_scrapes(proc, port, count, gap=0.0):
    """`count` scrapes, each `gap` s after the previous answer: their round trips (ms), poolvisor's CPU time for
    them all (ms; the supervisor's threads, measured around each scrape so that the gaps count for nothing) and the
    last body."""
    samples, cpu_ns, body = [], 0, b""
    for i in range(count):
        if gap and i:
            time.sleep(gap)
        a = poolvisor_cpu_ns(proc.pid)
        ms, body = scrape(port)
        b = poolvisor_cpu_ns(proc.pid)
        if a is None or b is None:
            raise HarnessError(f"poolvisor is gone (status {proc.poll()}) after scrape {i + 1}")
        samples.append(ms)
        cpu_ns += b - a
    return samples, cpu_ns / 1e6, body


def launch_poolvisor(ctx, cell, logfile, pools_toml, log_level, res):
    """poolvisor on `pools_toml` (written to cell/pools.toml) with its control socket and runtime directory in the
    cell, its output to `logfile`, tracked; res["argv"] says how. Returns (process, control socket, launch time)."""
    cfg = os.path.join(cell, "pools.toml")
    with open(cfg, "w") as f:
        f.write(pools_toml)
    runtime = os.path.join(cell, "runtime")
    os.makedirs(runtime)
    env = base_env()
    env["RUNTIME_DIRECTORY"] = runtime
    csock = control_socket(cell)
    argv = [ctx.poolvisor, "run", "--config", cfg, "--log-level", log_level, "--socket", csock]
    res["argv"] = argv
    with open(logfile, "wb") as out:
        t_launch = time.monotonic()
        proc = subprocess.Popen(argv, env=env, cwd=cell, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    ctx.tracker.add(proc)
    return proc, csock, t_launch


def wait_all_reported_and_ready(tag, proc, recv, csock, n, t_launch):
    """Every one of the n workers of pool `bench` up (its report), then ready as status tells it; HarnessError if
    poolvisor exits or 60 s + 50 ms per worker pass first."""
    give_up = t_launch + 60 + 0.05 * n
    while not recv.wait_distinct(n, 0.25):
        if proc.poll() is not None:
            raise HarnessError(f"{tag}: poolvisor exited with status {proc.returncode} after "
                               f"{recv.distinct()}/{n} workers had reported")
        if time.monotonic() > give_up:
            raise HarnessError(f"{tag}: only {recv.distinct()}/{n} workers reported within {give_up - t_launch:.0f} s")
    wait_for_socket(csock, proc, max(1.0, give_up - time.monotonic()))
    while True:
        ready, _, _ = pool_status(csock, "bench")
        if ready >= n:
            return
        if proc.poll() is not None:
            raise HarnessError(f"{tag}: poolvisor exited with status {proc.returncode} with {ready}/{n} workers ready")
        if time.monotonic() > give_up:
            raise HarnessError(f"{tag}: only {ready}/{n} workers ready within {give_up - t_launch:.0f} s")
        time.sleep(METRICS_STATUS_GAP_S)


def measure_metrics_variant(ctx, variant, n, spaced, python):
    """poolvisor with n bench workers, without metrics_listen (off) or with it on a free loopback port (on). Once
    status says every worker is ready (and ctx.settle later): the idle window with nobody scraping, then the
    supervisor's footprint. With metrics on, then: the first scrape (the registry's series made), METRICS_SCRAPES in
    a row, `spaced` more each METRICS_SPACED_GAP_S after the previous one (a fresh /proc reading each), the footprint
    again, the last body parsed with prometheus_client (`python`, or not at all when None), and a second idle window
    (series made, nobody scraping)."""
    tag = f"poolvisor-metrics-{variant}-n{n}"
    cell = os.path.join(ctx.tmp, tag)
    os.makedirs(cell)
    sock = os.path.join(cell, "bench.sock")
    logfile = os.path.join(ctx.logdir, f"{tag}.log")
    res = {"contender": "poolvisor", "kind": "metrics-cost", "metrics": variant, "n": n, "ok": False}
    recv = Receiver(sock)
    proc = None
    t_cell = time.monotonic()
    try:
        port = free_loopback_port() if variant == "on" else None
        listen = None if port is None else f"127.0.0.1:{port}"
        res["metrics_listen"] = listen
        proc, csock, t_launch = launch_poolvisor(ctx, cell, logfile, metrics_pools_toml(ctx.worker, n, sock, listen),
                                                 "warning", res)
        wait_all_reported_and_ready(tag, proc, recv, csock, n, t_launch)
        res["all_ready_s"] = round(time.monotonic() - t_launch, 2)
        time.sleep(ctx.settle)

        # nobody scraping (with metrics on: nobody has yet)
        sup = supervising_pids(proc.pid, ctx.worker)
        reports = recv.count()
        res["idle"] = idle_window(sup, ctx.idle)
        if proc.poll() is not None:
            raise HarnessError(f"{tag}: poolvisor exited with status {proc.returncode} during the idle window")
        res["footprint"] = footprint(supervising_pids(proc.pid, ctx.worker))
        res["rss_kib"] = res["footprint"]["rss_kib"]

        if variant == "on":
            ms, cpu_ms, body = timed_scrapes(proc, port, 1)
            res["first_scrape_ms"], res["first_scrape_cpu_ms"] = ms[0], cpu_ms
            res["first_body_bytes"] = len(body)
            samples, cpu_ms, body = timed_scrapes(proc, port, METRICS_SCRAPES)
            res["scrape_samples_ms"] = samples
            res["scrape_p50_ms"] = statistics.median(samples)
            res["scrape_p95_ms"] = percentile(samples, 95)
            res["scrape_max_ms"] = max(samples)
            res["scrape_cpu_ms_mean"] = cpu_ms / len(samples)
            res["body_bytes"] = len(body)
            if spaced:
                samples, cpu_ms, body = timed_scrapes(proc, port, spaced, gap=METRICS_SPACED_GAP_S)
                res["spaced_samples_ms"] = samples
                res["spaced_p50_ms"] = statistics.median(samples)
                res["spaced_max_ms"] = max(samples)
                res["spaced_cpu_ms_mean"] = cpu_ms / len(samples)
            res["scrapes"] = 1 + METRICS_SCRAPES + spaced
            res["footprint_after_scrapes"] = footprint(supervising_pids(proc.pid, ctx.worker))
            res["rss_after_scrapes_kib"] = res["footprint_after_scrapes"]["rss_kib"]
            res["rss_scrapes_growth_kib"] = res["rss_after_scrapes_kib"] - res["rss_kib"]
            if python is not None:
                parsed = parse_exposition(python, body)
                res["parsed"] = parsed
                ready_rows = parsed["samples_per_family"].get("poolvisor_worker_ready")
                res["parsed_worker_ready_samples"] = ready_rows
                if ready_rows != n:
                    res["parse_problem"] = (f"the exposition has {ready_rows} poolvisor_worker_ready sample(s) for "
                                            f"{n} workers")
            res["idle_after_scrapes"] = idle_window(supervising_pids(proc.pid, ctx.worker), ctx.idle)
        res["workers_restarted"] = recv.count() - reports

        ready, _, _ = pool_status(csock, "bench")
        res["ready_at_end"] = ready
        why = stop_quietly(proc)
        if why:
            res["stop_problem"] = why
        res["ok"] = True
    except (HarnessError, OSError, ValueError, KeyError) as e:
        res["error"] = str(e) if isinstance(e, HarnessError) else f"{tag}: {type(e).__name__}: {e}"
    finally:
        if proc is not None:
            left = ctx.tracker.sweep(proc)
            if left:
                res["ok"] = False
                res.setdefault("error", f"{tag}: could not kill pids {left}")
        recv.close()
        shutil.rmtree(cell, ignore_errors=True)
        res["duration_s"] = round(time.monotonic() - t_cell, 1)
    if res.get("error"):
        t = tail(logfile)
        if t:
            res["error_log_tail"] = t
        log(f"FAILED {res['error']}")
    else:
        idle = res["idle"]
        text = (f"{tag}: idle {idle['idle_cpu_ms_per_s']:.3f} ms/s, {idle['idle_ctxsw']} context switches in "
                f"{idle['idle_window_s']:.1f} s, RSS {res['rss_kib'] / 1024:.2f} MiB")
        if variant == "on":
            text += (f"; first scrape {res['first_scrape_ms']:.1f} ms, {METRICS_SCRAPES} in a row p50 "
                     f"{res['scrape_p50_ms']:.2f} / p95 {res['scrape_p95_ms']:.2f} / max {res['scrape_max_ms']:.2f} ms"
                     + (f", spaced p50 {res['spaced_p50_ms']:.2f} ms" if spaced else "")
                     + f", {res['body_bytes']} bytes; RSS after {res['rss_after_scrapes_kib'] / 1024:.2f} MiB"
                     + (f"; {res['parsed']['samples']} samples parsed" if res.get("parsed") else "")
                     + f"; idle after {res['idle_after_scrapes']['idle_cpu_ms_per_s']:.3f} ms/s "
                     f"({res['idle_after_scrapes']['idle_ctxsw']} cs)")
        log(text + f" [{res['duration_s']} s]")
    return res


def measure_metrics_cost(ctx, n, spaced):
    """Both variants, off first; returns their results (a row that could not be measured says why)."""
    python = prometheus_parser_python()
    if python is None:
        log("warning: prometheus_client cannot be imported (Debian: python3-prometheus-client): the exposition is not "
            "parsed")
    log(f"metrics cost: N={n}, idle window {ctx.idle:g} s, {METRICS_SCRAPES} scrapes in a row, {spaced} spaced "
        f"{METRICS_SPACED_GAP_S:g} s apart" + (f", parsed with prometheus_client ({python})" if python else ""))
    results = []
    for variant in METRICS_VARIANTS:
        results.append(measure_metrics_variant(ctx, variant, n, spaced, python))
        time.sleep(0.3)
    return results, python


def metrics_idle_table(results):
    """One row per state: metrics off; on, before any scrape; on, after the scrapes. The check: idle CPU within the
    main table's target and, with metrics on, no more context switches than without, give or take one."""
    off = next((r for r in results if r["metrics"] == "off" and r.get("ok")), None)
    rows = []
    for r in results:
        states = [("idle", "rss_kib", "off" if r["metrics"] == "off" else "on, before any scrape")]
        if r["metrics"] == "on":
            states.append(("idle_after_scrapes", "rss_after_scrapes_kib",
                           f"on, after {r.get('scrapes', 'the')} scrapes"))
        for idle_key, rss_key, label in states:
            idle = r.get(idle_key) or {}
            row = {"metrics": r["metrics"], "state": idle_key, "label": label, "n": r["n"],
                   "idle_cpu_ms_per_s": idle.get("idle_cpu_ms_per_s"), "idle_ctxsw": idle.get("idle_ctxsw"),
                   "idle_ctxsw_per_s": idle.get("idle_ctxsw_per_s"), "idle_window_s": idle.get("idle_window_s"),
                   "rss_kib": r.get(rss_key), "error": r.get("error")}
            row["rss_over_off_kib"] = (None if off is None or row["rss_kib"] is None or r["metrics"] == "off"
                                       else row["rss_kib"] - off["rss_kib"])
            cpu, cs = row["idle_cpu_ms_per_s"], row["idle_ctxsw"]
            if r["metrics"] == "off":
                row["check"] = f"idle CPU ≤ {METRICS_IDLE_TARGET_MS_PER_S} ms/s"
                row["check_met"] = None if cpu is None else cpu <= METRICS_IDLE_TARGET_MS_PER_S
            else:
                row["check"] = f"idle CPU ≤ {METRICS_IDLE_TARGET_MS_PER_S} ms/s, context switches ≤ off's + 1"
                row["check_met"] = (None if cpu is None or cs is None or off is None else
                                    cpu <= METRICS_IDLE_TARGET_MS_PER_S and cs <= off["idle"]["idle_ctxsw"] + 1)
            rows.append(row)
    return rows


# (key in the "on" result, label, unit, target text, check(value) -> bool)
METRICS_SCRAPE_ROWS = [
    ("first_scrape_ms", "first scrape (makes every series): round trip", "ms", None, None),
    ("first_scrape_cpu_ms", "first scrape: poolvisor CPU", "ms", None, None),
    ("scrape_p50_ms", f"{METRICS_SCRAPES} scrapes in a row: round trip p50", "ms",
     f"≤ {METRICS_SCRAPE_TARGET_MS:g} ms at N = 1000", lambda v: v <= METRICS_SCRAPE_TARGET_MS),
    ("scrape_p95_ms", f"{METRICS_SCRAPES} scrapes in a row: round trip p95", "ms", None, None),
    ("scrape_max_ms", f"{METRICS_SCRAPES} scrapes in a row: round trip max", "ms", None, None),
    ("scrape_cpu_ms_mean", f"{METRICS_SCRAPES} scrapes in a row: poolvisor CPU per scrape, mean", "ms", None, None),
    ("spaced_p50_ms", f"scrapes {METRICS_SPACED_GAP_S:g} s apart (every worker read afresh): round trip p50", "ms",
     f"≤ {METRICS_SCRAPE_TARGET_MS:g} ms at N = 1000", lambda v: v <= METRICS_SCRAPE_TARGET_MS),
    ("spaced_max_ms", f"scrapes {METRICS_SPACED_GAP_S:g} s apart: round trip max", "ms", None, None),
    ("spaced_cpu_ms_mean", f"scrapes {METRICS_SPACED_GAP_S:g} s apart: poolvisor CPU per scrape, mean", "ms", None, None),
    ("body_bytes", "exposition (body bytes)", "count", None, None),
    ("parsed_samples", "samples parsed by prometheus_client", "count", "parsed, one `poolvisor_worker_ready` per worker",
     None),
    ("parsed_worker_samples", "of which per worker (with a `replica` label)", "count", None, None),
    ("rss_scrapes_growth_kib", "RSS growth, before the first scrape → after the last", "KiB", None, None),
]


def metrics_scrape_table(results):
    on = next((r for r in results if r["metrics"] == "on"), None)
    if on is None:
        return []
    rows = []
    for key, label, unit, target, check in METRICS_SCRAPE_ROWS:
        if key == "parsed_samples":
            v = (on.get("parsed") or {}).get("samples")
        elif key == "parsed_worker_samples":
            v = (on.get("parsed") or {}).get("worker_samples")
        else:
            v = on.get(key)
        if v is None and key.startswith(("spaced", "parsed")) and not on.get("error"):
            continue   # not measured (no spaced scrapes; prometheus_client not importable)
        row = {"metric": key, "label": label, "unit": unit, "n": on["n"], "value": v, "error": on.get("error")}
        if key == "parsed_samples":
            row["target"] = target
            row["target_met"] = None if v is None else on.get("parsed_worker_ready_samples") == on["n"]
        elif target:
            row["target"] = target
            row["target_met"] = None if v is None or on["n"] != TARGET_N else check(v)
        rows.append(row)
    return rows


def metrics_markdown(idle_rows, scrape_rows):
    out = ["| `metrics_listen` | N | idle CPU (ms/s) | wake-ups: context switches (/s) | poolvisor RSS (MiB) | RSS − off (KiB) "
           "| check |",
           "|---|---:|---:|---:|---:|---:|---|"]
    for r in idle_rows:
        if r.get("error") and r["idle_cpu_ms_per_s"] is None:
            msg = re.sub(r"/tmp/poolvisor-bench[.-][A-Za-z0-9_]+", "$TMP", r["error"])
            msg = (msg if len(msg) <= 160 else msg[:157] + "…").replace("|", "/").replace("\n", " ")
            out.append(f"| {r['label']} | {r['n']} | ✗ failed: {msg} | | | | |")
            continue
        met = r.get("check_met")
        check = ("✓ " if met else "✗ " if met is not None else "? ") + r["check"]
        rss = "—" if r["rss_kib"] is None else f"{r['rss_kib'] / 1024:.2f}"
        over = "" if r["rss_over_off_kib"] is None else f"{r['rss_over_off_kib']:+.0f}"
        out.append(f"| {r['label']} | {r['n']} | {r['idle_cpu_ms_per_s']:.3f} | {r['idle_ctxsw_per_s']:.2f} "
                   f"| {rss} | {over} | {check} |")
    if scrape_rows:
        out += ["", "| scrapes (metrics on) | N | poolvisor | target |", "|---|---:|---:|---|"]
        for r in scrape_rows:
            v = r["value"]
            if r["unit"] == "count":
                cell = "—" if v is None else f"{v:.0f}"
            elif r["unit"] == "KiB":
                cell = "—" if v is None else f"{v:+.0f}"
            else:
                cell = fmt(v, r["unit"])
            if v is None and r.get("error"):
                cell = fmt_cell(None, r["unit"], r["error"])
            unit = "" if r["unit"] == "count" else f" ({r['unit']})"
            out.append(f"| {r['label']}{unit} | {r['n']} | {cell} | {target_cell(r)} |")
    return "\n".join(out)


def metrics_cost_notes(results, python):
    notes = []
    for r in results:
        what = f"metrics {r['metrics']}"
        if r.get("error"):
            notes.append(f"**Failed ({what}):** {r['error']}")
            continue
        if r.get("workers_restarted"):
            notes.append(f"{what}: {r['workers_restarted']} worker report(s) after the start (a worker restarted).")
        if r.get("ready_at_end", r["n"]) < r["n"]:
            notes.append(f"**{what}: {r['ready_at_end']}/{r['n']} workers ready at the end.**")
        if r.get("parse_problem"):
            notes.append(f"**{what}: {r['parse_problem']}.**")
        for key in ("idle", "idle_after_scrapes"):
            busy = (r.get(key) or {}).get("system_busy_cpus_idle_window", 0)
            if busy > 0.2:
                notes.append(f"{what}: {busy:.2f} CPUs busy machine-wide during the idle window ({key}): other load.")
        if r.get("stop_problem"):
            notes.append(f"{what}: stopping poolvisor: {r['stop_problem']}.")
    if python is None:
        notes.append("The exposition was not parsed: prometheus_client could not be imported (Debian: "
                     "python3-prometheus-client).")
    return notes


def metrics_cost_data(ctx, args, facts, results, python, mode):
    cfg = ctx.metrics_cfg
    parsed = next((r.get("parsed") for r in results if r.get("parsed")), None)
    data = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "harness": args.harness_cmd,
        "mode": mode,
        "machine": {k: facts[k] for k in ("cpu_model", "cores", "kernel", "poolvisor_commit", "poolvisor_worktree_dirty",
                                          "poolvisor_binary_sha256") if k in facts},
        "config": {"n": cfg["n"], "idle_window_s": ctx.idle, "settle_s": ctx.settle, "scrapes_in_a_row": METRICS_SCRAPES,
                   "spaced_scrapes": cfg["spaced"], "spaced_gap_s": METRICS_SPACED_GAP_S,
                   "scrape_target_ms": METRICS_SCRAPE_TARGET_MS, "idle_target_ms_per_s": METRICS_IDLE_TARGET_MS_PER_S,
                   "parser": None if parsed is None else f"prometheus_client {parsed['version']} ({python})"},
        "pools_toml": metrics_pools_toml("$TMP/bin/bench-worker", "N", "$TMP/<cell>/bench.sock", "127.0.0.1:PORT"),
        "results": results,
        "idle_table": metrics_idle_table(results),
        "scrape_table": metrics_scrape_table(results),
        "notes": metrics_cost_notes(results, python),
    }
    if facts.get("poolvisor_binary_given"):
        data["machine"]["poolvisor_binary_given"] = facts["poolvisor_binary_given"]
    return data


def metrics_cost_section(mc):
    """The metrics block: a heading, where it comes from, the two tables, how each number is taken, notes."""
    cfg, m = mc["config"], mc["machine"]
    if m.get("poolvisor_binary_given"):
        label = m["poolvisor_commit"]
        binary = "a binary given with --poolvisor-bin" + ("" if label.startswith("unknown") else f" ({label})")
    else:
        binary = f"commit `{m['poolvisor_commit'][:12]}`{' + uncommitted changes' if m.get('poolvisor_worktree_dirty') else ''}"
    lines = [
        "### Metrics: what `GET /metrics` costs poolvisor", "",
        f"Generated by `{mc['harness']}` on {mc['date']} ({mc['mode']} run; poolvisor {binary}, binary sha256 "
        f"`{m['poolvisor_binary_sha256'][:16]}…`; {m['cpu_model']}, {m['cores']} cores, kernel {m['kernel']}; raw numbers "
        f"under `metrics_cost` in `BENCHMARKS.json`).", "",
        metrics_markdown(mc["idle_table"], mc["scrape_table"]), "",
        f"- poolvisor runs the main table's pool of N = {cfg['n']} bench workers twice: without `metrics_listen` "
        f"(off) and with `metrics_listen = \"127.0.0.1:PORT\"` on a free loopback port (on). Each time the harness "
        f"waits for the N workers' reports, then asks status every {METRICS_STATUS_GAP_S:g} s until the pool's `ready` "
        f"is N, waits {cfg['settle_s']:g} s more and measures over an idle window of {cfg['idle_window_s']:g} s in "
        f"which nobody scrapes (with metrics on, nobody has yet): **idle CPU** and **context switches** (each one a "
        f"wake-up) as in the main table, of the supervisor and its spawn server; then **RSS** as in the main table.",
        f"- With metrics on, after that window: the **first scrape** (the first poolvisor serves: it makes every series "
        f"of the registry), then {cfg['scrapes_in_a_row']} **in a row** (each sent when the previous one has ended), "
        f"then {cfg['spaced_scrapes']} **{cfg['spaced_gap_s']:g} s apart**: poolvisor reuses a worker's /proc reading "
        f"for 1 s, so scrapes in a row mostly reuse one, and spaced ones (like Prometheus', every 15 s or so) read "
        f"every worker afresh. A round trip is a new TCP connection to 127.0.0.1, `GET /metrics`, the answer read to "
        f"EOF (a 200 whose body has its Content-Length). **poolvisor CPU**: its on-CPU time across each scrape. Then "
        f"**RSS** again (the series' memory), the last body parsed with "
        + (f"{cfg['parser']}: `text_string_to_metric_families` (a parse error fails the block)"
           if cfg["parser"] else "prometheus_client: not in this run, which could not import it")
        + f", and a second idle window (the series made, nobody scraping). The scrape target is the issue's "
        f"({METRICS_SCRAPE_TARGET_MS:g} ms at N = 1000), informational.",
        "",
        "<details><summary>pools file (with metrics on; N, paths and the port filled in per run)</summary>",
        "",
        "```toml",
        mc["pools_toml"].rstrip(),
        "```",
        "",
        "</details>",
    ]
    if mc["notes"]:
        lines += ["", "Notes from this run:", ""]
        lines += ["- " + re.sub(r"/tmp/poolvisor-bench[.-][A-Za-z0-9_]+", "$TMP", x) for x in mc["notes"]]
    return lines


# --------------------------------------------------------------------------------------------------
# In-place upgrade: `poolvisor upgrade --binary PATH` at N workers, poolvisor only

UPGRADE_DEFAULTS = {"full": {"n": 1000, "upgrades": 5}, "quick": {"n": 100, "upgrades": 2}}
UPGRADE_TARGET_MS = 100.0         # the issue's target for handover → taken over at N = 1000 (informational)
UPGRADE_NEXT = "poolvisor-next"   # the second copy of the binary, beside the first in $TMP/bin
UPGRADE_LOG_WAIT_S = 10.0         # after the CLI's exit, for the new image's "took over" line to reach the log
UPGRADE_BEGIN_MARK = "<!-- bench:upgrade:begin -->"
UPGRADE_END_MARK = "<!-- bench:upgrade:end -->"
# The daemon's notice lines (Sources/PoolvisorDaemon/Upgrade.swift): the old image's last, the new image's first.
UPGRADE_HANDED_RE = re.compile(r"upgrade: (\d+) files?, (\d+) workers? and (\d+) KiB of state handed over; exec (.+)$",
                               re.M)
UPGRADE_TOOK_RE = re.compile(r"upgrade: poolvisor (\S+) \(pid (\d+)\) took over from (\S+) in ([\d.]+) (ms|s|min|h) "
                             r"with (\d+) workers?$", re.M)
UPGRADE_CLI_RE = re.compile(r"^poolvisor (\S+) took over, pid (\d+)$")
# Duration.humanReadable (Sources/PoolvisorCore/Instant.swift): whole ms under 1 s, tenths of a second under 2 min,
# then whole minutes, then whole hours.
HUMAN_UNIT_MS = {"ms": 1.0, "s": 1000.0, "min": 60000.0, "h": 3600000.0}


def human_ms(number, unit):
    """A duration as poolvisor logs it ("63 ms", "1.2 s") in milliseconds."""
    return float(number) * HUMAN_UNIT_MS[unit]


def supervisor_and_pool(sock, pool):
    """The `supervisor` object and the pool's object of one raw status request."""
    _, answer = control_request(sock, "status", timeout=60)
    err = status_answer_error(answer)
    if err is not None:
        raise HarnessError(f"status request: {err}")
    body = json.loads(answer)["status"]
    for p in body["pools"]:
        if p["name"] == pool:
            return body["supervisor"], p
    raise HarnessError(f"status shows no pool '{pool}'")


def log_since(path, offset):
    """What the log at `path` has after byte `offset`, as text."""
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def upgrade_one(ctx, proc, recv, csock, logfile, n, i, cur, other, row):
    """Upgrade `i` (1-based) from the copy `cur` to `other`; fills `row`. A CLI that fails, or a poolvisor that is
    gone, is a HarnessError (the sequence ends); a check that does not hold (a worker restarted, a count, the exe)
    is the row's error, and the next upgrade goes on."""
    sup, pool = supervisor_and_pool(csock, "bench")
    status_pids = {r["replica"]: r["pid"] for r in pool["replicas"]}
    restarts = sum(r.get("restarts", 0) for r in pool["replicas"])
    pids = worker_pids(proc.pid, ctx.worker)
    reports = recv.count()
    row["rss_before_kib"] = resident_kib(proc.pid, helper=False)
    row["upgrades_before"] = sup.get("upgrades")
    offset = os.path.getsize(logfile)
    argv = [ctx.poolvisor, "upgrade", "--binary", other, "--socket", csock]
    try:
        ms, p = timed_cli(argv)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"upgrade {i}: `poolvisor upgrade` did not exit within 90 s")
    out = p.stdout.strip().splitlines()
    row["cli_ms"], row["cli_exit"] = ms, p.returncode
    row["cli_last_line"] = out[-1] if out else None
    if p.returncode != 0:
        why = (p.stderr.strip() or p.stdout.strip()).splitlines()
        raise HarnessError(f"upgrade {i} ({os.path.basename(cur)} → {os.path.basename(other)}): `poolvisor upgrade` "
                           f"exited with status {p.returncode}: {why[-1] if why else 'no output'}")

    # the new image's line, and the old one's before it
    give_up = time.monotonic() + UPGRADE_LOG_WAIT_S
    while True:
        text = log_since(logfile, offset)
        took = UPGRADE_TOOK_RE.search(text)
        if took:
            break
        if proc.poll() is not None:
            raise HarnessError(f"upgrade {i}: poolvisor exited with status {proc.returncode} after the upgrade")
        if time.monotonic() > give_up:
            raise HarnessError(f"upgrade {i}: no 'took over' line in the log within {UPGRADE_LOG_WAIT_S:g} s of "
                               f"`poolvisor upgrade`'s exit")
        time.sleep(0.01)
    handed = UPGRADE_HANDED_RE.search(text, 0, took.start())
    row["took_over_text"] = f"{took.group(4)} {took.group(5)}"
    row["took_over_ms"] = human_ms(took.group(4), took.group(5))
    row["took_over_workers"] = int(took.group(6))
    row["version"], row["from_version"] = took.group(1), took.group(3)
    if handed:
        row["handover_files"], row["handover_workers"] = int(handed.group(1)), int(handed.group(2))
        row["state_kib"] = int(handed.group(3))
        row["exec"] = handed.group(4).strip()

    # time for a worker killed by the exec to show as restarted, as after the reloads of the main table
    time.sleep(CONTROL_SETTLE_S)
    if proc.poll() is not None:
        raise HarnessError(f"upgrade {i}: poolvisor exited with status {proc.returncode} after the upgrade")
    sup2, pool2 = supervisor_and_pool(csock, "bench")
    status_pids2 = {r["replica"]: r["pid"] for r in pool2["replicas"]}
    pids2 = worker_pids(proc.pid, ctx.worker)
    row["rss_after_kib"] = resident_kib(proc.pid, helper=False)
    row["new_reports"] = recv.count() - reports
    row["restarts_delta"] = sum(r.get("restarts", 0) for r in pool2["replicas"]) - restarts
    row["pids_changed"] = len(pids - pids2)
    row["status_pids_changed"] = sum(1 for k, v in status_pids.items() if status_pids2.get(k) != v)
    row["workers_restarted"] = max(row["pids_changed"], row["status_pids_changed"], row["new_reports"],
                                   row["restarts_delta"])
    row["workers_after"] = len(pids2)
    row["ready_after"] = pool2["ready"]
    row["upgrades_after"] = sup2.get("upgrades")
    row["supervisor_pid"] = sup2.get("pid")
    exe = exe_of(proc.pid)
    row["exe_after"] = None if exe is None else os.path.basename(exe)

    problems = []
    cli = UPGRADE_CLI_RE.match(row["cli_last_line"] or "")
    if cli is None or int(cli.group(2)) != proc.pid:
        problems.append(f"the CLI's last line is {row['cli_last_line']!r}, not 'poolvisor VERSION took over, pid "
                        f"{proc.pid}'")
    if handed is None:
        problems.append("no 'state handed over' line in the log before the 'took over' one")
    elif row["exec"] != other:
        problems.append(f"the log says exec {row['exec']}, not {other}")
    if row["workers_restarted"]:
        problems.append(f"workers restarted: {row['pids_changed']} worker pid(s) gone, {row['status_pids_changed']} "
                        f"replica pid(s) changed in status, {row['new_reports']} new worker report(s), restarts "
                        f"+{row['restarts_delta']}")
    if len(pids2) != n or row["took_over_workers"] != n:
        problems.append(f"{len(pids2)} workers running after it, the log says {row['took_over_workers']} taken over, "
                        f"not {n}")
    if row["upgrades_after"] != i:
        problems.append(f"status says {row['upgrades_after']} upgrade(s), not {i}")
    if row["supervisor_pid"] != proc.pid:
        problems.append(f"status says pid {row['supervisor_pid']}, not {proc.pid}")
    if exe != other:
        problems.append(f"/proc/{proc.pid}/exe is {exe}, not {other}")
    if problems:
        row["error"] = f"upgrade {i}: " + "; ".join(problems)


def measure_upgrade(ctx, n, upgrades):
    """poolvisor with n bench workers (the main table's pool), every worker reported and status ready == n, then
    ctx.settle later: `upgrades` in-place upgrades in a row, alternating between two copies of the binary, each timed
    (the CLI, launch to exit; the daemon's own handover → taken over) and checked (the same worker pids, no new report,
    status' upgrade count, /proc/PID/exe), VmRSS before and after each; ctx.settle between two."""
    tag = f"poolvisor-upgrade-n{n}"
    cell = os.path.join(ctx.tmp, tag)
    os.makedirs(cell)
    sock = os.path.join(cell, "bench.sock")
    logfile = os.path.join(ctx.logdir, f"{tag}.log")
    res = {"contender": "poolvisor", "kind": "upgrade", "n": n, "upgrades_requested": upgrades, "ok": False,
           "upgrades": []}
    recv = Receiver(sock)
    proc = None
    t_cell = time.monotonic()
    log(f"upgrade: N={n}, {upgrades} upgrade(s) in a row, alternating $TMP/bin/poolvisor and $TMP/bin/{UPGRADE_NEXT}")
    try:
        # the second copy, beside the first: the running image and the next are never the same file
        nxt = os.path.join(os.path.dirname(ctx.poolvisor), UPGRADE_NEXT)
        shutil.copy2(ctx.poolvisor, nxt)
        chk = subprocess.run([nxt, "handover-formats"], capture_output=True, text=True, timeout=60)
        if chk.returncode != 0:
            raise HarnessError(f"{tag}: `poolvisor handover-formats` exited with status {chk.returncode}: this poolvisor "
                               f"cannot upgrade in place")
        res["handover_formats"] = chk.stdout.strip()
        proc, csock, t_launch = launch_poolvisor(ctx, cell, logfile, metrics_pools_toml(ctx.worker, n, sock, None),
                                                 "notice", res)
        wait_all_reported_and_ready(tag, proc, recv, csock, n, t_launch)
        res["start_ms"] = round((time.monotonic() - t_launch) * 1000, 1)
        time.sleep(ctx.settle)
        res["rss_start_kib"] = resident_kib(proc.pid, helper=False)
        reports = recv.count()

        binaries = (ctx.poolvisor, nxt)
        for i in range(1, upgrades + 1):
            cur, other = binaries[(i - 1) % 2], binaries[i % 2]
            row = {"upgrade": i, "from": os.path.basename(cur), "to": os.path.basename(other), "n": n}
            res["upgrades"].append(row)
            try:
                upgrade_one(ctx, proc, recv, csock, logfile, n, i, cur, other, row)
            except HarnessError as e:
                row["error"] = str(e)
                raise
            text = (f"upgrade {i}: {row['from']} → {row['to']}: `poolvisor upgrade` {row['cli_ms']:.1f} ms, took over "
                    f"in {row['took_over_text']}, {row.get('state_kib', '?')} KiB of state, "
                    f"{row['workers_restarted']} worker(s) restarted, RSS {row['rss_before_kib'] / 1024:.2f} → "
                    f"{row['rss_after_kib'] / 1024:.2f} MiB")
            log(text if not row.get("error") else f"{text}; FAILED {row['error']}")
            if i < upgrades:
                time.sleep(ctx.settle)
        res["workers_restarted"] = recv.count() - reports
        ready, _, _ = pool_status(csock, "bench")
        res["ready_at_end"] = ready
        why = stop_quietly(proc)
        if why:
            res["stop_problem"] = why
        res["ok"] = not any(r.get("error") for r in res["upgrades"])
    except (HarnessError, OSError, ValueError, KeyError, subprocess.SubprocessError) as e:
        res["error"] = str(e) if isinstance(e, HarnessError) else f"{tag}: {type(e).__name__}: {e}"
    finally:
        if proc is not None:
            left = ctx.tracker.sweep(proc)
            if left:
                res["ok"] = False
                res.setdefault("error", f"{tag}: could not kill pids {left}")
        recv.close()
        shutil.rmtree(cell, ignore_errors=True)
        res["duration_s"] = round(time.monotonic() - t_cell, 1)
    if res.get("error"):
        t = tail(logfile)
        if t:
            res["error_log_tail"] = t
        log(f"FAILED {res['error']}")
    else:
        took = [r["took_over_ms"] for r in res["upgrades"] if r.get("took_over_ms") is not None]
        log(f"{tag}: {len(res['upgrades'])} upgrade(s), handover → taken over median "
            f"{statistics.median(took):.0f} / max {max(took):.0f} ms [{res['duration_s']} s]")
    return res


def upgrade_table(res):
    """One row per upgrade, as measured."""
    keys = ("upgrade", "from", "to", "n", "cli_ms", "took_over_ms", "took_over_text", "state_kib", "workers_restarted",
            "rss_before_kib", "rss_after_kib", "error")
    return [{k: r.get(k) for k in keys} for r in res.get("upgrades", [])]


def upgrade_summary(res):
    """The summary rows: handover → taken over (median, max) against the issue's target, the CLI's median, RSS over
    the upgrades, and the check that no worker restarted."""
    rows = [r for r in res.get("upgrades", []) if r.get("took_over_ms") is not None]
    n, error = res["n"], res.get("error")
    took = [r["took_over_ms"] for r in rows]
    cli = [r["cli_ms"] for r in rows]
    target = f"≤ {UPGRADE_TARGET_MS:g} ms at N = {TARGET_N}"

    def row(key, label, unit, value, target_text=None, met=None):
        out = {"metric": key, "label": label, "unit": unit, "n": n, "value": value, "error": error}
        if target_text:
            out["target"], out["target_met"] = target_text, met
        return out

    med = statistics.median(took) if took else None
    mx = max(took) if took else None
    out = [
        row("took_over_median_ms", f"handover → taken over: median of {len(took)}", "ms", med, target,
            None if med is None or n != TARGET_N else med <= UPGRADE_TARGET_MS),
        row("took_over_max_ms", f"handover → taken over: max of {len(took)}", "ms", mx, target,
            None if mx is None or n != TARGET_N else mx <= UPGRADE_TARGET_MS),
        row("cli_median_ms", "`poolvisor upgrade`, launch → exit: median", "ms", statistics.median(cli) if cli else None),
        row("rss_growth_kib", "RSS: before the first upgrade → after the last", "KiB",
            None if not rows or res.get("rss_start_kib") is None else rows[-1]["rss_after_kib"] - res["rss_start_kib"]),
    ]
    restarted = None if not rows else sum(r.get("workers_restarted") or 0 for r in rows)
    out.append(row("workers_restarted", f"workers restarted, all {len(rows)} upgrades", "count", restarted,
                   f"no worker restarted (the same {n} pids)", None if restarted is None else restarted == 0))
    return out


def upgrade_markdown(table, summary):
    out = ["| upgrade | N | `poolvisor upgrade` round trip (ms) | handover → taken over (ms) | state (KiB) "
           "| workers restarted | RSS before (MiB) | RSS after (MiB) | check |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in table:
        label = f"{r['upgrade']}: `{r['from']}` → `{r['to']}`"
        check = "✓" if not r.get("error") else "✗ " + fmt_cell(
            None, "ms", re.sub(r"^upgrade \d+( \([^)]*\))?: ", "", r["error"])).removeprefix("✗ failed: ")
        if r.get("cli_ms") is None:
            out.append(f"| {label} | {r['n']} | {check} | | | | | | |")
            continue
        took = "—" if r.get("took_over_ms") is None else f"{r['took_over_ms']:.0f}"
        state = "—" if r.get("state_kib") is None else f"{r['state_kib']}"
        restarted = "—" if r.get("workers_restarted") is None else f"{r['workers_restarted']}"
        rss = ["—" if r.get(k) is None else f"{r[k] / 1024:.2f}" for k in ("rss_before_kib", "rss_after_kib")]
        out.append(f"| {label} | {r['n']} | {fmt(r['cli_ms'], 'ms')} | {took} | {state} | {restarted} | {rss[0]} "
                   f"| {rss[1]} | {check} |")
    if not table and summary and summary[0].get("error"):
        out.append(f"| — | {summary[0]['n']} | {fmt_cell(None, 'ms', summary[0]['error'])} | | | | | | |")
    out += ["", "| summary | N | poolvisor | target |", "|---|---:|---:|---|"]
    for r in summary:
        v = r["value"]
        if r["unit"] == "count":
            cell = "—" if v is None else f"{v:.0f}"
        elif r["unit"] == "KiB":
            cell = "—" if v is None else f"{v:+.0f}"
        else:
            cell = fmt(v, r["unit"])
        if v is None and r.get("error"):
            cell = fmt_cell(None, r["unit"], r["error"])
        unit = "" if r["unit"] == "count" else f" ({r['unit']})"
        out.append(f"| {r['label']}{unit} | {r['n']} | {cell} | {target_cell(r)} |")
    return "\n".join(out)


def upgrade_notes(res):
    notes = []
    if res.get("error"):
        notes.append(f"**Failed:** {res['error']}")
    for r in res.get("upgrades", []):
        if r.get("error") and r["error"] != res.get("error"):
            notes.append(f"**Failed:** {r['error']}")
        if r.get("ready_after") is not None and r["ready_after"] < res["n"]:
            notes.append(f"upgrade {r['upgrade']}: status said {r['ready_after']}/{res['n']} workers ready "
                         f"{CONTROL_SETTLE_S:g} s after it.")
    if res.get("ready_at_end") is not None and res["ready_at_end"] < res["n"]:
        notes.append(f"**{res['ready_at_end']}/{res['n']} workers ready at the end.**")
    if res.get("stop_problem"):
        notes.append(f"stopping poolvisor: {res['stop_problem']}.")
    return notes


def upgrade_data(ctx, args, facts, res, mode):
    cfg = ctx.upgrade_cfg
    data = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "harness": args.harness_cmd,
        "mode": mode,
        "machine": {k: facts[k] for k in ("cpu_model", "cores", "kernel", "poolvisor_commit", "poolvisor_worktree_dirty",
                                          "poolvisor_binary_sha256") if k in facts},
        "config": {"n": cfg["n"], "upgrades": cfg["upgrades"], "settle_s": ctx.settle,
                   "check_settle_s": CONTROL_SETTLE_S, "target_ms": UPGRADE_TARGET_MS, "target_n": TARGET_N,
                   "handover_formats": res.get("handover_formats")},
        "commands": {
            "poolvisor": "RUNTIME_DIRECTORY=$TMP/<cell>/runtime $TMP/bin/poolvisor run --config $TMP/<cell>/pools.toml "
                         "--log-level notice --socket $TMP/<cell>/runtime/control.sock >bench-results/<run>/logs/<cell>.log 2>&1",
            "upgrade": f"$TMP/bin/poolvisor upgrade --binary $TMP/bin/{UPGRADE_NEXT} --socket "
                       f"$TMP/<cell>/runtime/control.sock  # then --binary $TMP/bin/poolvisor, and so on",
        },
        "pools_toml": metrics_pools_toml("$TMP/bin/bench-worker", "N", "$TMP/<cell>/bench.sock", None),
        "result": res,
        "table": upgrade_table(res),
        "summary": upgrade_summary(res),
        "notes": upgrade_notes(res),
    }
    if facts.get("poolvisor_binary_given"):
        data["machine"]["poolvisor_binary_given"] = facts["poolvisor_binary_given"]
    return data


def upgrade_section(ug):
    """The upgrade block: a heading, where it comes from, the two tables, how each number is taken, notes."""
    cfg, m = ug["config"], ug["machine"]
    if m.get("poolvisor_binary_given"):
        label = m["poolvisor_commit"]
        binary = "a binary given with --poolvisor-bin" + ("" if label.startswith("unknown") else f" ({label})")
    else:
        binary = f"commit `{m['poolvisor_commit'][:12]}`{' + uncommitted changes' if m.get('poolvisor_worktree_dirty') else ''}"
    lines = [
        "### In-place upgrade: `poolvisor upgrade` at N workers", "",
        f"Generated by `{ug['harness']}` on {ug['date']} ({ug['mode']} run; poolvisor {binary}, binary sha256 "
        f"`{m['poolvisor_binary_sha256'][:16]}…`; {m['cpu_model']}, {m['cores']} cores, kernel {m['kernel']}; raw numbers "
        f"under `upgrade` in `BENCHMARKS.json`).", "",
        upgrade_markdown(ug["table"], ug["summary"]), "",
        f"- poolvisor runs the main table's pool of N = {cfg['n']} bench workers, with `--log-level notice` (the level "
        f"of its upgrade lines). The harness waits for the N workers' reports, then asks status every "
        f"{METRICS_STATUS_GAP_S:g} s until the pool's `ready` is N and waits {cfg['settle_s']:g} s more. Then "
        f"{cfg['upgrades']} upgrades in a row, {cfg['settle_s']:g} s apart, alternating between two copies of the same "
        f"binary, `$TMP/bin/poolvisor` and `$TMP/bin/{UPGRADE_NEXT}`: the running image's file is never the next one.",
        "- **`poolvisor upgrade` round trip**: `poolvisor upgrade --binary OTHER --socket SOCK`, from the launch of the "
        "client to its exit, which must be status 0. It includes the client's own start, the running image's check of "
        "OTHER (`OTHER handover-formats`, run beside its loop), the handover, the exec and the new image's start, up to "
        "its first answer to status.",
        "- **handover → taken over**: the new image's own figure, from the log line `upgrade: poolvisor VERSION (pid P) "
        "took over from VERSION in X with M workers`: from the old image starting the handover (after the check) to the "
        "new one having adopted every file it was handed, just before it tells systemd READY=1. poolvisor logs it to the "
        "millisecond (to the tenth of a second from 1 s). **state**: the size of the handover the old image logs just "
        "before its exec (`upgrade: F files, M workers and K KiB of state handed over; exec OTHER`).",
        f"- **workers restarted**: {CONTROL_SETTLE_S:g} s after the client's exit, the largest of: the worker pids "
        "below poolvisor (from /proc) gone since before the upgrade, the replicas whose pid changed in status, the new "
        "reports the harness received (a bench worker reports once, when it starts) and the growth of the replicas' "
        "`restarts` in status. The **check** also wants the client's last line `poolvisor VERSION took over, pid PID` "
        "with poolvisor's pid, status' `supervisor.upgrades` equal to the upgrades so far and its `pid` unchanged, "
        "`/proc/PID/exe` on OTHER, and the N workers running; a check that fails is the row's error and fails the run, "
        "as does a client that exits non-zero (which ends the sequence).",
        "- **RSS**: VmRSS of the supervisor (not its spawn server or guardian), just before the client's launch and "
        f"after the checks. The target is the issue's ({UPGRADE_TARGET_MS:g} ms from handover to taken over at "
        f"N = {TARGET_N}), informational.",
        "",
        "<details><summary>pools file (N and paths filled in per run)</summary>",
        "",
        "```toml",
        ug["pools_toml"].rstrip(),
        "```",
        "",
        "</details>",
    ]
    if ug["notes"]:
        lines += ["", "Notes from this run:", ""]
        lines += ["- " + re.sub(r"/tmp/poolvisor-bench[.-][A-Za-z0-9_]+", "$TMP", x) for x in ug["notes"]]
    return lines


# --------------------------------------------------------------------------------------------------
# Large mode: N = 10,000, poolvisor and the floor

LARGE_N = 10000
LARGE_NOFILE = 20000          # the contenders' RLIMIT_NOFILE, soft and hard, as in the issue
LARGE_CRASH_N = 1000          # replicas of the crash-looping pool
LARGE_CRASH_WINDOW_S = 10.0   # status is probed this long after the crash-looping pool's launch
LARGE_STATUS_RUNS = 5         # settled raw status requests per cell (each can take a second at 10,000)
LARGE_JSON_RUNS = 3           # `poolvisor status --json` per cell
LARGE_SETTLE_S = 2.0
PROBE_GAP_S = 0.1             # during a wave: the next status request 100 ms after the previous answer
STATUS_TARGET_MS = 100.0
LARGE_RSS_TARGET_KIB = 24 * 1024
FDS_SLACK = 64
PID_MARGIN = 1000             # pids left free beyond N workers and what already runs

CRASH_POOLS_TOML = """\
[supervisor]
name = "bench"
drain_seconds = {drain}

[pools.crash]
command = ["{worker}"]
replicas = {n}
worker_subscribe = "all"

[pools.crash.env]
BENCH_SOCKET = "{sock}"
BENCH_EXIT = "1"
"""


def cgroup_pids_max():
    """(limit, path) of this process's cgroup pids controller, when it has a numeric limit."""
    for line in (read_text("/proc/self/cgroup") or "").splitlines():
        hid, ctrls, path = (line.split(":", 2) + ["", ""])[:3]
        if hid == "0" and ctrls == "":
            f = f"/sys/fs/cgroup{path.rstrip('/')}/pids.max"
        elif "pids" in ctrls.split(","):
            f = f"/sys/fs/cgroup/pids{path.rstrip('/')}/pids.max"
        else:
            continue
        v = (read_text(f) or "").strip()
        if v.isdigit():
            return int(v), f
    return None, None


def prepare_large_limits(n, crash_n, nofile):
    """Checks that the machine can hold n workers and sets this process's RLIMIT_NOFILE (inherited by
    every contender) to `nofile`, soft and hard. Raises HarnessError with what to change."""
    facts = {}
    problems = []
    if nofile < n + 2 * FDS_SLACK:
        problems.append(f"--nofile {nofile} is too small for N = {n} workers: poolvisor needs at least N + {2 * FDS_SLACK}")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    facts["nofile_before"] = [soft, hard]
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    except (ValueError, OSError) as e:
        problems.append(f"cannot set RLIMIT_NOFILE to {nofile} (soft and hard) for the contenders: the hard limit is "
                        f"{hard} and this user may not raise it ({e}); run as root, or raise the hard limit "
                        f"(limits.conf, systemd LimitNOFILE=, `ulimit -Hn {nofile}` in a root shell)")
    facts["nofile"] = list(resource.getrlimit(resource.RLIMIT_NOFILE))

    pid_max = int((read_text("/proc/sys/kernel/pid_max") or "32768").strip())
    threads_max = int((read_text("/proc/sys/kernel/threads-max") or "0").strip() or 0)
    loadavg = (read_text("/proc/loadavg") or "0 0 0 0/0 0").split()
    in_use = int(loadavg[3].split("/")[1])   # tasks (threads included): they draw from the same pid space
    need = max(n, crash_n) + PID_MARGIN
    facts.update({"pid_max": pid_max, "threads_max": threads_max, "tasks_in_use": in_use})
    if in_use + need > pid_max:
        problems.append(f"kernel.pid_max is {pid_max} and {in_use} tasks already run: {max(n, crash_n)} workers plus a "
                        f"margin of {PID_MARGIN} need {in_use + need}; raise it: sysctl -w kernel.pid_max=4194304")
    if threads_max and in_use + need > threads_max:
        problems.append(f"kernel.threads-max is {threads_max}: {in_use + need} tasks are needed; raise it with sysctl")
    if os.geteuid() != 0:
        nproc = resource.getrlimit(resource.RLIMIT_NPROC)[0]
        facts["nproc"] = nproc
        if nproc != resource.RLIM_INFINITY and nproc < in_use + need:
            problems.append(f"RLIMIT_NPROC is {nproc}: {in_use + need} processes are needed; raise it (ulimit -u) or run as root")
    limit, path = cgroup_pids_max()
    if limit is not None:
        facts["cgroup_pids_max"] = limit
        if limit < need + 100:
            problems.append(f"{path} is {limit}: {need + 100} tasks are needed in this cgroup")
    if problems:
        raise HarnessError("the machine cannot run the large benchmark:\n  - " + "\n  - ".join(problems))
    return facts


class StatusProber:
    """Sends raw status requests on the control socket from a thread: the first as soon as the socket
    accepts a connection (the supervisor may not have created it yet: retried every 1 ms), then each `gap`
    seconds after the previous answer (an operator's `watch`, not a flood: the supervisor gets at least
    `gap` to itself between requests). Each probe records when it was sent (ms after the supervisor's
    launch), its round trip or why it failed, and how many workers had reported when it was sent and
    when it was answered."""

    def __init__(self, path, recv, t_launch, gap, timeout=60.0):
        self.path = path
        self.recv = recv
        self.t_launch = t_launch
        self.gap = gap
        self.timeout = timeout
        self.probes = []
        self.socket_up_ms = None
        self.workers_at_socket_up = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-status-prober", daemon=True)

    def start(self):
        self.thread.start()

    def _run(self):
        while not self.stopping.is_set():
            t_send = now_ns()
            up = self.recv.distinct()
            try:
                ms, answer = control_request(self.path, "status", timeout=self.timeout)
            except (FileNotFoundError, ConnectionRefusedError):
                if self.socket_up_ms is None:   # not created or not listening yet
                    time.sleep(0.001)
                    continue
                self._add(t_send, up, None, "the control socket went away or refused the connection")
            except OSError as e:
                if self.socket_up_ms is None:
                    self._mark_up(t_send, up)
                self._add(t_send, up, None, f"request failed: {e}" if not isinstance(e, socket.timeout)
                          else f"no answer within {self.timeout:g} s")
            else:
                if self.socket_up_ms is None:
                    self._mark_up(t_send, up)
                err = status_answer_error(answer)
                self._add(t_send, up, ms if err is None else None, err, len(answer) + 1)
            self.stopping.wait(self.gap)

    def _mark_up(self, t, up):
        self.socket_up_ms = (t - self.t_launch) / 1e6
        self.workers_at_socket_up = up

    def _add(self, t_send, up, ms, err, size=None):
        self.probes.append({"sent_ms": round((t_send - self.t_launch) / 1e6, 2), "ms": ms, "error": err,
                            "workers_at_send": up, "workers_at_answer": self.recv.distinct(), "bytes": size})

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=self.timeout + 5)


def summarize_probes(probes, prefix, res):
    """first / p50 / max of the probes' round trips into res[prefix + '_...']; failures into res['failures']."""
    res[f"{prefix}_probes"] = len(probes)
    ok = [p["ms"] for p in probes if p["ms"] is not None]
    bad = [p for p in probes if p["ms"] is None]
    res[f"{prefix}_probes_failed"] = len(bad)
    if probes and probes[0]["ms"] is not None:
        res[f"{prefix}_first_ms"] = probes[0]["ms"]
    if ok:
        res[f"{prefix}_p50_ms"] = statistics.median(ok)
        res[f"{prefix}_max_ms"] = max(ok)
    if not probes:
        res["failures"][f"{prefix}_max_ms"] = "no status request could be sent"
    elif bad:
        why = f"{len(bad)} of {len(probes)} status requests failed (first: {bad[0]['error']})"
        res["failures"][f"{prefix}_max_ms"] = why
        if probes[0]["ms"] is None:
            res["failures"][f"{prefix}_first_ms"] = probes[0]["error"]
        if not ok:
            res["failures"][f"{prefix}_p50_ms"] = why


def log_tail_count(path, needle):
    try:
        with open(path, "rb") as f:
            return f.read().count(needle.encode())
    except OSError:
        return 0


def measure_stop(ctx, proc, workers, res, tag):
    """As in run_cell: SIGTERM -> the supervisor and every worker have exited (zombies count)."""
    t_term = now_ns()
    os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + DRAIN_SECONDS + 30
    while not exited(proc.pid):
        if time.monotonic() > deadline:
            res["failures"]["stop_ms"] = f"the supervisor did not exit within {DRAIN_SECONDS + 30} s of SIGTERM"
            return
        time.sleep(0.001)
    t_end = now_ns()
    for pid in workers:
        while not exited(pid):
            if time.monotonic() > deadline:
                res["failures"]["stop_ms"] = f"worker {pid} still alive {DRAIN_SECONDS + 30} s after SIGTERM"
                return
            time.sleep(0.001)
            t_end = now_ns()
    res["stop_ms"] = (t_end - t_term) / 1e6
    res["exit_code"] = proc.wait(timeout=5)
    lingering = [pid for pid in ctx.tracker.our_workers() if not exited(pid)]
    if lingering:
        res["failures"]["stop_ms"] = f"{len(lingering)} worker(s) still running after the supervisor exited"


def large_control_plane(ctx, proc, cell, res):
    """Settled status (raw, LARGE_STATUS_RUNS times), the footprint after it, `status --json` through the
    CLI and a reload after all that (the issue's 'next reload fails with Too many open files')."""
    sock = control_socket(cell)
    samples, errors = [], []
    for _ in range(LARGE_STATUS_RUNS):
        try:
            ms, answer = control_request(sock, "status", timeout=60)
            err = status_answer_error(answer)
        except OSError as e:
            err = "no answer within 60 s" if isinstance(e, socket.timeout) else f"request failed: {e}"
        if err is None:
            samples.append(ms)
            res["status_answer_bytes"] = len(answer) + 1
        else:
            errors.append(err)
            if err.startswith("no answer"):
                break
    res["status_samples_ms"] = samples
    if samples:
        res["status_ms"] = statistics.median(samples)
        res["status_max_ms"] = max(samples)
    if errors:
        why = f"{len(errors)} of {len(samples) + len(errors)} status requests failed (first: {errors[0]})"
        res["failures"]["status_max_ms"] = why
        if not samples:
            res["failures"]["status_ms"] = why
    after = footprint(supervising_pids(proc.pid, ctx.worker))
    res["rss_after_status_kib"] = after["rss_kib"]
    res["hwm_after_status_kib"] = after["hwm_kib"]
    res["fds_after_status"] = after["fds"]

    samples, sizes, errors = [], [], []
    for _ in range(LARGE_JSON_RUNS):
        t0 = now_ns()
        try:
            p = subprocess.run([ctx.poolvisor, "status", "--json", "--socket", sock], env=base_env(),
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=90)
        except subprocess.TimeoutExpired:
            errors.append("`poolvisor status --json` did not exit within 90 s")
            break
        ms = (now_ns() - t0) / 1e6
        if p.returncode not in (0, 3):
            errors.append(f"`poolvisor status --json` exited with status {p.returncode}: "
                          f"{(p.stderr or p.stdout)[:300].decode(errors='replace').strip()}")
            continue
        samples.append(ms)
        sizes.append(len(p.stdout))
    res["status_json_cli_samples_ms"] = samples
    if samples:
        res["status_json_cli_ms"] = statistics.median(samples)
        res["status_json_cli_bytes"] = statistics.median(sizes)
    if errors:
        res["failures"]["status_json_cli_ms"] = f"{len(errors)} of {len(samples) + len(errors)} failed (first: {errors[0]})"
        if not samples:
            res["failures"]["status_json_cli_bytes"] = res["failures"]["status_json_cli_ms"]

    try:
        ms, answer = control_request(sock, "reload", timeout=60)
        err = answer_error(answer)
    except OSError as e:
        err = "no answer within 60 s" if isinstance(e, socket.timeout) else f"request failed: {e}"
    if err is None:
        res["reload_after_status_ms"] = ms
    else:
        res["failures"]["reload_after_status_ms"] = err


def large_tag(res):
    return f"{res['contender']}-{res['kind']}-n{res['n']}-r{res['round']}"


def run_large_cell(ctx, contender, n, rnd):
    """One contender with n workers: start, footprint, restart, (poolvisor: status, status --json, reload
    after status), footprint again, stop. A failed measurement is recorded in res['failures'] and the
    cell goes on; only what makes the rest meaningless (workers never up) ends it early."""
    res = {"contender": contender, "kind": "main", "n": n, "round": rnd + 1, "ok": False, "failures": {}}
    tag = large_tag(res)
    cell = os.path.join(ctx.tmp, tag)
    os.makedirs(cell)
    sock = os.path.join(cell, "bench.sock")
    logfile = os.path.join(ctx.logdir, f"{tag}.log")
    recv = Receiver(sock)
    proc = None
    try:
        argv, env = prepare(ctx, contender, n, cell, sock, tag)
        res["argv"] = argv
        proc, t_launch, events, firsts = launch_and_wait(ctx, argv, env, cell, logfile, recv, n, tag, res,
                                                         start_timeout=60 + 0.02 * n, record_nofile=True)
        live = {events[i][0]: k for k, i in enumerate(firsts)}
        log(f"{tag}: {n} workers up in {res['start_ms']:.0f} ms")

        time.sleep(ctx.large_settle)
        if proc.poll() is not None:
            raise HarnessError(f"{tag}: the supervisor exited ({proc.returncode}) after starting")
        before = footprint(supervising_pids(proc.pid, ctx.worker))
        res["rss_before_status_kib"] = before["rss_kib"]
        res["hwm_before_status_kib"] = before["hwm_kib"]
        res["fds_before_status"] = before["fds"]
        res["threads"] = before["threads"]
        res["workers_alive"] = sum(1 for pid in live if not exited(pid))
        if res["workers_alive"] != n:
            raise HarnessError(f"{tag}: {res['workers_alive']}/{n} workers alive {ctx.large_settle:g} s after the start")

        # restart: as run_cell, but a missing replacement is a failed measurement, not the cell's end
        samples = []
        killed_lineages = set()
        for _ in range(min(ctx.restarts, n)):
            candidates = sorted(pid for pid, lin in live.items() if lin not in killed_lineages)
            victim = ctx.rng.choice(candidates)
            index = recv.count()
            t_kill = now_ns()
            os.kill(victim, signal.SIGKILL)
            ev = recv.wait_new_after(index, set(live), timeout=15)
            if ev is None:
                res["failures"]["restart_p50_ms"] = res["failures"]["restart_p95_ms"] = \
                    f"no replacement reported within 15 s of killing pid {victim}"
                live.pop(victim)
                break
            samples.append((ev[1] - t_kill) / 1e6)
            lineage = live.pop(victim)
            live[ev[0]] = lineage
            killed_lineages.add(lineage)
            time.sleep(ctx.rng.uniform(0.05, 0.10))
        res["restart_samples_ms"] = samples
        if samples:
            res["restart_p50_ms"] = statistics.median(samples)
            res["restart_p95_ms"] = p95(samples)

        if contender == "poolvisor":
            try:
                wait_for_socket(control_socket(cell), proc, 5)
                large_control_plane(ctx, proc, cell, res)
            except (HarnessError, OSError, subprocess.SubprocessError) as e:
                for key in ("status_ms", "status_max_ms", "status_json_cli_ms", "reload_after_status_ms"):
                    res["failures"].setdefault(key, str(e))
        else:
            # the floor has no status: its footprint at the same point of the cell
            after = footprint(supervising_pids(proc.pid, ctx.worker))
            res["rss_after_status_kib"] = after["rss_kib"]
            res["hwm_after_status_kib"] = after["hwm_kib"]
            res["fds_after_status"] = after["fds"]
        end = footprint(supervising_pids(proc.pid, ctx.worker))
        res["rss_end_kib"] = end["rss_kib"]
        res["fds_end"] = end["fds"]

        events, first = recv.snapshot()
        workers = list(live) + [pid for pid in first if pid not in live and not exited(pid)]
        if proc.poll() is not None:
            res["failures"]["stop_ms"] = f"the supervisor had already exited with status {proc.returncode}"
        else:
            measure_stop(ctx, proc, workers, res, tag)
        res["malformed_reports"] = recv.malformed
        res["ok"] = True
    except HarnessError as e:
        res["error"] = str(e)
    finally:
        if proc is not None:
            left = ctx.tracker.sweep(proc)
            if left:
                res["ok"] = False
                res.setdefault("error", f"{tag}: could not kill pids {left}")
        recv.close()
        shutil.rmtree(cell, ignore_errors=True)
    res["log_emfile_lines"] = log_tail_count(logfile, "Too many open files")
    if res.get("error"):
        t = tail(logfile)
        if t:
            res["error_log_tail"] = t
        log(f"FAILED {res['error']}")
    for key, why in res["failures"].items():
        log(f"{tag}: {key} failed: {why}")
    return res


def run_probe_cell(ctx, n, rnd, crash, wave_timeout):
    """poolvisor launched with status requests sent from the start: through the start wave of n sleeping
    workers (until all have reported), or for LARGE_CRASH_WINDOW_S with n crash-looping workers."""
    kind = "crash" if crash else "wave"
    res = {"contender": "poolvisor", "kind": kind, "n": n, "round": rnd + 1, "ok": False, "failures": {}}
    tag = large_tag(res)
    cell = os.path.join(ctx.tmp, tag)
    os.makedirs(cell)
    sock = os.path.join(cell, "bench.sock")
    logfile = os.path.join(ctx.logdir, f"{tag}.log")
    recv = Receiver(sock)
    proc = prober = None
    try:
        if crash:
            cfg = os.path.join(cell, "pools.toml")
            with open(cfg, "w") as f:
                f.write(CRASH_POOLS_TOML.format(drain=DRAIN_SECONDS, worker=ctx.worker, n=n, sock=sock))
            runtime = os.path.join(cell, "runtime")
            os.makedirs(runtime)
            env = base_env()
            env["RUNTIME_DIRECTORY"] = runtime
            argv = [ctx.poolvisor, "run", "--config", cfg, "--log-level", "warning", "--socket", control_socket(cell)]
        else:
            argv, env = prepare(ctx, "poolvisor", n, cell, sock, tag)
        res["argv"] = argv
        with open(logfile, "wb") as out:
            t_launch = now_ns()
            proc = subprocess.Popen(argv, env=env, cwd=cell, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        ctx.tracker.add(proc)
        prober = StatusProber(control_socket(cell), recv, t_launch, ctx.probe_gap)
        prober.start()
        if crash:
            end = time.monotonic() + ctx.crash_window
            while time.monotonic() < end and proc.poll() is None:
                time.sleep(0.05)
            res["window_s"] = ctx.crash_window
        else:
            give_up = time.monotonic() + wave_timeout
            while not recv.wait_distinct(n, 0.25):
                if proc.poll() is not None or time.monotonic() > give_up:
                    break
        prober.stop()
        if prober.thread.is_alive():
            res["failures"][f"{kind}_max_ms"] = "a status request was still unanswered when the probing ended"
        events, first = recv.snapshot()
        res["workers_reported"] = len(first)
        res["worker_starts"] = len(events)
        res["socket_up_ms"] = prober.socket_up_ms
        res["workers_at_socket_up"] = prober.workers_at_socket_up
        probes = list(prober.probes)
        if not crash:
            if len(first) >= n:
                firsts = sorted(first.values())[:n]
                res["start_with_probes_ms"] = (max(events[i][1] for i in firsts) - t_launch) / 1e6
            else:
                res["failures"]["wave_max_ms"] = (
                    f"only {len(first)}/{n} workers reported within {wave_timeout:.0f} s while status was asked"
                    + ("" if proc.poll() is None else f"; poolvisor exited with status {proc.returncode}"))
            probes = [p for p in probes if p["workers_at_send"] < n]   # those sent during the wave
        res["probes"] = probes
        summarize_probes(probes, kind, res)
        if proc.poll() is not None:
            res["failures"].setdefault(f"{kind}_max_ms", f"poolvisor exited with status {proc.returncode}")
        else:
            why = stop_quietly(proc)
            if why:
                res["stop_problem"] = why
        res["ok"] = True
    except HarnessError as e:
        res["error"] = str(e)
    finally:
        if prober is not None:
            prober.stop()
        if proc is not None:
            left = ctx.tracker.sweep(proc)
            if left:
                res["ok"] = False
                res.setdefault("error", f"{tag}: could not kill pids {left}")
        recv.close()
        shutil.rmtree(cell, ignore_errors=True)
    res["log_emfile_lines"] = log_tail_count(logfile, "Too many open files")
    if res.get("error"):
        log(f"FAILED {res['error']}")
    for key, why in res["failures"].items():
        log(f"{tag}: {key} failed: {why}")
    if res.get(f"{kind}_probes"):
        log(f"{tag}: {res[f'{kind}_probes']} status requests, first {res.get(f'{kind}_first_ms', float('nan')):.0f} ms, "
            f"p50 {res.get(f'{kind}_p50_ms', float('nan')):.0f} ms, max {res.get(f'{kind}_max_ms', float('nan')):.0f} ms; "
            f"socket up {res['socket_up_ms'] or float('nan'):.0f} ms after launch")
    return res


# (key, kind of cell, label, unit, target text or None, check(value, floor value, n) or None)
LARGE_ROWS = [
    ("start_ms", "main", "start", "ms", "≤ 1.3x floor", lambda v, f, n: None if f is None else v <= 1.3 * f),
    ("restart_p50_ms", "main", "restart p50", "ms", None, None),
    ("restart_p95_ms", "main", "restart p95", "ms", None, None),
    ("stop_ms", "main", "stop", "ms", None, None),
    ("rss_before_status_kib", "main", "RSS before status", "MiB", None, None),
    ("rss_after_status_kib", "main", "RSS after status", "MiB", "≤ 24 MiB", lambda v, f, n: v <= LARGE_RSS_TARGET_KIB),
    ("fds_after_status", "main", "open fds after status", "count", "≤ N + 64", lambda v, f, n: v <= n + FDS_SLACK),
    ("status_ms", "main", "status round trip, settled (median)", "ms", "≤ 100 ms", lambda v, f, n: v <= STATUS_TARGET_MS),
    ("status_max_ms", "main", "status round trip, settled (max)", "ms", None, None),
    ("status_json_cli_ms", "main", "`poolvisor status --json`, start to exit", "ms", None, None),
    ("status_json_cli_bytes", "main", "`poolvisor status --json` output", "MB", None, None),
    ("reload_after_status_ms", "main", "reload after status (raw round trip)", "ms", "succeeds", lambda v, f, n: True),
    ("wave_first_ms", "wave", "status during the start wave: first request", "ms", None, None),
    ("wave_p50_ms", "wave", "status during the start wave: p50", "ms", None, None),
    ("wave_max_ms", "wave", "status during the start wave: max", "ms", "≤ 100 ms", lambda v, f, n: v <= STATUS_TARGET_MS),
    ("crash_first_ms", "crash", "status, crash-looping pool: first request", "ms", None, None),
    ("crash_p50_ms", "crash", "status, crash-looping pool: p50", "ms", None, None),
    ("crash_max_ms", "crash", "status, crash-looping pool: max", "ms", "≤ 100 ms", lambda v, f, n: v <= STATUS_TARGET_MS),
]

LARGE_DIAGNOSTICS = [
    ("nofile_limit", "main", "RLIMIT_NOFILE seen by the supervisor (soft/hard)"),
    ("first_worker_ms", "main", "first worker reported (ms after launch)"),
    ("start_cpu_ms", "main", "supervisor CPU time during start (ms)"),
    ("fds_before_status", "main", "open fds before status"),
    ("hwm_after_status_kib", "main", "peak RSS after status, VmHWM (MiB)"),
    ("threads", "main", "supervisor threads"),
    ("status_answer_bytes", "main", "status answer on the socket (bytes)"),
    ("rss_end_kib", "main", "RSS after status --json and the reload (MiB)"),
    ("fds_end", "main", "open fds after status --json and the reload"),
    ("log_emfile_lines", "main", "'Too many open files' lines in the supervisor's log"),
    ("socket_up_ms", "wave", "start wave: control socket answered first (ms after launch)"),
    ("workers_at_socket_up", "wave", "start wave: workers up when the first request was sent"),
    ("wave_probes", "wave", "start wave: status requests sent before all N were up"),
    ("wave_probes_failed", "wave", "start wave: of which failed"),
    ("start_with_probes_ms", "wave", "start wave: N workers up, with status asked throughout (ms)"),
    ("log_emfile_lines", "wave", "start wave: 'Too many open files' lines in the log"),
    ("crash_probes", "crash", "crash loop: status requests in the window"),
    ("crash_probes_failed", "crash", "crash loop: of which failed"),
    ("worker_starts", "crash", "crash loop: worker starts in the window"),
]


def median_or_none(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    if isinstance(vals[0], list):
        return vals[0]
    return statistics.median(vals)


def large_value(cells, contender, kind, key):
    """(median over rounds, first failure reason) of one metric."""
    mine = [c for c in cells if c["contender"] == contender and c["kind"] == kind]
    if not mine:
        return None, None
    value = median_or_none([c.get(key) for c in mine if c.get("ok")])
    why = next((c["failures"][key] for c in mine if key in c.get("failures", {})), None)
    if why is None:
        why = next((c["error"] for c in mine if not c.get("ok") and c.get("error")), None)
    return value, why


def large_table(cells, n):
    rows = []
    for key, kind, label, unit, target, check in LARGE_ROWS:
        vals, errs = {}, {}
        for c in ("poolvisor", "floor"):
            v, why = large_value(cells, c, kind, key)
            vals[c] = v
            if why:
                errs[c] = why
        row = {"metric": key, "label": label, "unit": unit, "n": n, "values": vals, "errors": errs,
               "poolvisor_over_floor": ratio(vals["poolvisor"], vals["floor"])}
        if target:
            row["target"] = target.replace("N + 64", f"N + 64 = {n + FDS_SLACK}")
            pv = vals["poolvisor"]
            row["target_met"] = False if "poolvisor" in errs else (None if pv is None else check(pv, vals["floor"], n))
        rows.append(row)
    return rows


def fmt_cell(value, unit, error=None):
    if unit == "count":
        s = "—" if value is None else f"{value:.0f}"
    elif unit == "MB":
        s = "—" if value is None else f"{value / 1e6:.2f}"
    elif unit == "KiB":
        s = "—" if value is None else f"{value:+.0f}"
    else:
        s = fmt(value, unit)
    if error:
        error = re.sub(r"/tmp/poolvisor-bench[.-][A-Za-z0-9_]+", "$TMP", error)
        short = error if len(error) <= 160 else error[:157] + "…"
        s = ("✗ failed: " if value is None else f"{s} ✗ ") + short.replace("|", "/").replace("\n", " ")
    return s


def target_cell(row):
    if "target" not in row:
        return ""
    met = row.get("target_met")
    return ("✓ " if met else "✗ " if met is not None else "? ") + row["target"]


def load_before(path):
    """{(metric, n): (poolvisor value, error)} from an earlier run's BENCHMARKS.json, and a description."""
    with open(path) as f:
        data = json.load(f)
    out = {}
    tables = list(data.get("large", {}).get("table", [])) + list(data.get("reload_memory", {}).get("table", []))
    for r in tables:
        out[(r["metric"], str(r["n"]))] = (r["values"].get("poolvisor"), (r.get("errors") or {}).get("poolvisor"))
    m = data.get("machine", {})
    what = (f"a given binary: {m.get('poolvisor_commit')}" if m.get("poolvisor_binary_given")
            else f"commit {m.get('poolvisor_commit', '?')[:12]}{' + uncommitted changes' if m.get('poolvisor_worktree_dirty') else ''}")
    desc = f"`{path}` ({data.get('mode', '?')} run of {data.get('date', '?')}, {what}, sha256 " \
           f"{m.get('poolvisor_binary_sha256', '?')[:12]}…)"
    return out, desc


def before_cell(before, row):
    if before is None:
        return None
    hit = before.get((row["metric"], str(row["n"])))
    if hit is None:
        return "—"
    return fmt_cell(hit[0], row["unit"], hit[1])


def large_markdown(rows, n, before):
    head = f"| metric | N | poolvisor | floor | poolvisor/floor | target (poolvisor, N={n}) |"
    sep = "|---|---:|---:|---:|---:|---|"
    if before is not None:
        head += " before (poolvisor) |"
        sep += "---:|"
    out = [head, sep]
    for r in rows:
        kind = next(k for key, k, *_ in LARGE_ROWS if key == r["metric"])
        fl = "n/a" if kind != "main" or r["metric"].startswith(("status", "reload")) else \
            fmt_cell(r["values"]["floor"], r["unit"], r["errors"].get("floor"))
        rt = "" if fl == "n/a" else fmt_ratio(r["poolvisor_over_floor"])
        line = (f"| {r['label']} ({r['unit']}) | {r['n']} | {fmt_cell(r['values']['poolvisor'], r['unit'], r['errors'].get('poolvisor'))} "
                f"| {fl} | {rt} | {target_cell(r)} |")
        if before is not None:
            line += f" {before_cell(before, r)} |"
        out.append(line)
    return "\n".join(out)


def reload_memory_markdown(rows, res, before):
    head = "| metric | reloads | poolvisor | target |"
    sep = "|---|---:|---:|---|"
    if before is not None:
        head += " before |"
        sep += "---:|"
    out = [head, sep]
    for r in rows:
        line = (f"| {r['label']} ({r['unit']}) | {r['reloads'] if r['reloads'] is not None else '—'} | "
                f"{fmt_cell(r['values']['poolvisor'], r['unit'], r['errors'].get('poolvisor'))} | {target_cell(r)} |")
        if before is not None:
            line += f" {before_cell(before, r)} |"
        out.append(line)
    return "\n".join(out)


def reload_memory_section(data, before=None):
    rm = data.get("reload_memory")
    if not rm:
        return []
    res = rm["result"]
    lines = ["", "### Reload memory (N-independent)", "",
             reload_memory_markdown(rm["table"], res, before), "",
             f"- poolvisor runs a pools file of {res['pools']} pools (every other one with `replicas = 1`, so "
             f"{res['workers']} workers; each with a `[pools.X.env]` table of 4 keys and a `[pools.X.backoff]` table). "
             f"The harness sends `{{\"v\":1,\"command\":\"reload\"}}` on the control socket {res['reloads_asked']} times, each as "
             f"soon as the previous answer line has arrived (poolvisor answers once the reload is applied); the file "
             f"never changes. RSS is the supervisor's VmRSS after the first answer and after the last; the JSON has it "
             f"at every power of ten (`reload_memory.result.checkpoints`). Workers restarted by the reloads: "
             f"{res.get('workers_restarted', '—')}."]
    return lines


def warm_up(ctx, n):
    """In the first large run after the bench machine booted, the floor needed 7.8 s for 10,000 workers; in
    every run after it, 3.1-4.2 s (the kernel's caches for that many processes, presumably). Whichever
    contender pays for that first launch loses the comparison, so the floor starts N workers once,
    unmeasured, before the measured cells. Returns its start (ms)."""
    cell = os.path.join(ctx.tmp, "warm-up")
    os.makedirs(cell)
    sock = os.path.join(cell, "bench.sock")
    recv = Receiver(sock)
    proc = None
    try:
        argv, env = prepare(ctx, "floor", n, cell, sock, "warm-up")
        t_launch = now_ns()
        proc = subprocess.Popen(argv, env=env, cwd=cell, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        ctx.tracker.add(proc)
        give_up = time.monotonic() + 60 + 0.02 * n
        while not recv.wait_distinct(n, 0.25):
            if proc.poll() is not None or time.monotonic() > give_up:
                raise HarnessError(f"warm-up: the floor got {recv.distinct()}/{n} workers up "
                                   f"({'it exited' if proc.poll() is not None else 'time limit'})")
        elapsed = (now_ns() - t_launch) / 1e6
        stop_quietly(proc)
        return elapsed
    finally:
        if proc is not None:
            ctx.tracker.sweep(proc)
        recv.close()
        shutil.rmtree(cell, ignore_errors=True)


def run_large(ctx, args, n, rounds):
    """The whole large mode; returns (data, failed)."""
    cells = []
    contenders = ["poolvisor", "floor"]
    crash_n = min(args.crash_n, n)
    if ctx.warm_up:
        t = time.monotonic()
        ctx.warm_up_ms = warm_up(ctx, n)
        log(f"warm-up: the floor started {n} workers in {ctx.warm_up_ms:.0f} ms (not measured) [{time.monotonic() - t:.1f} s]")
        time.sleep(1.0)
    for rnd in range(rounds):
        k = rnd % len(contenders)
        for c in contenders[k:] + contenders[:k]:
            t = time.monotonic()
            res = run_large_cell(ctx, c, n, rnd)
            cells.append(res)
            if res.get("ok"):
                log(f"round {rnd + 1} N={n} {c}: start {res['start_ms']:.0f} ms, restart p50 "
                    f"{res.get('restart_p50_ms', float('nan')):.2f} ms, stop {res.get('stop_ms', float('nan')):.0f} ms, "
                    f"RSS {res['rss_before_status_kib'] / 1024:.1f} → {res.get('rss_after_status_kib', 0) / 1024:.1f} MiB, "
                    f"fds {res['fds_before_status']} → {res.get('fds_after_status', 0)}"
                    + (f", status {res['status_ms']:.0f} ms" if res.get("status_ms") is not None else "")
                    + f" [{time.monotonic() - t:.1f} s]")
            time.sleep(1.0)
        clean = [c["start_ms"] for c in cells if c["contender"] == "poolvisor" and c.get("start_ms")]
        wave_timeout = 60 + 3 * (max(clean) / 1000 if clean else 0.02 * n)
        t = time.monotonic()
        cells.append(run_probe_cell(ctx, n, rnd, crash=False, wave_timeout=wave_timeout))
        log(f"round {rnd + 1}: status during the start wave of {n} [{time.monotonic() - t:.1f} s]")
        time.sleep(1.0)
        t = time.monotonic()
        cells.append(run_probe_cell(ctx, crash_n, rnd, crash=True, wave_timeout=0))
        log(f"round {rnd + 1}: status beside {crash_n} crash-looping workers [{time.monotonic() - t:.1f} s]")
        time.sleep(1.0)
    rows = large_table(cells, n)
    # the crash-looping pool has its own N
    for r in rows:
        if r["metric"].startswith("crash_"):
            r["n"] = crash_n
    failed = any(not c.get("ok") or c.get("failures") for c in cells)
    return cells, rows, failed


def large_diagnostics_markdown(cells):
    out = ["| diagnostic (median over rounds) | poolvisor | floor |", "|---|---:|---:|"]
    for key, kind, label in LARGE_DIAGNOSTICS:
        vals = []
        for c in ("poolvisor", "floor"):
            v, _ = large_value(cells, c, kind, key)
            if v is None:
                vals.append("—")
            elif isinstance(v, list):
                vals.append("/".join(map(str, v)))
            elif key.endswith("_kib"):
                vals.append(f"{v / 1024:.1f}")
            elif key.endswith("_ms"):
                vals.append(fmt(v, "ms"))
            else:
                vals.append(f"{v:.0f}")
        out.append(f"| {label} | " + " | ".join(vals) + " |")
    return "\n".join(out)


def render_large(data):
    m = data["machine"]
    cfg = data["config"]
    n = cfg["n"]
    before = data.get("_before")
    lines = [f"Generated by `{data['commands']['harness']}` on {data['date']} (large run: N = {n}, poolvisor and the "
             f"floor only; {cfg['rounds']} round(s), medians across rounds; raw numbers in `{data['json_name']}`). "
             f"supervisord is not run at this N: its own config asks for minfds = 6N + 256 = {6 * n + 256} descriptors, "
             f"beyond the {cfg['nofile'][1]} allowed, and at N = 1000 it already needs about 5 s to start and 10 s "
             f"to stop (see the full run)."]
    lines += ["", "### Machine", ""]
    dirty = ""
    if m["poolvisor_worktree_dirty"]:
        dirty = f" + uncommitted changes ({', '.join(f.split()[-1] for f in m['poolvisor_dirty_files'][:8])}{', …' if len(m['poolvisor_dirty_files']) > 8 else ''})"
    lines += [
        f"- CPU: {m['cpu_model']}, {m['cores']} cores; memory {m['memory_gib']} GiB",
        f"- kernel {m['kernel']}; {m['debian']}; {m['swift']}; {m['cc']}; Python {m['python']}",
        (f"- poolvisor: a binary given with --poolvisor-bin ({m['poolvisor_commit']}), not built from this checkout"
         if m.get("poolvisor_binary_given") else f"- poolvisor commit `{m['poolvisor_commit']}`{dirty}")
        + f"; binary sha256 `{m['poolvisor_binary_sha256'][:16]}…`",
        f"- RLIMIT_NOFILE of the contenders: {cfg['nofile'][0]} soft, {cfg['nofile'][1]} hard; kernel.pid_max "
        f"{cfg['capacity']['pid_max']} ({cfg['capacity']['tasks_in_use']} tasks running before the run); "
        f"net.unix.max_dgram_qlen = {m['net_unix_max_dgram_qlen']}",
    ]
    lines += ["", f"### Results at N = {n}", ""]
    if before is not None:
        lines += [f"Before: {data['_before_desc']}.", ""]
    lines.append(large_markdown(data["large"]["table"], n, before))
    lines += reload_memory_section(data, before)
    lines += ["", "Not targets, but where the time and the descriptors go:", "", large_diagnostics_markdown(data["cells"])]
    lines += ["", "How each number is taken:", ""]
    lines += [
        f"- **start, restart, stop**: as in the full run (the N-th distinct worker's own CLOCK_MONOTONIC stamp after `Popen`; "
        f"SIGKILL of {cfg['restarts']} random workers, 50–100 ms apart, replacement's stamp − kill time; SIGTERM → the supervisor "
        f"and every worker gone). The worker is `scripts/bench-worker.c` (a static binary that reports and pauses), "
        f"like `/bin/sleep 100000` but with a report.",
        f"- **RSS, open fds**: VmRSS (plus the spawn server's private memory, as in the main table) and `/proc/PID/fd` entries of the supervisor {cfg['settle_s']:g} s after the N-th worker "
        f"reported (before status), and again right after the settled status requests (after status). For the floor, which "
        f"has no status, the same points of its cell.",
        f"- **status round trip, settled**: connect to the control socket, send `{{\"v\":1,\"command\":\"status\"}}`, read "
        f"the whole answer line; {LARGE_STATUS_RUNS} in a row after the restarts. **`status --json`**: `poolvisor status "
        f"--json --socket PATH`, launch → exit, {LARGE_JSON_RUNS} times, and the size of what it printed. **reload after "
        f"status**: one raw `{{\"v\":1,\"command\":\"reload\"}}` after all that (the pools file is unchanged); it fails "
        f"when the supervisor has no descriptor left.",
        f"- **status during the start wave**: poolvisor is launched again with N workers, and from a thread the harness "
        f"sends status requests from the launch on: the first as soon as the control socket accepts a connection "
        f"(retried every 1 ms until it exists), then {cfg['probe_gap_ms']:.0f} ms after each answer, until all N workers have "
        f"reported. first / p50 / max are over the requests sent before the N-th worker reported; the diagnostics give "
        f"how long the wave took with status asked throughout. The same for a **crash-looping pool**: {cfg['crash_n']} replicas of the bench "
        f"worker with `BENCH_EXIT=1` (it reports, then exits 1, like `/bin/false`), default backoff, probed for "
        f"{cfg['crash_window_s']:g} s from the launch.",
        ("- Before the measured cells the floor starts N workers once, unmeasured"
         + (f" ({cfg['warm_up_start_ms'] / 1000:.1f} s this time)" if cfg.get("warm_up_start_ms") else "")
         + ": in the first large run after the bench machine booted the floor needed 7.8 s for 10,000 workers, in every "
           "later one 3.1–4.2 s, and whichever contender paid for that first launch would lose the comparison." if cfg.get("warm_up") else
         "- No warm-up (--no-warm-up): the first contender may pay for the kernel's first N processes since boot."),
        "- A failed measurement (an error answer, no answer within 60 s, workers that never came up) is shown as "
        "`✗ failed: reason` and the run goes on; the harness then exits 1.",
    ]
    lines += ["", "### Commands", "", "```sh", f"# harness\n{data['commands']['harness']}", f"# build\n{data['commands']['build']}"]
    lines += data["commands"]["compile"]
    lines += ["# contenders (paths are per-run temp dirs)",
              data["commands"]["contenders"]["poolvisor"],
              data["commands"]["contenders"]["floor"], "```"]
    if data["notes"]:
        lines += ["", "### Notes from this run", ""]
        lines += ["- " + re.sub(r"/tmp/poolvisor-bench[.-][A-Za-z0-9_]+", "$TMP", x) for x in data["notes"]]
    return "\n".join(lines)


def large_notes(cells, other_load):
    notes = []
    for when, procs in other_load.items():
        for p in procs:
            notes.append(f"**Machine not quiet ({when}):** pid {p['pid']} ({p['comm']}: `{p['cmdline']}`), not started by "
                         f"the harness, used {p['cpu_share'] * 100:.0f} % of a CPU; every number is perturbed.")
    for c in cells:
        tag = f"{c['contender']} ({c['kind']}, N={c['n']}, round {c['round']})"
        if not c.get("ok"):
            notes.append(f"**Failed:** {tag}: {c.get('error', 'unknown error')}")
        for key, why in c.get("failures", {}).items():
            notes.append(f"**{tag}: {key} failed:** {why}")
        if c.get("log_emfile_lines"):
            notes.append(f"{tag}: the supervisor logged 'Too many open files' {c['log_emfile_lines']} time(s).")
        if c.get("exit_code") not in (0, None):
            notes.append(f"{tag}: exited with status {c['exit_code']} after SIGTERM (expected 0).")
        if c.get("stop_problem"):
            notes.append(f"{tag}: stopping it: {c['stop_problem']}.")
    return notes


# --------------------------------------------------------------------------------------------------

class Ctx:
    pass


def report_large(ctx, args, facts, capacity, rounds, seed, reloads, cells, rows, reload_memory, other_load, failed,
                 t_run, before, before_desc):
    """The large mode's report: bench-results/<run>/BENCHMARKS.md and .json only, never the repo root's."""
    n = args.large_n
    data = {
        "schema": 1,
        "mode": "large",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": round(time.monotonic() - t_run, 1),
        "machine": facts,
        "config": {"n": n, "rounds": rounds, "contenders": ["poolvisor", "floor"], "restarts": ctx.restarts,
                   "restart_gap_ms": [50, 100], "settle_s": ctx.large_settle, "status_runs": LARGE_STATUS_RUNS,
                   "status_json_runs": LARGE_JSON_RUNS, "probe_gap_ms": ctx.probe_gap * 1000,
                   "warm_up": ctx.warm_up, "warm_up_start_ms": getattr(ctx, "warm_up_ms", None),
                   "crash_n": min(args.crash_n, n), "crash_window_s": ctx.crash_window, "reloads": reloads,
                   "nofile": capacity["nofile"], "capacity": capacity, "drain_seconds": DRAIN_SECONDS, "seed": seed},
        "commands": {
            "harness": args.harness_cmd,
            "build": args.build_cmd,
            "compile": args.compile_cmd,
            "contenders": {
                "poolvisor": "RUNTIME_DIRECTORY=$TMP/<cell>/runtime $TMP/bin/poolvisor run --config $TMP/<cell>/pools.toml --log-level warning --socket $TMP/<cell>/runtime/control.sock >bench-results/<run>/logs/<cell>.log 2>&1",
                "floor": "BENCH_SOCKET=$TMP/<cell>/bench.sock $TMP/bin/bench-floor N $TMP/bin/bench-worker",
            },
            "pools_toml": POOLS_TOML.format(drain=DRAIN_SECONDS, worker="$TMP/bin/bench-worker", n="N", sock="$TMP/<cell>/bench.sock"),
            "crash_pools_toml": CRASH_POOLS_TOML.format(drain=DRAIN_SECONDS, worker="$TMP/bin/bench-worker", n="N", sock="$TMP/<cell>/bench.sock"),
        },
        "cells": cells,
        "large": {"n": n, "table": rows},
        "other_load": other_load,
        "ok": not failed,
        "json_name": "BENCHMARKS.json",
    }
    if reload_memory is not None:
        data["reload_memory"] = reload_memory
    data["notes"] = large_notes(cells, other_load)
    if reload_memory is not None and reload_memory["result"].get("error"):
        data["notes"].append(f"**Failed (reload memory):** {reload_memory['result']['error']}")
    data["_before"], data["_before_desc"] = before, before_desc
    generated = render_large(data)
    data.pop("_before")
    data.pop("_before_desc")
    if before_desc:
        data["before"] = args.before

    print(large_markdown(rows, n, before))
    if reload_memory is not None:
        print("\n".join(reload_memory_section(data, before)))
    print()
    for x in data["notes"]:
        print(f"note: {x}")
    with open(os.path.join(ctx.results, "BENCHMARKS.json"), "w") as f:
        f.write(json.dumps(data, indent=2) + "\n")
    with open(os.path.join(ctx.results, "BENCHMARKS.md"), "w") as f:
        f.write(f"# poolvisor benchmarks at N = {n}\n\n{BEGIN_MARK}\n{generated}\n{END_MARK}\n")
    total = ""
    try:
        total = f", {time.time() - float(os.environ['BENCH_T0']):.1f} s in all with the builds"
    except (KeyError, ValueError):
        pass
    log(f"report: {ctx.results}/BENCHMARKS.md ({data['duration_s']} s of measuring{total}); BENCHMARKS.md/json at the "
        f"repo root are not touched by --large")
    if failed:
        log("some measurements failed (see the report): exit status 1")
    return 1 if failed else 0


# The blocks a run of their own (--probes-only, --metrics-only, --upgrade-only) can write, by their key in BENCHMARKS.json: their
# markers in BENCHMARKS.md, the markers they go after when they are not there yet (the first found), the title of
# the run's own report, and how they print and render.
BLOCKS = {
    "probe_cost": {"begin": PROBES_BEGIN_MARK, "end": PROBES_END_MARK, "after": (END_MARK,), "only": "probes_only",
                   "title": "probe cost", "name": "probe-cost", "table": lambda b: probe_cost_markdown(b["table"]),
                   "section": probe_cost_section},
    "metrics_cost": {"begin": METRICS_BEGIN_MARK, "end": METRICS_END_MARK, "after": (PROBES_END_MARK, END_MARK),
                     "only": "metrics_only", "title": "metrics cost", "name": "metrics",
                     "table": lambda b: metrics_markdown(b["idle_table"], b["scrape_table"]),
                     "section": metrics_cost_section},
    "upgrade": {"begin": UPGRADE_BEGIN_MARK, "end": UPGRADE_END_MARK,
                "after": (METRICS_END_MARK, PROBES_END_MARK, END_MARK), "only": "upgrade_only", "title": "upgrade",
                "name": "upgrade", "table": lambda b: upgrade_markdown(b["table"], b["summary"]),
                "section": upgrade_section},
}


def write_block(md_path, key, block):
    spec = BLOCKS[key]
    write_markdown_block(md_path, spec["begin"], spec["end"], "\n".join(spec["section"](block)), after=spec["after"])


def report_block_only(ctx, args, facts, key, block, other_load, failed, t_run):
    """--probes-only, --metrics-only, --upgrade-only: bench-results/<run>/BENCHMARKS.md and .json with that block alone; in a full run
    that measured it all, also its block of the repo root's BENCHMARKS.md and its key in the root's BENCHMARKS.json,
    nothing else of either."""
    spec = BLOCKS[key]
    for when, procs in other_load.items():
        for p in procs:
            block["notes"].append(f"**Machine not quiet ({when}):** pid {p['pid']} ({p['comm']}: `{p['cmdline']}`), not "
                                  f"started by the harness, used {p['cpu_share'] * 100:.0f} % of a CPU; every number is "
                                  f"perturbed.")
    generated = "\n".join(spec["section"](block))
    data = {"schema": 1, "mode": block["mode"], spec["only"]: True, "date": block["date"],
            "duration_s": round(time.monotonic() - t_run, 1), "machine": facts, "other_load": other_load,
            key: block, "ok": not failed, "json_name": "BENCHMARKS.json"}
    print(spec["table"](block))
    print()
    for x in block["notes"]:
        print(f"note: {x}")
    with open(os.path.join(ctx.results, "BENCHMARKS.json"), "w") as f:
        f.write(json.dumps(data, indent=2) + "\n")
    with open(os.path.join(ctx.results, "BENCHMARKS.md"), "w") as f:
        f.write(f"# poolvisor benchmarks: {spec['title']}\n\n{spec['begin']}\n{generated}\n{spec['end']}\n")
    if block["mode"] == "full" and not failed and not args.poolvisor_given:
        write_block(os.path.join(args.root, "BENCHMARKS.md"), key, block)
        write_json_key(os.path.join(args.root, "BENCHMARKS.json"), key, block)
        log(f"wrote the {spec['name']} block of {os.path.join(args.root, 'BENCHMARKS.md')} and `{key}` in "
            f"BENCHMARKS.json (nothing else of either)")
    elif block["mode"] == "full":
        log("some measurements failed, or the binary was given: BENCHMARKS.md/json at the repo root left as they were")
    total = ""
    try:
        total = f", {time.time() - float(os.environ['BENCH_T0']):.1f} s in all with the builds"
    except (KeyError, ValueError):
        pass
    log(f"report: {ctx.results}/BENCHMARKS.md ({data['duration_s']} s of measuring{total})")
    if failed:
        log("some measurements failed (see the report): exit status 1")
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="N = 10, 100; one round; 3 s idle; report under bench-results/ only")
    ap.add_argument("--poolvisor", required=True)
    ap.add_argument("--worker", required=True)
    ap.add_argument("--floor", required=True)
    ap.add_argument("--supervisord", default=shutil.which("supervisord") or "/usr/bin/supervisord")
    ap.add_argument("--root", required=True, help="the repo root")
    ap.add_argument("--results", required=True, help="this run's directory under bench-results/")
    ap.add_argument("--build-cmd", default="")
    ap.add_argument("--compile-cmd", action="append", default=[])
    ap.add_argument("--harness-cmd", default="scripts/bench")
    ap.add_argument("--ns", default=None, help="comma-separated N (default 10,100,1000; --quick 10,100)")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--idle", type=float, default=None, help="idle window, s")
    ap.add_argument("--restarts", type=int, default=20)
    ap.add_argument("--contenders", default=",".join(CONTENDERS))
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--tmp", default=None, help="an empty directory for this run (default: a new one under /tmp)")
    ap.add_argument("--large", action="store_true",
                    help=f"large mode: N = {LARGE_N}, poolvisor and the floor only, 1 round; start, restart, stop, RSS and fds "
                         f"before/after status, status settled and during the start wave and beside a crash loop, the reload-"
                         f"memory row; report under bench-results/ only")
    ap.add_argument("--large-n", type=int, default=LARGE_N, help="N of the large mode (e.g. 500 while developing the harness)")
    ap.add_argument("--nofile", type=int, default=LARGE_NOFILE,
                    help="large mode: RLIMIT_NOFILE (soft and hard) the contenders get (default %(default)s, as in the issue)")
    ap.add_argument("--crash-n", type=int, default=LARGE_CRASH_N, help="large mode: replicas of the crash-looping pool (at most N)")
    ap.add_argument("--crash-window", type=float, default=LARGE_CRASH_WINDOW_S,
                    help="large mode: seconds of status requests beside the crash-looping pool")
    ap.add_argument("--probe-gap-ms", type=float, default=PROBE_GAP_S * 1000,
                    help="large mode: time between a status answer and the next request during a wave (default %(default)g)")
    ap.add_argument("--no-warm-up", action="store_true",
                    help="large mode: skip the unmeasured launch of the floor at N before the measured cells")
    ap.add_argument("--reloads", type=int, default=None,
                    help=f"reloads of the reload-memory row (default {RELOAD_MEMORY_DEFAULT['full']}; --quick "
                         f"{RELOAD_MEMORY_DEFAULT['quick']}); 0 skips the row")
    ap.add_argument("--poolvisor-given", action="store_true",
                    help="the poolvisor binary was not built from this checkout (scripts/bench --poolvisor-bin=PATH): "
                         "the report names it by --poolvisor-label and its sha256, and the repo root is never written")
    ap.add_argument("--poolvisor-label", default=None, help="with --poolvisor-given: what the binary is, e.g. 'commit 25c6f73'")
    ap.add_argument("--before", default=None,
                    help="an earlier --large run's BENCHMARKS.json: its poolvisor figures become a 'before' column")
    ap.add_argument("--probes-only", action="store_true",
                    help="only the probe-cost rows (poolvisor with N workers and a readiness probe of each kind, and "
                         "without); a full run updates only their block of BENCHMARKS.md and `probe_cost` in BENCHMARKS.json")
    ap.add_argument("--no-probes", action="store_true", help="skip the probe-cost rows")
    ap.add_argument("--metrics-only", action="store_true",
                    help="only the metrics rows (poolvisor with N workers, without metrics_listen and with it: idle CPU, "
                         "wake-ups and RSS with nobody scraping, then scrapes); a full run updates only their block of "
                         "BENCHMARKS.md and `metrics_cost` in BENCHMARKS.json")
    ap.add_argument("--no-metrics", action="store_true", help="skip the metrics rows")
    ap.add_argument("--metrics-n", type=int, default=None,
                    help=f"workers of the metrics rows (default {METRICS_DEFAULTS['full']['n']}; --quick "
                         f"{METRICS_DEFAULTS['quick']['n']}); their idle windows are --idle's")
    ap.add_argument("--upgrade-only", action="store_true",
                    help="only the upgrade rows (poolvisor with N workers, upgraded in place several times in a row "
                         "between two copies of its binary); a full run updates only their block of BENCHMARKS.md and "
                         "`upgrade` in BENCHMARKS.json")
    ap.add_argument("--no-upgrade", action="store_true", help="skip the upgrade rows")
    ap.add_argument("--upgrade-n", type=int, default=None,
                    help=f"workers of the upgrade rows (default {UPGRADE_DEFAULTS['full']['n']}; --quick "
                         f"{UPGRADE_DEFAULTS['quick']['n']})")
    ap.add_argument("--upgrades", type=int, default=None,
                    help=f"upgrades in a row (default {UPGRADE_DEFAULTS['full']['upgrades']}; --quick "
                         f"{UPGRADE_DEFAULTS['quick']['upgrades']})")
    ap.add_argument("--probe-n", type=int, default=None,
                    help=f"workers of the probe-cost rows (default {PROBE_DEFAULTS['full']['n']}; --quick "
                         f"{PROBE_DEFAULTS['quick']['n']})")
    ap.add_argument("--probe-period", type=float, default=None,
                    help=f"period_seconds of their probes (default {PROBE_DEFAULTS['full']['period']:g}; --quick "
                         f"{PROBE_DEFAULTS['quick']['period']:g})")
    ap.add_argument("--probe-window", type=float, default=None,
                    help=f"their measuring window in seconds, a whole number of periods (default "
                         f"{PROBE_DEFAULTS['full']['window']:g}; --quick {PROBE_DEFAULTS['quick']['window']:g})")
    args = ap.parse_args()

    if args.large and args.quick:
        ap.error("--large and --quick do not go together: --quick is the CI smoke test, --large takes minutes")
    if args.large and (args.ns or args.contenders != ",".join(CONTENDERS)):
        ap.error("--large measures N = --large-n with poolvisor and the floor; --ns and --contenders do not apply")
    if args.large and args.large_n < 1:
        ap.error("--large-n must be positive")
    if args.probes_only and (args.no_probes or args.large):
        ap.error("--probes-only goes with neither --no-probes nor --large")
    if args.metrics_only and (args.no_metrics or args.large or args.probes_only):
        ap.error("--metrics-only goes with neither --no-metrics, --large nor --probes-only")
    metrics_cfg = dict(METRICS_DEFAULTS["quick" if args.quick else "full"])
    if args.metrics_n is not None:
        metrics_cfg["n"] = args.metrics_n
    if metrics_cfg["n"] < 1:
        ap.error("--metrics-n must be positive")
    if args.upgrade_only and (args.no_upgrade or args.large or args.probes_only or args.metrics_only):
        ap.error("--upgrade-only goes with neither --no-upgrade, --large, --probes-only nor --metrics-only")
    upgrade_cfg = dict(UPGRADE_DEFAULTS["quick" if args.quick else "full"])
    if args.upgrade_n is not None:
        upgrade_cfg["n"] = args.upgrade_n
    if args.upgrades is not None:
        upgrade_cfg["upgrades"] = args.upgrades
    if upgrade_cfg["n"] < 1:
        ap.error("--upgrade-n must be positive")
    if upgrade_cfg["upgrades"] < 1:
        ap.error("--upgrades must be positive")
    probe_cfg = dict(PROBE_DEFAULTS["quick" if args.quick else "full"])
    for key in ("n", "period", "window"):
        if getattr(args, f"probe_{key}") is not None:
            probe_cfg[key] = getattr(args, f"probe_{key}")
    periods = probe_cfg["window"] / probe_cfg["period"] if probe_cfg["period"] > 0 else 0
    if probe_cfg["n"] < 1 or probe_cfg["period"] < 0.1 or periods < 1 or abs(periods - round(periods)) > 1e-6:
        ap.error(f"the probe rows need N ≥ 1, a period of 0.1 s or more and a window of a whole number of periods "
                 f"(N = {probe_cfg['n']}, period {probe_cfg['period']:g} s, window {probe_cfg['window']:g} s)")
    before = before_desc = None
    if args.before:
        try:
            before, before_desc = load_before(args.before)
        except (OSError, ValueError, KeyError) as e:
            ap.error(f"--before {args.before}: {e}")
    mode = "large" if args.large else "quick" if args.quick else "full"
    reloads = args.reloads if args.reloads is not None else RELOAD_MEMORY_DEFAULT[mode]

    quick = args.quick
    ns = [args.large_n] if args.large else [int(x) for x in (args.ns or ("10,100" if quick else "10,100,1000")).split(",")]
    rounds = args.rounds or (1 if quick or args.large else 3)
    contenders = ["poolvisor", "floor"] if args.large else [c for c in args.contenders.split(",") if c]
    for c in contenders:
        if c not in CONTENDERS:
            ap.error(f"unknown contender {c}")
    seed = args.seed if args.seed is not None else int(time.time())
    # The probe-cost rows: poolvisor only, never in --large (its N is 10,000 for other reasons).
    run_probes = not args.no_probes and not args.large and "poolvisor" in contenders
    if args.probes_only and not run_probes:
        ap.error("--probes-only measures poolvisor: --contenders must include it")
    # The metrics rows: likewise.
    run_metrics = not args.no_metrics and not args.large and not args.probes_only and "poolvisor" in contenders
    if args.metrics_only and not run_metrics:
        ap.error("--metrics-only measures poolvisor: --contenders must include it")
    # The upgrade rows: likewise, and in no run of another block alone.
    run_upgrade = (not args.no_upgrade and not args.large and not args.probes_only and not args.metrics_only
                   and "poolvisor" in contenders)
    if args.upgrade_only and not run_upgrade:
        ap.error("--upgrade-only measures poolvisor: --contenders must include it")
    if args.metrics_only or args.upgrade_only:
        run_probes = False
    if args.upgrade_only:
        run_metrics = False
    only = args.probes_only or args.metrics_only or args.upgrade_only
    if only:
        reloads = 0

    # Orphaned workers (of a supervisor that died) become our children, so we can reap and count them.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log("warning: could not become a child subreaper; orphans go to PID 1")

    def on_signal(signum, frame):
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)   # one is enough: let the cleanup run to its end
        raise Interrupted(signal.Signals(signum).name)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    ctx = Ctx()
    ctx.tracker = Tracker()
    ctx.rng = random.Random(seed)
    ctx.idle = args.idle if args.idle is not None else (3.0 if quick else 20.0)
    ctx.settle = 0.5 if quick else 1.0
    ctx.large_settle = LARGE_SETTLE_S
    ctx.crash_window = args.crash_window
    ctx.probe_gap = args.probe_gap_ms / 1000
    ctx.warm_up = not args.no_warm_up
    ctx.restarts = args.restarts
    ctx.probe_cfg = probe_cfg
    ctx.metrics_cfg = metrics_cfg
    ctx.upgrade_cfg = upgrade_cfg
    ctx.results = os.path.abspath(args.results)
    ctx.logdir = os.path.join(ctx.results, "logs")
    os.makedirs(ctx.logdir, exist_ok=True)
    ctx.tmp = os.path.abspath(args.tmp) if args.tmp else tempfile.mkdtemp(prefix="poolvisor-bench-")
    os.chmod(ctx.tmp, 0o755)
    cells = []
    failed = False
    reload_memory = None
    probe_results = None
    metrics_results = metrics_python = None
    upgrade_result = None
    capacity = None
    large_cells = large_rows = None
    t_run = time.monotonic()
    try:
        if args.large:
            # before any contender: the limit is inherited by every process started from here
            capacity = prepare_large_limits(args.large_n, min(args.crash_n, args.large_n), args.nofile)
            log(f"large mode: RLIMIT_NOFILE {capacity['nofile'][0]}/{capacity['nofile'][1]} for the contenders; "
                f"kernel.pid_max {capacity['pid_max']}, {capacity['tasks_in_use']} tasks running")
        # Private copies: a rebuild (or another engineer's build) during the run cannot swap binaries,
        # and any process running our worker copy is known to be ours.
        bindir = os.path.join(ctx.tmp, "bin")
        os.makedirs(bindir)
        for name, src in (("poolvisor", args.poolvisor), ("bench-worker", args.worker), ("bench-floor", args.floor),
                          ("bench-probe-target.py", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                 "bench-probe-target.py"))):
            shutil.copy2(src, os.path.join(bindir, name))
        ctx.poolvisor = os.path.join(bindir, "poolvisor")
        ctx.probe_target = os.path.join(bindir, "bench-probe-target.py")
        ctx.worker = os.path.join(bindir, "bench-worker")
        ctx.floor = os.path.join(bindir, "bench-floor")
        ctx.supervisord = args.supervisord
        ctx.tracker.worker_exe = ctx.worker

        # Fail fast if the pools file the harness writes is no longer valid for this poolvisor.
        if "poolvisor" in contenders:
            probe = os.path.join(ctx.tmp, "probe.toml")
            with open(probe, "w") as f:
                f.write(POOLS_TOML.format(drain=DRAIN_SECONDS, worker=ctx.worker, n=10, sock=os.path.join(ctx.tmp, "x.sock")))
            chk = subprocess.run([ctx.poolvisor, "check", "--config", probe], capture_output=True, text=True, timeout=60)
            if chk.returncode != 0:
                raise HarnessError(f"`poolvisor check` rejects the bench pools file:\n{chk.stdout}{chk.stderr}")
            extra = []
            if reloads > 0:
                extra.append(("reload-memory", reload_pools_toml(ctx.worker, os.path.join(ctx.tmp, "x.sock"))))
            if args.large:
                extra.append(("crash-loop", CRASH_POOLS_TOML.format(drain=DRAIN_SECONDS, worker=ctx.worker, n=10,
                                                                     sock=os.path.join(ctx.tmp, "x.sock"))))
            if run_probes:
                for variant in PROBE_VARIANTS:
                    extra.append((f"probe-cost ({variant})", probe_pools_toml(variant, ctx.worker, 10, os.path.join(
                        ctx.tmp, "x.sock"), 8080, probe_cfg["period"])))
            if run_metrics:
                extra.append(("metrics", metrics_pools_toml(ctx.worker, 10, os.path.join(ctx.tmp, "x.sock"),
                                                            "127.0.0.1:9325")))
            for what, text in extra:
                with open(probe, "w") as f:
                    f.write(text)
                chk = subprocess.run([ctx.poolvisor, "check", "--config", probe], capture_output=True, text=True, timeout=60)
                if chk.returncode != 0:
                    raise HarnessError(f"`poolvisor check` rejects the {what} pools file:\n{chk.stdout}{chk.stderr}")

        facts = machine_facts(args.root, ctx.poolvisor)
        if args.poolvisor_given:
            facts["poolvisor_commit"] = args.poolvisor_label or "unknown (a binary given with --poolvisor-bin)"
            facts["poolvisor_worktree_dirty"] = False
            facts["poolvisor_dirty_files"] = []
            facts["poolvisor_binary_given"] = os.path.abspath(args.poolvisor)
            args.build_cmd = f"(not built: --poolvisor-bin={os.path.abspath(args.poolvisor)})"
        other_load = {"before the run": other_busy_processes(os.getpid())}
        for p in other_load["before the run"]:
            log(f"warning: the machine is not quiet: pid {p['pid']} ({p['comm']}) uses {p['cpu_share'] * 100:.0f} % of a CPU")
        if args.large:
            log(f"large run: N={args.large_n}, {rounds} round(s), crash-looping pool of {min(args.crash_n, args.large_n)}, "
                f"{reloads} reloads, seed {seed}; results in {ctx.results}")
            large_cells, large_rows, large_failed = run_large(ctx, args, args.large_n, rounds)
            failed = failed or large_failed
        elif args.probes_only:
            log(f"{mode} run, probe cost only: N={probe_cfg['n']}, period {probe_cfg['period']:g} s, window "
                f"{probe_cfg['window']:g} s; results in {ctx.results}")
        elif args.metrics_only:
            log(f"{mode} run, metrics cost only: N={metrics_cfg['n']}, idle window {ctx.idle:g} s; results in {ctx.results}")
        elif args.upgrade_only:
            log(f"{mode} run, upgrade only: N={upgrade_cfg['n']}, {upgrade_cfg['upgrades']} upgrades; results in "
                f"{ctx.results}")
        else:
            log(f"{mode} run: N={ns}, {rounds} round(s), idle {ctx.idle:g} s, {reloads} reloads, "
                + (f"probe cost at N={probe_cfg['n']}, " if run_probes else "no probe cost, ")
                + (f"metrics cost at N={metrics_cfg['n']}, " if run_metrics else "no metrics cost, ")
                + (f"{upgrade_cfg['upgrades']} upgrades at N={upgrade_cfg['n']}, " if run_upgrade else "no upgrade, ")
                + f"seed {seed}; results in {ctx.results}")
        for rnd in range(0 if args.large or only else rounds):
            for n in ns:
                k = rnd % len(contenders)
                order = contenders[k:] + contenders[:k]
                for c in order:
                    t = time.monotonic()
                    res = run_cell(ctx, c, n, rnd)
                    cells.append(res)
                    if res.get("control_plane_errors"):
                        failed = True   # the other numbers of the cell stand; the run says it is incomplete
                    if res["ok"]:
                        log(f"round {rnd + 1} N={n} {c}: start {res['start_ms']:.1f} ms, restart p50 {res['restart_p50_ms']:.2f} / "
                            f"p95 {res['restart_p95_ms']:.2f} ms, idle {res['idle_cpu_ms_per_s']:.3f} ms/s "
                            f"({res['idle_ctxsw']} cs), RSS {res['rss_kib'] / 1024:.1f} MiB, stop {res['stop_ms']:.1f} ms"
                            + (f", reload {res['reload_unchanged_ms']:.1f} ms, status {res['status_ms']:.1f} ms "
                               f"(raw reload {res.get('reload_raw_ms', float('nan')):.2f} ms, status command {res.get('status_cli_ms', float('nan')):.1f} ms)"
                               if res.get("reload_unchanged_ms") is not None and res.get("status_ms") is not None else "")
                            + f" [{time.monotonic() - t:.1f} s]")
                    else:
                        failed = True
                    time.sleep(0.3)
        # N-independent, after every cell so that it disturbs none of them
        if reloads > 0 and "poolvisor" in contenders:
            rm = measure_reload_memory(ctx, reloads)
            reload_memory = {"result": rm, "table": reload_memory_table(rm)}
            if not rm.get("ok"):
                failed = True
        # poolvisor only, last: its windows are long and nothing else runs beside them
        if run_probes:
            t = time.monotonic()
            probe_results = measure_probe_cost(ctx, probe_cfg["n"], probe_cfg["period"], probe_cfg["window"])
            log(f"probe cost: {len(probe_results)} rows [{time.monotonic() - t:.1f} s]")
            if not all(r.get("ok") for r in probe_results):
                failed = True
        if run_metrics:
            t = time.monotonic()
            metrics_results, metrics_python = measure_metrics_cost(ctx, metrics_cfg["n"], metrics_cfg["spaced"])
            log(f"metrics cost: {len(metrics_results)} runs [{time.monotonic() - t:.1f} s]")
            if not all(r.get("ok") for r in metrics_results):
                failed = True
        if run_upgrade:
            t = time.monotonic()
            upgrade_result = measure_upgrade(ctx, upgrade_cfg["n"], upgrade_cfg["upgrades"])
            log(f"upgrade: {len(upgrade_result['upgrades'])} upgrade(s) [{time.monotonic() - t:.1f} s]")
            if not upgrade_result.get("ok"):
                failed = True
    except Interrupted as e:
        log(f"interrupted ({e}): killing everything started")
        ctx.tracker.sweep()
        shutil.rmtree(ctx.tmp, ignore_errors=True)
        return 130
    except HarnessError as e:
        log(f"error: {e}")
        ctx.tracker.sweep()
        shutil.rmtree(ctx.tmp, ignore_errors=True)
        return 1
    except BaseException:
        ctx.tracker.sweep()
        shutil.rmtree(ctx.tmp, ignore_errors=True)
        raise
    left = ctx.tracker.sweep()
    shutil.rmtree(ctx.tmp, ignore_errors=True)
    after = other_busy_processes(os.getpid())
    before_pids = {p["pid"] for p in other_load["before the run"]}
    if [p for p in after if p["pid"] not in before_pids]:
        other_load["after the run"] = [p for p in after if p["pid"] not in before_pids]
    if left:
        log(f"error: processes left over: {left}")
        failed = True

    if args.large:
        return report_large(ctx, args, facts, capacity, rounds, seed, reloads, large_cells, large_rows, reload_memory,
                            other_load, failed, t_run, before, before_desc)
    probe_cost = None if probe_results is None else probe_cost_data(ctx, args, facts, probe_results, mode)
    if args.probes_only:
        return report_block_only(ctx, args, facts, "probe_cost", probe_cost, other_load, failed, t_run)
    metrics_cost = (None if metrics_results is None else
                    metrics_cost_data(ctx, args, facts, metrics_results, metrics_python, mode))
    if args.metrics_only:
        return report_block_only(ctx, args, facts, "metrics_cost", metrics_cost, other_load, failed, t_run)
    upgrade = None if upgrade_result is None else upgrade_data(ctx, args, facts, upgrade_result, mode)
    if args.upgrade_only:
        return report_block_only(ctx, args, facts, "upgrade", upgrade, other_load, failed, t_run)
    blocks = {k: v for k, v in (("probe_cost", probe_cost), ("metrics_cost", metrics_cost), ("upgrade", upgrade))
              if v is not None}

    # ---- report ----
    med = aggregate(cells, ns)
    rows, growth = build_table(med, ns)
    table = markdown_table(rows, growth, quick, ns, rounds)
    harness_cmd = args.harness_cmd
    pools_example = POOLS_TOML.format(drain=DRAIN_SECONDS, worker="$TMP/bin/bench-worker", n="N", sock="$TMP/<cell>/bench.sock")
    sup_example = SUPERVISORD_CONF.format(logdir="bench-results/<run>/logs", tag="<cell>", cell="$TMP/<cell>",
                                         minfds="max(1024, 6N+256)", minprocs="N+200", worker="$TMP/bin/bench-worker",
                                         n="N", drain=DRAIN_SECONDS, sock="$TMP/<cell>/bench.sock")
    data = {
        "schema": 1,
        "mode": mode,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": round(time.monotonic() - t_run, 1),
        "machine": facts,
        "config": {"ns": ns, "rounds": rounds, "contenders": contenders, "idle_seconds": ctx.idle,
                   "settle_seconds": ctx.settle, "restarts": ctx.restarts, "restart_gap_ms": [50, 100],
                   "drain_seconds": DRAIN_SECONDS, "seed": seed, "target_n": TARGET_N, "reloads": reloads},
        "commands": {
            "harness": harness_cmd,
            "build": args.build_cmd,
            "compile": args.compile_cmd,
            "contenders": {
                "poolvisor": "RUNTIME_DIRECTORY=$TMP/<cell>/runtime $TMP/bin/poolvisor run --config $TMP/<cell>/pools.toml --log-level warning --socket $TMP/<cell>/runtime/control.sock >bench-results/<run>/logs/<cell>.log 2>&1",
                "poolvisor_control": [f"$TMP/bin/poolvisor reload --socket $TMP/<cell>/runtime/control.sock  # x{RELOAD_RUNS} per cell",
                                      f"$TMP/bin/poolvisor status --socket $TMP/<cell>/runtime/control.sock  # x{STATUS_RUNS} per cell"],
                "floor": "BENCH_SOCKET=$TMP/<cell>/bench.sock $TMP/bin/bench-floor N $TMP/bin/bench-worker",
                "supervisord": "supervisord -c $TMP/<cell>/supervisord.conf",
            },
            "pools_toml": pools_example,
            "supervisord_conf": sup_example,
        },
        "cells": cells,
        "medians": med,
        "table": rows,
        "rss_growth_kib_per_worker": growth,
        "ok": not failed,
    }
    data["other_load"] = other_load
    if reload_memory is not None:
        data["reload_memory"] = reload_memory
    data.update(blocks)
    data["diagnostics_table"] = diagnostics_table(med, ns)
    data["notes"] = notes_for(cells, med, ns, quick, other_load)
    if reload_memory is not None and reload_memory["result"].get("error"):
        data["notes"].append(f"**Failed (reload memory):** {reload_memory['result']['error']}")
    data["json_name"] = "BENCHMARKS.json"
    generated = render_generated(data, table)
    data.pop("diagnostics_table")

    print(table)
    if reload_memory is not None:
        print("\n".join(reload_memory_section(data)))
    for key, block in blocks.items():
        print()
        print(BLOCKS[key]["table"](block))
    print()
    for n in data["notes"] + [x for block in blocks.values() for x in block["notes"]]:
        print(f"note: {n}")

    json_text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    with open(os.path.join(ctx.results, "BENCHMARKS.json"), "w") as f:
        f.write(json_text)
    write_markdown(os.path.join(ctx.results, "BENCHMARKS.md"), generated)
    for key, block in blocks.items():
        write_block(os.path.join(ctx.results, "BENCHMARKS.md"), key, block)
    if not quick and not failed and not args.poolvisor_given:
        root_json = os.path.join(args.root, "BENCHMARKS.json")
        # --no-probes, --no-metrics, --no-upgrade: the skipped block of BENCHMARKS.md stays as an earlier run left it,
        # and so does its key in the JSON
        try:
            with open(root_json) as f:
                earlier = json.load(f)
        except (OSError, ValueError):
            earlier = {}
        kept = {k: earlier[k] for k in BLOCKS if k not in blocks and earlier.get(k) is not None}
        if kept:
            data.update(kept)
            json_text = json.dumps(data, indent=2, sort_keys=False) + "\n"
        with open(root_json, "w") as f:
            f.write(json_text)
        write_markdown(os.path.join(args.root, "BENCHMARKS.md"), generated)
        for key, block in blocks.items():
            write_block(os.path.join(args.root, "BENCHMARKS.md"), key, block)
        log(f"wrote {os.path.join(args.root, 'BENCHMARKS.md')} and BENCHMARKS.json")
    elif not quick:
        log("some measurements failed, or the binary was given: BENCHMARKS.md/json at the repo root left as they were")
    total = ""
    try:
        total = f", {time.time() - float(os.environ['BENCH_T0']):.1f} s in all with the builds"
    except (KeyError, ValueError):
        pass
    log(f"report: {ctx.results}/BENCHMARKS.md ({data['duration_s']} s of measuring{total})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
