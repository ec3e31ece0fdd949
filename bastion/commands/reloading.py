"""`bastion reload`: SIGHUP to the `bastion serve` of this configuration, and its answer."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from bastion.commands.app import App
from bastion.errors import Conflict, Exit, NotFound
from bastion.reload import is_bastion_serve, read_serve_file, serve_file_of

WAIT = 30.0  # seconds to wait for the server's answer


def reload_server(app: App, args: argparse.Namespace) -> int:
    """Find the running server by its serve file, signal it, print the outcome line; exit
    non-zero when the server refused the new configuration (its checks are the server's:
    a file that fails them is still sent, so the refusal is logged and chained)."""
    path = serve_file_of(app.config_path)
    found = read_serve_file(path)
    if found is None or not is_bastion_serve(found["pid"], path):
        raise NotFound(f"no `bastion serve` is running for this configuration ({path})")
    pid, before = found["pid"], found.get("reloads", 0)
    _hangup(pid, path)
    deadline = time.monotonic() + float(WAIT)
    while time.monotonic() < deadline:
        state = read_serve_file(path)
        if state is None or state["pid"] != pid:
            raise Conflict(f"bastion serve (pid {pid}) stopped before it answered")
        last = state.get("last")
        if state.get("reloads", 0) > before and isinstance(last, dict):
            ok = bool(last.get("ok"))
            (sys.stdout if ok else sys.stderr).write(f"bastion: {last.get('line')}\n")
            return Exit.OK if ok else Exit.CONFIG
        time.sleep(0.05)
    raise Conflict(f"sent SIGHUP to bastion serve (pid {pid}); no answer within {WAIT:g} s")


def _hangup(pid: int, path: Path) -> None:
    """SIGHUP to the process checked, through a pidfd: a pid reused once checked is no
    other process's to receive it."""
    try:
        handle = os.pidfd_open(pid)
    except OSError:
        raise NotFound(f"no `bastion serve` is running for this configuration ({path})") from None
    try:
        if not is_bastion_serve(pid, path):  # checked again, the process now pinned
            raise NotFound(f"no `bastion serve` is running for this configuration ({path})")
        signal.pidfd_send_signal(handle, signal.SIGHUP)
    finally:
        os.close(handle)
