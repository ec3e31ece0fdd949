"""The keyed chain on real store files: rewrites without the key, the upgrade of an unkeyed
store, a keyless writer, and the scribe process that receives the key over its socket pair."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from bastion.audit import ChainKey, Event, Store, chain
from bastion.audit.base import KEYED_SCHEMA, migrations
from bastion.audit.location import PgLocation
from bastion.audit.writer import AuditWriter
from bastion.clock import FakeClock
from bastion.errors import StoreError
from bastion.identity.sealing import SecretBox
from tests import storeadmin
from tests.storeadmin import Admin

SECRETS_KEY = bytes(range(32))


@pytest.fixture
def key() -> ChainKey:
    return ChainKey.of(SecretBox(SECRETS_KEY))


def attacker(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER IF EXISTS audit_events_no_update")
    conn.execute("DROP TRIGGER IF EXISTS audit_events_no_delete")
    return conn


COLUMNS = "seq, at, kind, severity, actor, subject, session_id, detail, prev_hash, row_hash, alg"


def relink_unkeyed(store: Store, admin: Admin) -> int:
    """Re-link every row left with SHA-256, as the code of today does, and rewrite the head
    file to match: all an admin with the files (but not the key) can do."""
    rows = admin.execute(f"SELECT {COLUMNS} FROM audit_events ORDER BY seq")
    admin.execute("DELETE FROM audit_events")
    prev = chain.GENESIS
    for seq, values in enumerate(rows, 1):
        row = dict(zip(COLUMNS.split(", "), values, strict=True))
        event = Event(row["kind"], row["actor"], row["subject"], row["severity"],
                      row["session_id"], json.loads(row["detail"]))  # fmt: skip
        linked = chain.link(event, seq, row["at"], prev, None)
        admin.execute(
            f"INSERT INTO audit_events ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (seq, linked.at, linked.kind, linked.severity, linked.actor, linked.subject,
             linked.session_id, linked.detail, linked.prev_hash, linked.row_hash, linked.alg),
        )  # fmt: skip
        prev = linked.row_hash
    store.anchor_path.write_text(f"{len(rows):020d} {prev}\n")
    return len(rows)


raw = storeadmin.raw


def test_deleting_22806_events_and_relinking_without_the_key_is_caught(
    store_at: Path | PgLocation, key: ChainKey, raw: Callable[[Store], Admin]
) -> None:
    store = Store.create(store_at, FakeClock(), key)
    batch = [Event("query", "alice", "orders-prod", detail={"i": i}) for i in range(5000)]
    for _ in range(5):
        store.append_events(batch)
    assert store.verify_chain().ok
    admin = raw(store)
    admin.execute("DELETE FROM audit_events WHERE seq BETWEEN 1000 AND 23805")
    assert relink_unkeyed(store, admin) == 25_000 - 22_806
    verdict = Store.open(store_at, FakeClock(), key).verify_chain()
    assert not verdict.ok
    assert "written, or rewritten, without the key" in verdict.problem


def test_a_row_relinked_with_a_guessed_key_is_caught(
    store_at: Path | PgLocation, key: ChainKey, raw: Callable[[Store], Admin]
) -> None:
    store = Store.create(store_at, FakeClock(), key)
    store.append_events([Event("test.n", "tester", detail={"n": n}) for n in range(10)])
    guessed = Store.open(store_at, FakeClock(), ChainKey(hashlib.sha256(b"guess").digest()))
    assert not guessed.verify_chain().ok
    raw(store).execute("DELETE FROM audit_events WHERE seq > 5")
    with pytest.raises(StoreError, match="keyed"):  # a keyless writer cannot extend it
        Store.open(store_at, FakeClock()).append_events([Event("test.forged", "evil")])
    verdict = store.verify_chain()
    assert not verdict.ok and "deleted from the end" in verdict.problem


def test_a_missing_head_file_fails_verify(store_at: Path | PgLocation, key: ChainKey) -> None:
    store = Store.create(store_at, FakeClock(), key)
    store.append_events([Event("test.n", "tester")])
    assert store.verify_chain().ok
    store.anchor_path.unlink()
    verdict = store.verify_chain()
    assert not verdict.ok and "head file" in verdict.problem


def test_a_head_file_swapped_for_a_symlink_is_never_written_through(
    store_at: Path | PgLocation, key: ChainKey, tmp_path: Path
) -> None:
    # The head is rewritten in place at offset 0: through a symlink it overwrote the start of
    # whatever file the link named (the config, the store itself).
    first = Store.create(store_at, FakeClock(), key)
    first.append_events([Event("test.n", "tester")])
    first.close()
    victim = tmp_path / "victim.toml"
    victim.write_text("[store]\n" + "x" * 200, encoding="utf-8")
    store = Store.open(store_at, FakeClock(), key)
    store.anchor_path.unlink()
    store.anchor_path.symlink_to(victim)
    store.append_events([Event("test.n", "tester")])
    assert victim.read_text(encoding="utf-8") == "[store]\n" + "x" * 200
    verdict = store.verify_chain()
    assert not verdict.ok and "head file" in verdict.problem, verdict.problem


def old_store(path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A store as the code before 0011 left it: unkeyed SHA-256 rows, no alg column."""
    from bastion.audit import base  # noqa: PLC0415 - patched for this test only

    every = migrations()
    monkeypatch.setattr(
        base, "migrations", lambda dialect="sqlite": [m for m in every if m[0] < KEYED_SCHEMA]
    )
    Store.create(path, clock).close()
    monkeypatch.setattr(base, "migrations", lambda dialect="sqlite": every)
    conn = sqlite3.connect(path, isolation_level=None)
    prev, hashes = chain.GENESIS, []
    for seq in range(1, 6):
        row = chain.link(Event("user.added", "cli:root", f"u{seq}"), seq, "2026-01-01", prev, None)
        conn.execute(
            "INSERT INTO audit_events VALUES (?,?,?,?,?,?,?,?,?,?)",
            (row.seq, row.at, row.kind, row.severity, row.actor, row.subject, row.session_id,
             row.detail, row.prev_hash, row.row_hash),
        )  # fmt: skip
        prev = row.row_hash
        hashes.append(prev)
    conn.close()
    path.with_name(path.name + ".head").write_text(f"{5:020d} {prev}\n")
    return hashes


