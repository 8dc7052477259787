#!/usr/bin/env python3
"""scripts/bench-probe-target.py: the target of the probe-cost measurement of scripts/bench.py. Python 3
standard library only; one thread, one selectors loop (epoll), non-blocking sockets.

It listens on 127.0.0.1 (port 0: the kernel picks one) and prints the port on stdout, one line, once it
accepts connections. Then, per connection:

  a request whose first line is `GET /healthz HTTP/1.x`   -> 200, counted as "http"
  any other request                                       -> 404, counted as "other"
  closed (or reset) by the peer before sending a byte     -> counted as "tcp" (a tcp_socket probe
                                                             connects and closes)

and the connection is closed after the answer (the probes say `Connection: close`). It reads commands
on stdin, one a line: `count` prints the counters as one JSON line on stdout ({"http": H, "tcp": T,
"other": O, "open": connections now open, "accepted": A}); end of file on stdin ends it.
"""

import json
import os
import selectors
import socket
import sys

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
MAX_REQUEST = 8192


def main():
    counts = {"http": 0, "tcp": 0, "other": 0, "accepted": 0}
    pending = {}   # socket -> bytes of its request so far
    sel = selectors.DefaultSelector()

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)   # the kernel caps it at net.core.somaxconn
    listener.setblocking(False)
    sel.register(listener, selectors.EVENT_READ, "listen")
    stdin = sys.stdin.buffer.raw
    os.set_blocking(stdin.fileno(), False)
    sel.register(stdin, selectors.EVENT_READ, "stdin")
    print(listener.getsockname()[1], flush=True)

    def finish(conn, what, answer=None):
        counts[what] += 1
        if answer is not None:
            try:
                conn.send(answer)   # a few bytes: the socket's buffer takes them at once
            except OSError:
                pass
        sel.unregister(conn)
        pending.pop(conn, None)
        conn.close()

    command = b""
    while True:
        for key, _ in sel.select():
            if key.data == "listen":
                while True:
                    try:
                        conn, _ = listener.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:   # ECONNABORTED, EMFILE: the next wake-up tries again
                        break
                    counts["accepted"] += 1
                    conn.setblocking(False)
                    pending[conn] = b""
                    sel.register(conn, selectors.EVENT_READ, "conn")
            elif key.data == "stdin":
                try:
                    data = stdin.read(4096)
                except BlockingIOError:
                    continue
                if data is None:   # nothing after all (a non-blocking FileIO says so with None)
                    continue
                if not data:
                    return 0
                command += data
                while b"\n" in command:
                    line, command = command.split(b"\n", 1)
                    if line.strip() == b"count":
                        print(json.dumps(dict(counts, open=len(pending))), flush=True)
            else:
                conn = key.fileobj
                try:
                    data = conn.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                so_far = pending[conn] + data
                if not data:
                    finish(conn, "tcp" if not so_far else "other")
                    continue
                pending[conn] = so_far
                if b"\r\n\r\n" in so_far or len(so_far) > MAX_REQUEST:
                    first = so_far.split(b"\r\n", 1)[0]
                    if first.startswith(b"GET /healthz HTTP/1."):
                        finish(conn, "http", OK)
                    else:
                        finish(conn, "other", NOT_FOUND)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
