"""Real users log in on both doors while 1,000 hostile pre-login connections are open, and
the bastion's memory stays bounded (`bastion serve` as its own process, RSS from /proc)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from tests.flood import FloodProcess, flooded_home, pg_login, raise_fd_limit, ssh_login
from tests.harness import proc_kib
from tests.realpg import PgDatabase
from tests.realssh import Sshd

PER_DOOR = 500  # hostile connections on each door: 1,000 in all
MEMORY_BOUND_MIB = 300  # growth over the idle bastion (bench.flood: about 120 MiB); today's
# main holds every oversized password message it is sent: 4 MiB from each of 100 sockets


def test_real_users_log_in_under_a_pre_login_flood(
    tmp_path: Path, sshd: Sshd, pg: PgDatabase
) -> None:
    raise_fd_limit()
    b = flooded_home(tmp_path / "bastion", sshd, pg)
    b.release()
    proc = b.serve_process()
    flood: FloodProcess | None = None
    try:
        pg_login(b)  # warm: the first login loads what every later one shares
        idle = proc_kib(proc.pid, "VmRSS")
        flood = FloodProcess(b.pg_port, b.port, PER_DOOR)
        flood.wait_ready()
        time.sleep(3)  # the slow ones trickle, the oversized ones stream, cancels repeat
        ssh_login(b)
        pg_login(b)
        peak = proc_kib(proc.pid, "VmHWM")
        counts = flood.stop()
        flood = None
    finally:
        if flood is not None:
            flood.stop()
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert counts.get("pg_oversized connections", 0) >= PER_DOOR * 0.2
    assert counts.get("pg_cancel connections", 0) > PER_DOOR * 0.1
    assert (peak - idle) / 1024 < MEMORY_BOUND_MIB, (idle, peak)
