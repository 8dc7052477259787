#!/usr/bin/env python3
"""scripts/bench.py: the driver of the poolvisor benchmark. Run it through scripts/bench, which builds
poolvisor, the C worker and the C floor, and passes their paths here. Python 3 standard library only.

For each N and each contender (poolvisor, floor, supervisord), one "cell" is measured:

  start    supervisor launched -> N distinct worker pids reported (the latest worker's own
           CLOCK_MONOTONIC stamp minus the launch time)
  idle     the supervising processes' CPU time and context switches over a quiet window
  RSS      VmRSS of the supervising processes with N workers up (right after the idle window)
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
"""

import argparse
import ctypes
import datetime
import hashlib
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
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
        with open(logfile, "wb") as out:
            t_launch = now_ns()
            proc = subprocess.Popen(argv, env=env, cwd=cell, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        ctx.tracker.add(proc)

        # start ---------------------------------------------------------------------------------
        start_timeout = 30 + 0.1 * n
        give_up = time.monotonic() + start_timeout
        while not recv.wait_distinct(n, 0.25):
            if proc.poll() is not None:
                raise HarnessError(f"{tag}: the supervisor exited with status {proc.returncode} after "
                                   f"{recv.distinct()}/{n} workers had reported")
            if time.monotonic() > give_up:
                raise HarnessError(f"{tag}: only {recv.distinct()}/{n} workers reported within {start_timeout:.0f} s")
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
        live = {events[i][0]: k for k, i in enumerate(firsts)}   # pid -> replica lineage
        if proc.poll() is not None:
            raise HarnessError(f"{tag}: the supervisor exited ({proc.returncode}) right after starting")

        # idle ----------------------------------------------------------------------------------
        time.sleep(ctx.settle)
        sup = supervising_pids(proc.pid, ctx.worker)
        before_events = recv.count()
        a = cpu_sample(sup)
        sys_a = system_busy_ticks()
        t_a = now_ns()
        time.sleep(ctx.idle)
        b = cpu_sample(sup)
        sys_b = system_busy_ticks()
        t_b = now_ns()
        # CPUs busy machine-wide (anything: the contender, the harness, other load) during the window
        res["system_busy_cpus_idle_window"] = (sys_b[0] - sys_a[0]) / max(1, sys_b[1] - sys_a[1]) * (os.cpu_count() or 1)
        window = (t_b - t_a) / 1e9
        ticks, run_ns, ctx_sw = cpu_delta(a, b)
        res["idle_window_s"] = window
        res["idle_cpu_ms_per_s"] = run_ns / 1e6 / window
        res["idle_cpu_ticks_ms_per_s"] = ticks * (1000 / os.sysconf("SC_CLK_TCK")) / window
        res["idle_ctxsw"] = ctx_sw
        res["idle_ctxsw_per_s"] = ctx_sw / window
        res["idle_reports"] = recv.count() - before_events
        res["supervising_processes"] = len(sup)

        # RSS -----------------------------------------------------------------------------------
        rss = hwm = threads = fds = 0
        for pid in supervising_pids(proc.pid, ctx.worker):
            f = status_fields(pid)
            rss += kib(f.get("VmRSS"))
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
        f"- poolvisor commit `{m['poolvisor_commit']}`{dirty}; binary sha256 `{m['poolvisor_binary_sha256'][:16]}…`",
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
    lines.append("")
    lines.append("How each number is taken (per cell: one contender, one N, one round):")
    lines.append("")
    lines += [
        "- **start**: `Popen` of the supervisor → the N-th distinct worker pid's own CLOCK_MONOTONIC stamp (taken first thing in `main`).",
        f"- **idle CPU**: on-CPU time of the supervising processes (all threads; `/proc/PID/task/*/schedstat`, ns resolution) over a {cfg['idle_seconds']:g} s window starting {cfg['settle_seconds']:g} s after the last worker reported; `utime+stime` from `/proc/PID/stat` is recorded too (`idle_cpu_ticks_ms_per_s` in the JSON) but its 10 ms tick cannot resolve the 0.05 ms/s target. **idle context switches**: voluntary + nonvoluntary, all threads, same window.",
        "- **RSS**: VmRSS of the supervising processes (the supervisor, not the workers) right after the idle window, all N workers up.",
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

class Ctx:
    pass


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
    args = ap.parse_args()

    quick = args.quick
    ns = [int(x) for x in (args.ns or ("10,100" if quick else "10,100,1000")).split(",")]
    rounds = args.rounds or (1 if quick else 3)
    contenders = [c for c in args.contenders.split(",") if c]
    for c in contenders:
        if c not in CONTENDERS:
            ap.error(f"unknown contender {c}")
    seed = args.seed if args.seed is not None else int(time.time())

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
    ctx.restarts = args.restarts
    ctx.results = os.path.abspath(args.results)
    ctx.logdir = os.path.join(ctx.results, "logs")
    os.makedirs(ctx.logdir, exist_ok=True)
    ctx.tmp = os.path.abspath(args.tmp) if args.tmp else tempfile.mkdtemp(prefix="poolvisor-bench-")
    os.chmod(ctx.tmp, 0o755)
    cells = []
    failed = False
    t_run = time.monotonic()
    try:
        # Private copies: a rebuild (or another engineer's build) during the run cannot swap binaries,
        # and any process running our worker copy is known to be ours.
        bindir = os.path.join(ctx.tmp, "bin")
        os.makedirs(bindir)
        for name, src in (("poolvisor", args.poolvisor), ("bench-worker", args.worker), ("bench-floor", args.floor)):
            shutil.copy2(src, os.path.join(bindir, name))
        ctx.poolvisor = os.path.join(bindir, "poolvisor")
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

        facts = machine_facts(args.root, ctx.poolvisor)
        other_load = {"before the run": other_busy_processes(os.getpid())}
        for p in other_load["before the run"]:
            log(f"warning: the machine is not quiet: pid {p['pid']} ({p['comm']}) uses {p['cpu_share'] * 100:.0f} % of a CPU")
        log(f"{'quick' if quick else 'full'} run: N={ns}, {rounds} round(s), idle {ctx.idle:g} s, seed {seed}; results in {ctx.results}")
        for rnd in range(rounds):
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
        "mode": "quick" if quick else "full",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": round(time.monotonic() - t_run, 1),
        "machine": facts,
        "config": {"ns": ns, "rounds": rounds, "contenders": contenders, "idle_seconds": ctx.idle,
                   "settle_seconds": ctx.settle, "restarts": ctx.restarts, "restart_gap_ms": [50, 100],
                   "drain_seconds": DRAIN_SECONDS, "seed": seed, "target_n": TARGET_N},
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
    data["diagnostics_table"] = diagnostics_table(med, ns)
    data["notes"] = notes_for(cells, med, ns, quick, other_load)
    data["json_name"] = "BENCHMARKS.json"
    generated = render_generated(data, table)
    data.pop("diagnostics_table")

    print(table)
    print()
    for n in data["notes"]:
        print(f"note: {n}")

    json_text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    with open(os.path.join(ctx.results, "BENCHMARKS.json"), "w") as f:
        f.write(json_text)
    write_markdown(os.path.join(ctx.results, "BENCHMARKS.md"), generated)
    if not quick and not failed:
        with open(os.path.join(args.root, "BENCHMARKS.json"), "w") as f:
            f.write(json_text)
        write_markdown(os.path.join(args.root, "BENCHMARKS.md"), generated)
        log(f"wrote {os.path.join(args.root, 'BENCHMARKS.md')} and BENCHMARKS.json")
    elif not quick:
        log("some measurements failed: BENCHMARKS.md/json at the repo root left as they were")
    total = ""
    try:
        total = f", {time.time() - float(os.environ['BENCH_T0']):.1f} s in all with the builds"
    except (KeyError, ValueError):
        pass
    log(f"report: {ctx.results}/BENCHMARKS.md ({data['duration_s']} s of measuring{total})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
