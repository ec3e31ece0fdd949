"""Strict durability in masked mode: on the read-only masked role `target harden` made, a
checked read goes upstream while its record commits, even under a write grant, and its reply
waits for the record."""

from __future__ import annotations

from pathlib import Path

from bastion import pgwire as pw
from tests.masking.door import shop_bastion
from tests.masking.test_unmask_door import harden
from tests.pgproxy.test_door_admin import frames_until, logged_in
from tests.pgproxy.test_door_strict_reads import (
    STRICT,
    locked,
    nothing_received,
    wait_for_backend,
)
from tests.realpg import PgCluster, PgDatabase


def test_a_masked_read_on_the_hardened_role_goes_upstream_before_its_record(
    tmp_path: Path, shop: PgDatabase, pg_cluster: PgCluster
) -> None:
    b = shop_bastion(tmp_path / "bastion", shop, STRICT)
    b.grant("alice", "shop", mode="write")  # masking decides what runs, not the grant
    b.start()
    try:
        harden(b, pg_cluster)
        sock, reader = logged_in(b, "alice", "shop")
        blocker = locked(b)
        try:
            with sock:
                sock.sendall(
                    pw.query("SELECT id, name, 'strict-masked' FROM customers ORDER BY id")
                )
                wait_for_backend(pg_cluster.superuser_database(), "strict-masked")
                assert nothing_received(sock)
                blocker.execute("ROLLBACK")
                frames = frames_until(sock, reader, 1)
                sock.sendall(pw.terminate())
        finally:
            blocker.close()
    finally:
        b.stop()
    rows = [pw.data_row_values(f.raw[5:])[:2] for f in frames if f.type == b"D"]
    assert rows == [(b"4711", b"Jane Doe"), (b"4712", b"John Roe")]
