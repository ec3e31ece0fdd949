"""Literals never reach the audit trail, whichever process redacts them: a write session's
statements are redacted by the audit writer's process, a read session's by the door."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pgproxy.conftest import PASSWORD, alice_on, wait_for_tags
from tests.realpg import PgDatabase, psycopg_connect

SECRET = "hunter2-correct-horse"


@pytest.mark.parametrize("mode", ["write", "read"])
@pytest.mark.parametrize("durability", ["strict", "batched"])
def test_a_literal_is_redacted_before_anything_is_stored(
    tmp_path: Path, pg: PgDatabase, mode: str, durability: str
) -> None:
    b = alice_on(tmp_path / "bastion", pg, f'\n[audit]\ndurability = "{durability}"\n')
    b.grant("alice", "orders-prod", mode=mode)
    b.start()
    try:
        with psycopg_connect(b.via_bastion("alice", "orders-prod", PASSWORD),
                             autocommit=True) as conn:  # fmt: skip
            conn.execute(f"SELECT '{SECRET}' AS pw, 42 AS n /* {SECRET} */").fetchall()
            cursor = conn.cursor()
            cursor.execute("SELECT %s::text AS pw", (SECRET,), prepare=True)
            assert cursor.fetchone() == (SECRET,)
        wait_for_tags(b, 2)
        rows = [q for q in b.store.queries() if "pw" in q.sql]
    finally:
        b.stop()
    by_step = {q.step: q for q in rows}
    assert by_step["simple"].sql == "SELECT $1 AS pw, $2 AS n /* */"
    assert by_step["simple"].kind == "SELECT"
    assert "$1" in by_step["execute"].sql and by_step["execute"].kind == "SELECT"
    for name in ("bastion.db", "bastion.db-wal"):
        stored = b.config.paths.store.parent / name
        if stored.exists():
            assert SECRET.encode() not in stored.read_bytes()
