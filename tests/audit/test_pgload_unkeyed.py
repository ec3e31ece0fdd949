"""Red team (red18d): a PostgreSQL archive whose schema_migrations rows stop before the chain's
key (migration 0011) was restored as an old store to bring up to date, and the store then keyed
its chain on the spot (the upgrade path of 0011), binding whatever unkeyed rows the archive
held. An unkeyed row is plain SHA-256: anyone who can put a file where the backups are writes
a whole history (a grant, an approval nobody gave) that `audit verify` then calls intact. No
store on PostgreSQL ever predates the key (PostgreSQL came with migration 0021's issue): such
an archive is refused whole."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bastion.audit import ChainKey, Store, chain, pgbackup, pgload
from bastion.audit.base import KEYED_SCHEMA, migrations
from bastion.audit.chain import Event
from bastion.audit.location import PgLocation
from bastion.audit.pgconn import MIGRATIONS_TABLE
from bastion.clock import FakeClock, parse_iso
from bastion.errors import UsageError
from bastion.recording.completer import LEASE
from tests.storeat import StoreTemplate

KEY = ChainKey(bytes(range(32)))
AT = "2026-12-01T09:00:00.000000Z"
_INSERT = ("INSERT INTO audit_events (seq, at, kind, severity, actor, subject, session_id,"
           " detail, prev_hash, row_hash) VALUES (?,?,?,?,?,?,?,?,?,?)")  # fmt: skip


def forged_archive(where: PgLocation, template: StoreTemplate, dest: Path) -> None:
    """A store of migrations 1-10 whose one event nobody holding the key wrote, dumped as
    pg_dump dumps a store; the schema is left empty again, as a restore finds it."""
    conn = where.connect("forger")
    try:
        conn.begin_write(chained=False)
        conn.run(lambda c: c.execute(MIGRATIONS_TABLE))
        for number, name, sql in migrations("postgresql")[: KEYED_SCHEMA - 1]:
            conn.run(lambda c, sql=sql: c.execute(sql))  # type: ignore[misc]
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", [number, name, AT])
        row = chain.link(Event("grant.created", "alice", "mallory", "info", None,
                               {"target": "db-prod"}), 1, AT, chain.GENESIS, None)  # fmt: skip
        values = [row.seq, row.at, row.kind, row.severity, row.actor, row.subject,
                  row.session_id, row.detail, row.prev_hash, row.row_hash]  # fmt: skip
        conn.execute(_INSERT, values)
        conn.commit()
    finally:
        conn.close()
    pgbackup.dump(where, dest)
    empty_again(where, template)


def empty_again(where: PgLocation, template: StoreTemplate) -> None:
    """The store's schema empty, as a restore makes it before loading an archive."""
    database = urlsplit(where.url).path.lstrip("/")
    template.cluster.sql(f'DROP SCHEMA public CASCADE; CREATE SCHEMA public AUTHORIZATION'
                         f' "{template.role}"', database)  # fmt: skip


def test_an_archive_from_before_the_chains_key_is_refused(
    pg_store_at: PgLocation, store_template: StoreTemplate, tmp_path: Path
) -> None:
    archive = tmp_path / "forged.dump"
    forged_archive(pg_store_at, store_template, archive)
    with pytest.raises(UsageError, match="before the audit chain was keyed"):
        pgload.load(pg_store_at, archive, node="restore")
    clock = FakeClock(parse_iso(AT))
    with pytest.raises(Exception, match="no tables"):  # nothing was kept
        Store.open(pg_store_at, clock, KEY).close()


def test_a_lease_the_archive_holds_far_ahead_is_expired_by_the_restore(
    pg_store_at: PgLocation, store_template: StoreTemplate, tmp_path: Path
) -> None:
    """A lease is no history, and no key covers its row: an archive written by someone with
    the backups' bucket held the completer's lease for a made-up node until far ahead, and
    after the restore no node could take it (a lost node's uploads never completed, its
    sessions never closed). Every lease still running is expired at the restore."""
    store = Store.create(pg_store_at, FakeClock(parse_iso(AT)))
    store.take_lease(LEASE, "ghost", timedelta(days=36500), quiet=True)
    store.close()
    archive = tmp_path / "planted.dump"
    pgbackup.dump(pg_store_at, archive)
    empty_again(pg_store_at, store_template)
    pgload.load(pg_store_at, archive, node="restore")
    store = Store.open(pg_store_at, FakeClock(parse_iso(AT)))
    try:
        assert store.take_lease(LEASE, "a", timedelta(minutes=10), quiet=True) is not None
    finally:
        store.close()
