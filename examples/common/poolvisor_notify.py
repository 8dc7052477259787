"""The lines a worker sends to poolvisor (or systemd): READY=1 once it takes jobs, BUSY=1 / BUSY=0
around each job, so that a shrinking pool drains idle workers first. Standard library only; does
nothing when NOTIFY_SOCKET is not set (a worker run by hand)."""
import os
import socket

_address = os.environ.get("NOTIFY_SOCKET", "")
if _address.startswith("@"):  # abstract namespace
    _address = "\0" + _address[1:]
_socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) if _address else None


def notify(*fields: str) -> None:
    if _socket is None:
        return
    try:
        _socket.sendto("\n".join(fields).encode(), _address)
    except OSError:
        pass  # poolvisor restarting its socket is not the job's problem


def ready() -> None:
    notify("READY=1")


def busy() -> None:
    notify("BUSY=1")


def idle() -> None:
    notify("BUSY=0")
