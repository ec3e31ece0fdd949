"""The compiled DataRow rewriter (bastion/masking/_fastrows.c)."""

from collections.abc import Callable

class RowShape(ValueError): ...

def mask_run(
    data: bytes | memoryview, plan: tuple[tuple[int, int, Callable[[bytes], bytes | None]], ...], /
) -> bytes: ...
def candidates(value: bytes, /) -> int: ...
