"""The PostgreSQL door's per-statement Python without sockets: the protocol state machine alone,
then the whole relay (bytes in; bytes, audit records and decisions out), for a pgbench -S
statement, simple and extended, under a write and a read grant:
.venv/bin/python -m bench.pgstate"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from bastion import pgwire
from bastion.pgproxy.relay import Relay
from bastion.pgwire.backend import Field
from bastion.pgwire.state import ProtocolState
from bastion.sqlparse.names import GuardCatalog

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


SELECT = "SELECT abalance FROM pgbench_accounts WHERE aid = {};"
ROW = pgwire.row_description([Field("abalance", 0, 0, 23, 4, -1, 0)])
ANSWER = ROW + pgwire.data_row([b"0"]) + pgwire.command_complete("SELECT 1")
ANSWER += pgwire.ready_for_query("I")


def relay(rounds: int, *, read: bool, extended: bool) -> float:
    """One pgbench -S statement through the relay: its client read, then its reply."""
    now = datetime(2026, 12, 7, tzinfo=UTC)
    r = Relay("s1", "alice", "t", read, now, names=GuardCatalog() if read else None)
    if extended:
        parsed = pgwire.parse("", SELECT.format("$1"), ())
        tail = pgwire.describe("P", "") + pgwire.execute("") + pgwire.sync()
        reads = [parsed + pgwire.bind("", "", [str(n).encode()]) + tail for n in range(1000)]
        reply = pgwire.parse_complete() + pgwire.bind_complete() + ANSWER
    else:
        reads = [pgwire.query(SELECT.format(n)) for n in range(1000)]
        reply = ANSWER
    start = time.perf_counter()
    for n in range(rounds):
        r.client_read(reads[n % 1000], now, n)
        r.upstream_read(reply, now, n)
    return (time.perf_counter() - start) / rounds * 1e6


def main() -> None:
    simple(1000)
    extended(1000)
    print("the state machine alone, per statement:")
    print(f"  simple:   {min(simple(ROUNDS) for _ in range(3)):.2f} µs")
    print(f"  extended: {min(extended(ROUNDS) for _ in range(3)):.2f} µs")
    print(f"  (11 empty method calls: {min(baseline(ROUNDS) for _ in range(3)):.2f} µs)")
    print("the whole relay, per pgbench -S statement (no sockets, no audit writer):")
    for read in (False, True):
        for ext in (False, True):
            best = min(relay(ROUNDS // 10, read=read, extended=ext) for _ in range(3))
            grant, mode = "read" if read else "write", "extended" if ext else "simple"
            print(f"  {grant} grant, {mode:<8}: {best:.1f} µs")


if __name__ == "__main__":
    main()
