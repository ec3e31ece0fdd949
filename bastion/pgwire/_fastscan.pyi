"""The compiled message splitter (bastion/pgwire/_fastscan.c)."""

from bastion.pgwire.framing import Frame
from bastion.pgwire.scanner import Run

def scan(
    data: bytes,
    items: list[Frame | Run],
    bulk: bytes,
    limit: int,
    frame: type[Frame],
    run: type[Run],
    /,
) -> tuple[int, int, int]: ...
