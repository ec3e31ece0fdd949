"""Pipelines through the real masked door: a Parse the server never ran (skipped after an error,
or refused as a duplicate name) must not lend its plan to the statement the server does run."""

from __future__ import annotations

from pathlib import Path

from bastion import pgwire as pw
from tests.harness import Bastion
from tests.masking.door import shop_bastion
from tests.masking.shop import SECRETS
from tests.pgproxy.test_door_admin import frames_until, logged_in
from tests.realpg import PgDatabase

UNION = "SELECT street FROM customers UNION ALL SELECT street FROM customers"
DECOY = "SELECT 'x' AS street"


def _session(b: Bastion, steps: list[tuple[bytes, int]]) -> list[pw.Frame]:
    """Log in over a raw socket, send each step and read its ReadyForQuerys."""
    frames: list[pw.Frame] = []
    sock, reader = logged_in(b, "alice", "shop")
    with sock:
        for out, readies in steps:
            sock.sendall(out)
            frames += frames_until(sock, reader, readies, closing_ok=False)
        sock.sendall(pw.terminate())
    return frames


def _values(frames: list[pw.Frame]) -> list[bytes | None]:
    return [v for f in frames if f.type == b"D" for v in pw.data_row_values(f.raw[5:])]


def test_a_parse_skipped_after_an_error_does_not_unmask_the_statement_that_runs(
    bastion: Bastion,
) -> None:
    frames = _session(bastion, [
        (pw.parse("", UNION) + pw.sync(), 1),
        (pw.bind("p", "missing", ()) + pw.parse("", DECOY) + pw.sync()  # skipped: UNION stays
         + pw.bind("", "", ()) + pw.execute("") + pw.sync(), 2),
    ])  # fmt: skip
    values = _values(frames)
    assert len(values) == 4 and all(v is not None and b"*" in v for v in values), values
    assert not [s for s in SECRETS if any(s.encode() in (v or b"") for v in values)]


def test_a_duplicate_parse_does_not_unmask_the_statement_already_prepared(
    bastion: Bastion,
) -> None:
    frames = _session(bastion, [
        (pw.parse("s1", UNION) + pw.sync(), 1),
        (pw.parse("s1", DECOY) + pw.sync()  # prepared statement "s1" already exists
         + pw.bind("p1", "s1", ()) + pw.execute("p1") + pw.sync(), 2),
    ])  # fmt: skip
    assert any(f.type == b"E" for f in frames)
    values = _values(frames)
    assert len(values) == 4 and all(v is not None and b"*" in v for v in values), values
    assert not [s for s in SECRETS if any(s.encode() in (v or b"") for v in values)]


def test_prepared_statements_past_the_bound_end_the_session_with_one_clear_error(
    tmp_path: Path, shop: PgDatabase
) -> None:
    b = shop_bastion(tmp_path / "bastion", shop, extra="[postgres]\nmax_prepared = 16\n").start()
    try:
        sock, reader = logged_in(b, "alice", "shop")
        with sock:
            sock.sendall(b"".join(pw.parse(f"s{n}", "SELECT 1") for n in range(17)) + pw.sync())
            while data := sock.recv(65536):
                reader.feed(data)
        frames = reader.frames()
    finally:
        b.stop()
    assert [f.type for f in frames] == [b"E"]  # not one ParseComplete: nothing went upstream
    fields = pw.error_fields(frames[0].raw[5:])
    assert fields["C"] == "54000" and "more than 16 prepared statements" in fields["M"]
