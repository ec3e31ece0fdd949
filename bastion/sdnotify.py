"""Tell systemd how the service is doing (sd_notify): READY=1 once every door listens and
/healthz says "ok", STOPPING=1 when a stop begins. A unit with Type=notify waits for READY=1
before it counts the service as started (and before `systemctl start` returns).

The protocol is one datagram of "KEY=VALUE" lines to the AF_UNIX socket named by
$NOTIFY_SOCKET (a path, or "@name" in the abstract namespace); without it (not under
systemd, or Type=simple) nothing is sent. A failure to send is logged, never fatal: the
bastion serves all the same, and systemd's start timeout tells the operator.
"""

from __future__ import annotations

import os
import socket

import structlog

log = structlog.get_logger("bastion.sdnotify")

ENV = "NOTIFY_SOCKET"


def _address() -> str | None:
    where = os.environ.get(ENV, "")
    if where.startswith("@"):
        return "\0" + where[1:]  # the abstract namespace
    return where if where.startswith("/") else None


def notify(*lines: str) -> bool:
    """Send the lines ("READY=1", "STATUS=...") as one datagram; False if there is no socket
    to send to or the send failed."""
    address = _address()
    if address is None:
        return False
    message = "\n".join(lines).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(address)
            sock.sendall(message)
        except OSError as exc:
            log.warning("sdnotify.failed", error=exc.strerror or str(exc), sent=lines[0])
            return False
    return True
