"""The protocol state machine's cost per statement: µs per simple and per extended statement."""

from __future__ import annotations

import time

from bastion.pgwire.state import ProtocolState

ROUNDS = 200_000


def simple(rounds: int) -> float:
    """Query -> RowDescription, DataRows (one run), CommandComplete, ReadyForQuery."""
    s = ProtocolState()
    server = s.server
    start = time.perf_counter()
    for _ in range(rounds):
        s.query("key")
        server(b"T")
        server(b"D")
        server(b"C")
        server(b"Z", "I")
    return (time.perf_counter() - start) / rounds * 1e6


def extended(rounds: int) -> float:
    """Parse, Bind, Describe, Execute, Sync (pgbench -M extended) and their six replies."""
    s = ProtocolState()
    server = s.server
    start = time.perf_counter()
    for _ in range(rounds):
        s.parse("", "sql")
        s.bind("", "")
        s.describe(b"P", "")
        s.execute("", "key")
        s.sync()
        server(b"1")
        server(b"2")
        server(b"T")
        server(b"D")
        server(b"C")
        server(b"Z", "I")
    return (time.perf_counter() - start) / rounds * 1e6


class _Empty:
    __slots__ = ()

    def call(self, kind: bytes) -> None:
        return None


def baseline(rounds: int) -> float:
    """Eleven empty method calls (the extended loop's count), for scale on a loaded machine."""
    call = _Empty().call
    start = time.perf_counter()
    for _ in range(rounds):
        for kind in (b"P", b"B", b"D", b"E", b"S", b"1", b"2", b"T", b"D", b"C", b"Z"):
            call(kind)
    return (time.perf_counter() - start) / rounds * 1e6


def main() -> None:
    simple(1000)
    extended(1000)
    print(f"simple statement:   {min(simple(ROUNDS) for _ in range(3)):.2f} µs")
    print(f"extended statement: {min(extended(ROUNDS) for _ in range(3)):.2f} µs")
    print(f"(11 empty method calls: {min(baseline(ROUNDS) for _ in range(3)):.2f} µs)")


if __name__ == "__main__":
    main()
