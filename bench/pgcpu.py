"""CPU per transaction of the processes a bench path runs through, and of the whole machine
(from /proc): what bounds a path's throughput on a machine whose cores are all busy."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def process_seconds(pid: int) -> float:
    """User plus system CPU seconds `pid` has used (0.0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies over every core since boot."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in first]
    idle = values[3] + values[4]  # idle, iowait
    total = sum(values[:8])  # without guest time, already counted in user
    return total - idle, total


@dataclass
class Cpu:
    """What one run used: CPU seconds per named process, and the machine's busy share."""

    used: dict[str, float] = field(default_factory=dict)
    busy: float = 0.0  # of every core's time, 0..1

    def per_transaction_us(self, name: str, transactions: float) -> float:
        return self.used.get(name, 0.0) / transactions * 1e6 if transactions else 0.0


@contextmanager
def metered(pids: Callable[[], dict[str, int]]) -> Iterator[Cpu]:
    """Measure the processes `pids()` names (read at the start; one that ends meanwhile
    counts nothing) and the machine, over the `with` block."""
    named = pids()
    before = {name: process_seconds(pid) for name, pid in named.items()}
    busy0, total0 = machine_jiffies()
    cpu = Cpu()
    yield cpu
    busy1, total1 = machine_jiffies()
    for name, pid in named.items():
        cpu.used[name] = max(0.0, process_seconds(pid) - before[name])
    cpu.busy = (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0


def cpu_line(found: dict[str, Cpu], tps: dict[str, float], seconds: int) -> str:
    """One figure per path: µs of CPU per transaction of each process measured on it, and
    how busy the machine was (a path is CPU-bound when that is near 100%)."""
    parts = []
    for path, cpu in found.items():
        transactions = tps[path] * seconds
        each = " + ".join(f"{name} {cpu.per_transaction_us(name, transactions):.0f}"
                          for name in cpu.used)  # fmt: skip
        parts.append(f"{path}: {each + ' µs, ' if each else ''}busy {cpu.busy:.0%}")
    return "   ".join(parts)
