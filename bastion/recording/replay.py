"""Play a recording's output back with its timing: scaled by speed, idle gaps capped."""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from typing import BinaryIO, TextIO, cast

from bastion.recording.model import Recording


def replay(
    recording: Recording,
    out: BinaryIO | TextIO,
    speed: float = 1.0,
    idle_limit: float | None = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    *,
    start: float = 0.0,
) -> None:
    """Write the output events to out, each after its gap since the previous output event.

    A gap is first capped at idle_limit seconds (None: no cap), then divided by speed.
    Output is "o" and stderr "e"; input and resize events are not shown. out may be a text
    or a binary stream (UTF-8). Output before `start` seconds is written at once (the screen
    as it stood then), and playing in time begins there.
    """
    if not (math.isfinite(speed) and speed > 0):
        raise ValueError("speed must be a number above 0")
    if idle_limit is not None and not (math.isfinite(idle_limit) and idle_limit > 0):
        raise ValueError("idle limit must be a number of seconds above 0, or None")
    if not (math.isfinite(start) and start >= 0):
        raise ValueError("start must be a number of seconds >= 0")
    write = _writer(out)
    previous = start
    for event in recording.events:
        if event.code not in ("o", "e"):
            continue
        gap = max(0.0, event.elapsed - previous)
        previous = max(previous, event.elapsed)
        if idle_limit is not None:
            gap = min(gap, idle_limit)
        if gap > 0:
            sleep(gap / speed)
        write(event.data)
        out.flush()


def _writer(out: BinaryIO | TextIO) -> Callable[[str], object]:
    if isinstance(out, io.TextIOBase):
        return cast(TextIO, out).write
    binary = cast(BinaryIO, out)
    return lambda text: binary.write(text.encode("utf-8"))
