"""Statement records hashed and checked in bulk (bastion/audit/_fastqlog.c)."""

from collections.abc import Callable, Iterable, Sequence

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
    fetch: Callable[[int, int], Iterable[Sequence[str | int | None]]],
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
