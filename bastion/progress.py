"""Progress lines for long commands: on stderr when it is a terminal, nothing when piped."""

from __future__ import annotations

import sys
from collections.abc import Callable

Progress = Callable[[str], None]
Counter = Callable[[int], None]


def quiet(_line: str) -> None:
    """No progress (a build in `bastion serve`, --json, or output piped)."""


def terminal_progress() -> Progress:
    """Progress lines on stderr when it is a terminal; nothing when piped."""
    if not sys.stderr.isatty():
        return quiet

    def say(line: str) -> None:
        sys.stderr.write(f"bastion: {line}\n")
        sys.stderr.flush()

    return say


def counted(progress: Progress, what: str, total: int | None = None, unit: str = "") -> Counter:
    """A callback taking how many items are done, saying so with the total when known:
    `audit chain: 10,000 of 25,001 events checked`."""

    def say(done: int) -> None:
        of = f" of {total:,}" if total is not None else ""
        progress(f"{what}: {done:,}{of} {unit}".rstrip())

    return say


def every(counter: Counter, step: int, total: int) -> Counter:
    """The counter called only at each `step` items and at the last one (of `total`)."""

    def tick(done: int) -> None:
        if done % step == 0 or done == total:
            counter(done)

    return tick
