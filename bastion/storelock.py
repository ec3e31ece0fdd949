"""The lock file beside an embedded store: every `serve` and every command that opens the store
shares it, a restore needs it alone."""

from __future__ import annotations

import fcntl
import glob
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bastion.errors import Conflict, StoreError


def lock_path(store: Path) -> Path:
    return store.with_name(store.name + ".lock")


def _open(store: Path) -> int:
    try:
        return os.open(lock_path(store), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                       0o600)  # fmt: skip
    except OSError as exc:
        raise StoreError(f"cannot open the lock file {lock_path(store)}: {exc.strerror}") from exc


@contextmanager
def serving(store: Path) -> Iterator[None]:
    """Held (shared) for as long as a bastion serves from this store; several nodes may."""
    fd = _open(store)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


@contextmanager
def alone(store: Path, doing: str) -> Iterator[None]:
    """Held (exclusive) while the store's files are replaced; refuses while any bastion serves."""
    fd = _open(store)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise Conflict(
                f"a bastion is serving from {store} (or a command is using it): stop every"
                f" `bastion serve` before {doing}"
            ) from exc
        yield
    finally:
        os.close(fd)


def using(store: Path) -> int | None:
    """Taken (shared) by a command before it opens the store, and held while the command runs
    (the caller closes the descriptor returned): a command never writes into a store that a
    restore is moving aside (its change would be reported done, then lost). Conflict while a
    restore holds the store; None when the store's directory is missing (opening says so)."""
    if not store.parent.is_dir():
        return None
    fd = _open(store)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise Conflict(
            f"{store} is being restored (`bastion store restore`): run this again once it is done"
        ) from exc
    return fd


def leftovers(store: Path) -> str:
    """'' unless a restore stopped half-way beside the store (a crash between its renames):
    then what to do, in one line. Read while holding the lock shared (no restore runs)."""
    name = store.name
    left = sorted(store.parent.glob(f"{glob.escape(name)}.restoring*"))
    if left:
        return (
            f"{left[0]} is left by a `bastion store restore` that stopped half-way: if {store}"
            f" is missing, move the newest {name}.before-restore-* files back to {name}*; then"
            f" remove every {name}.restoring* file"
        )
    lone = [f"{store}{s}" for s in ("-wal", "-shm") if os.path.lexists(f"{store}{s}")]
    if lone and not os.path.lexists(store):
        return (
            f"{lone[0]} is there without {store} (a restore stopped half-way, or the file was"
            f" moved): put the store back beside it (from {name}.before-restore-* or a backup),"
            " or move the log away; a store is never opened on another store's log"
        )
    return ""
