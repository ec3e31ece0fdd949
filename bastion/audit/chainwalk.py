"""The audit chain walked over a store: the compiled walk vouches for keyed rows in bulk, and
the Python walk (bastion.audit.chain.Walk) judges the rest and names what is wrong."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bastion.audit import _fastchain
from bastion.audit.chain import ChainedEvent, Verdict, Walk

CHUNK = 10_000  # rows per compiled walk and per read when Python walks; progress between

Events = Callable[[int, int], list[ChainedEvent]]  # (after seq, limit) -> rows in seq order
Progress = Callable[[int], None]  # rows checked so far


def walk_store(
    events: Events, path: Path | None, key: bytes | None, progress: Progress | None = None,
    start: tuple[int, str] | None = None,
) -> Verdict:  # fmt: skip
    """Verify the chain whose rows `events` reads; with the store's file and its key, the keyed
    part is walked by compiled code (each row's MAC still checked), the rest here. Whatever
    the compiled walk can't vouch for, Python judges, so the verdict and its words are the
    same either way. `start`: the (seq, MAC) of a retention checkpoint the chain starts after."""
    walk = Walk(key, start)
    fast = key is not None and path is not None and path.is_file()
    while True:
        batch = CHUNK - walk.checked % CHUNK  # each chunk ends on a multiple of CHUNK
        if fast and key is not None and walk.keyed_from is not None:
            seq, mac, count, stopped = _fastchain.walk(
                str(path), key, walk.prev_seq, walk.prev_hash, batch
            )
            walk.vouched(seq, mac, count)
            _tell(progress, walk.checked)
            if stopped == 2:
                continue
            batch = 1  # the row the compiled walk stopped at, if any, is judged here
        rows = events(walk.prev_seq, batch)
        if not rows:
            return walk.end()
        for row in rows:
            failed = walk.step(row)
            if failed is not None:
                return failed
            _tell(progress, walk.checked)
            if fast and walk.keyed_from is not None:
                break


def _tell(progress: Progress | None, checked: int) -> None:
    if progress is not None and checked and checked % CHUNK == 0:
        progress(checked)
