"""Helpers shared by the benchmarks: a served bastion process, /proc readings, percentiles."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

MIB = 1024 * 1024


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on uvloop where installed (as the bastion does)."""
    try:
        import uvloop  # noqa: PLC0415 - optional
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(coro)
    return uvloop.run(coro)


def one_use_ticket(identity: Any, user: str, target: str) -> str:
    """A one-connection ticket for `user` on `target`, good for an hour (benches log in so
    instead of answering a TOTP prompt)."""
    token = f"bt_{secrets.token_urlsafe(24)}"
    identity.add_ticket(user, target, token, datetime.now(UTC) + timedelta(hours=1), "bench")
    return token


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x"


def write_text_file(path: Path, size: int) -> None:
    """`size` bytes of base64 text lines (a log-like, incompressible file)."""
    with path.open("wb") as out:
        written = 0
        while written < size:
            chunk = base64.encodebytes(os.urandom(3 * MIB // 4))[: size - written]
            out.write(chunk)
            written += len(chunk)
    path.chmod(0o644)


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc/PID/status (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


class ServedBastion:
    """`python -m bastion --config CONFIG serve` as its own process, logging to a file."""

    def __init__(self, config: Path, log_path: Path) -> None:
        self.config = config
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServedBastion:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bastion", "--config", str(self.config), "serve"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("the bastion is not running")
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds; returns the exit code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def log_problems(self, limit: int = 5) -> tuple[int, dict[str, int], list[str]]:
        """(lines, count per level, the first `limit` warning-or-worse lines) of the log."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return 0, {}, []
        levels: dict[str, int] = {}
        worst: list[str] = []
        for line in lines:
            try:
                level = str(json.loads(line).get("level", "?"))
            except (ValueError, AttributeError):
                level = "unparsed"
            levels[level] = levels.get(level, 0) + 1
            if level not in {"info", "debug"} and len(worst) < limit:
                worst.append(line[:300])
        return len(lines), levels, worst
