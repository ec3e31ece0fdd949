"""The compiled walk of the keyed audit chain (bastion/audit/_fastchain.c)."""

def walk(
    path: str, key: bytes, after: int, prev_hash: str, limit: int, /
) -> tuple[int, str, int, int]: ...