def test_an_unkeyed_store_is_keyed_when_it_is_upgraded(
    tmp_path: Path, key: ChainKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bastion.db"
    hashes = old_store(path, FakeClock(), monkeypatch)
    store = Store.open(path, FakeClock(), key)  # migration 0011, then the keying event
    keying = store.events()[5]
    assert keying.seq == 6 and keying.kind == chain.KEYED_KIND and keying.alg == chain.KEYED
    assert json.loads(keying.detail) == {
        "key_id": key.key_id, "unkeyed_head": hashes[-1], "unkeyed_head_seq": 5,
    }  # fmt: skip
    verdict = store.verify_chain()
    assert verdict.ok and verdict.keyed_from == 6 and verdict.checked == 6
    [written] = store.append_events([Event("user.added", "cli:root", "u6")])
    assert written.seq == 7 and written.alg == chain.KEYED
    Store.open(path, FakeClock(), key).append_events([Event("user.added", "cli:root", "u7")])
    assert [e.kind for e in store.events()].count(chain.KEYED_KIND) == 1
    assert store.verify_chain().ok
    # the unkeyed prefix is bound: editing it now breaks the keying event's link
    attacker(path).execute("UPDATE audit_events SET subject = 'root' WHERE seq = 2")
    assert not store.verify_chain().ok


def test_a_chain_relinked_without_the_key_is_never_extended(
    store_at: Path | PgLocation, key: ChainKey, raw: Callable[[Store], Admin]
) -> None:
    """Keying happens once, at the upgrade: a keyed chain rewritten as an unkeyed one is not
    re-keyed by the next write (that would vouch for the forgery); the bastion stops."""
    store = Store.create(store_at, FakeClock(), key)
    store.append_events([Event("test.n", "tester", detail={"n": n}) for n in range(10)])
    admin = raw(store)
    admin.execute("DELETE FROM audit_events WHERE seq BETWEEN 3 AND 6")
    relink_unkeyed(store, admin)
    with pytest.raises(StoreError, match="not keyed: it was written without the key"):
        Store.open(store_at, FakeClock(), key).append_events([Event("test.n", "tester")])
    assert [e.alg for e in store.events()] == [chain.LEGACY] * 6
    assert "holds no keyed event" in store.verify_chain().problem


async def test_the_scribe_writes_keyed_rows_and_gets_the_key_only_over_its_pair(
    tmp_path: Path, key: ChainKey
) -> None:
    store = Store.create(tmp_path / "b.db", FakeClock(), key)
    writer = AuditWriter(store)
    await writer.start()
    try:
        row = await writer.append(Event("test.n", "tester"))
        assert row.alg == chain.KEYED
        pid = writer.scribe.pid
        assert pid is not None and pid != os.getpid()
        seen = Path(f"/proc/{pid}/cmdline").read_bytes() + Path(f"/proc/{pid}/environ").read_bytes()
        for form in (key.secret, key.secret.hex().encode(), base64.b64encode(key.secret),
                     base64.b64encode(SECRETS_KEY)):  # fmt: skip
            assert form not in seen
    finally:
        await writer.stop()
    verdict = store.verify_chain()
    assert verdict.ok and verdict.keyed_from == 1
