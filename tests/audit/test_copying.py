"""A SQLite store copied into PostgreSQL (bastion/audit/copying.py): every table, every id and
the chain as they were, or nothing at all when anything goes wrong on the way."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from bastion.audit import ChainKey, CommandLine, Event, Store, nul
from bastion.audit.copying import copy_store
from bastion.audit.location import PgLocation
from bastion.errors import StoreError
from tests.realpg import PgCluster
from tests.reviewing.world import World, build, day

KNOWN = ("audit_events", "commands", "queries", "sessions", "targets", "unmask_grants", "users")


def database(where: PgLocation) -> str:
    return urlsplit(where.url).path.lstrip("/")


def relations(cluster: PgCluster, where: PgLocation) -> list[str]:
    """Whatever the target's schema holds: tables, sequences, functions."""
    rows = cluster.sql(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' UNION ALL SELECT p.proname FROM pg_proc p"
        " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'",
        database(where),
    )
    return [row[0] for row in rows]


def world(tmp_path: Path) -> World:
    """The reviewer's week: SSH and database sessions, commands, statements, an unmasking."""
    made = build(tmp_path)
    made.at(day(5, 9))
    made.unmask("alice", "42")
    return made


def head(store: Store) -> tuple[int, str]:
    verdict = store.verify_chain()
    assert verdict.ok, verdict.problem
    return verdict.head_seq, verdict.head_hash


def rows(store: Store, table: str) -> list[dict[str, Any]]:
    return store._rows(f"SELECT * FROM {table} ORDER BY 1")


def test_every_table_and_the_chain_arrive_as_they_were(
    tmp_path: Path, pg_store_at: PgLocation
) -> None:
    w = world(tmp_path)
    source, key = w.store, ChainKey.of(w.box)
    copied = copy_store(source, pg_store_at, key, head(source), node="node-a")
    assert (copied.head_seq, copied.head_mac) == source.chain_head()
    copy = Store.open(pg_store_at, w.clock, key)
    for table in KNOWN:
        assert copied.tables[table] == len(rows(source, table)), table
        assert rows(copy, table) == rows(source, table), table
    assert copy.schema_version() == source.schema_version()
    assert rows(copy, "schema_migrations") == rows(source, "schema_migrations")
    copy.append_events([Event("store.copied_from", "test", "", "notice")])  # writes the head
    verdict = copy.verify_chain()
    assert verdict.ok and verdict.head_seq == copied.head_seq + 1, verdict.problem
    # the identities go on after the copied ids
    users = len(rows(source, "users"))
    assert copy.add_user("zed", "engineer", None, b"s" * 16, "test").id == users + 1


def test_a_connection_lost_half_way_leaves_the_target_empty(
    tmp_path: Path, pg_store_at: PgLocation, pg_cluster: PgCluster
) -> None:
    w = world(tmp_path)
    source = w.store
    seen: list[str] = []

    def cut(line: str) -> None:  # after the first table: the server drops the copy's session
        seen.append(line)
        if len(seen) == 1:
            pg_cluster.sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s"
                " AND application_name LIKE 'bastion-store/%%'",
                params=[database(pg_store_at)],
            )

    with pytest.raises(StoreError, match="left it empty"):
        copy_store(
            source, pg_store_at, ChainKey.of(w.box), head(source), node="node-a", progress=cut
        )
    assert len(seen) == 1 and relations(pg_cluster, pg_store_at) == []


def test_a_row_the_target_refuses_leaves_it_empty_and_is_named(
    tmp_path: Path, pg_store_at: PgLocation, pg_cluster: PgCluster
) -> None:
    w = world(tmp_path)
    source = w.store
    raw = sqlite3.connect(source.file)  # foreign keys are off on a plain connection
    raw.execute("UPDATE commands SET session_id = 'gone' WHERE id = 1")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="refused a row of commands") as caught:
        copy_store(source, pg_store_at, ChainKey.of(w.box), head(source), node="node-a")
    assert "left it empty" in caught.value.message
    assert relations(pg_cluster, pg_store_at) == []


def test_a_store_in_the_target_is_refused_and_kept(tmp_path: Path, pg_store_at: PgLocation) -> None:
    w = world(tmp_path)
    there = Store.create(pg_store_at, w.clock, ChainKey.of(w.box))
    there.append_events([Event("store.created", "test", "", "notice")])
    with pytest.raises(StoreError, match="not empty"):
        copy_store(w.store, pg_store_at, ChainKey.of(w.box), head(w.store), node="node-a")
    assert [e.kind for e in there.events()] == ["store.created"]


def test_a_raw_nul_of_an_older_store_is_escaped_where_the_store_escapes_it(
    tmp_path: Path, pg_store_at: PgLocation
) -> None:
    w = world(tmp_path)
    source = w.store
    source.log_commands("s-a1", [CommandLine(w.clock.now(), 0, "cat a\u2400b", False)])
    raw = sqlite3.connect(source.file)  # as a store from before the escaping kept it
    raw.execute(
        "INSERT INTO commands (session_id, at, channel, command, reconstructed)"
        " VALUES ('s-a1', '2026-11-20T09:00:00.000000Z', 0, ?, 0)",
        ("rm -rf /\x00x",),
    )
    raw.commit()
    raw.close()
    copied = copy_store(source, pg_store_at, ChainKey.of(w.box), head(source), node="node-a")
    assert copied.escaped == 1
    texts = [c.text for c in Store.open(pg_store_at, w.clock).commands("s-a1")]
    # stored as the store escapes text today: the old raw row now reads like a new one
    assert texts[-2:] == [nul.escape("cat a\u2400b"), nul.escape("rm -rf /\x00x")]


def test_a_raw_nul_elsewhere_stops_the_copy_naming_where(
    tmp_path: Path, pg_store_at: PgLocation, pg_cluster: PgCluster
) -> None:
    w = world(tmp_path)
    raw = sqlite3.connect(w.store.file)
    raw.execute("UPDATE targets SET host = ? WHERE name = 'db-1'", ("db\x00evil",))
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="targets row id=3: host holds a NUL"):
        copy_store(w.store, pg_store_at, ChainKey.of(w.box), head(w.store), node="node-a")
    assert relations(pg_cluster, pg_store_at) == []


def test_a_copy_into_its_own_schema_beside_another_store(
    tmp_path: Path, pg_store_at: PgLocation, pg_cluster: PgCluster
) -> None:
    w = world(tmp_path)
    key = ChainKey.of(w.box)
    beside = Store.create(pg_store_at, w.clock, key)
    beside.append_events([Event("store.created", "test", "", "notice")])
    role = urlsplit(pg_store_at.url).username
    pg_cluster.sql(f'CREATE SCHEMA moved AUTHORIZATION "{role}"', database(pg_store_at))
    assert pg_store_at.password_file is not None
    into = PgLocation(pg_store_at.url, password_file=pg_store_at.password_file, schema="moved",
                      head_file=tmp_path / "moved.head")  # fmt: skip
    copied = copy_store(w.store, into, key, head(w.store), node="node-a")
    copy = Store.open(into, w.clock, key)
    assert rows(copy, "commands") == rows(w.store, "commands")
    assert copy.chain_head() == (copied.head_seq, copied.head_mac)
    assert [e.kind for e in beside.events()] == ["store.created"]  # the other store untouched
