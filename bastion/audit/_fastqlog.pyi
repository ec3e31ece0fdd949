"""Statement records hashed and checked in bulk (bastion/audit/_fastqlog.c)."""

from collections.abc import Callable

def digest(fields: tuple[str | int | None, ...], /) -> bytes: ...
def check(
    path: str,
    lo: int,
    hi: int,
    boundary: int,
    since: str,
    until: str,
    starts: list[tuple[int, bytes]],
    ends: bytes,
    limit: int,
    /,
) -> list[tuple[int, int]]: ...
def check_rows(
    fetch: Callable[[int, int, Callable[[bytes], None]], object],
    kinds: str,
    lo: int,
    hi: int,
    boundary: int,
    since: str,
    until: str,
    starts: list[tuple[int, bytes]],
    ends: bytes,
    limit: int,
    /,
) -> list[tuple[int, int]]: ...
