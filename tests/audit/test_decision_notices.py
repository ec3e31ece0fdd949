"""Migration 0023: appending an event that ends or refuses access notifies every node's feed;
nothing else does (the busy queries.committed above all). The allow-list stays complete:
every store write that changes what the session watcher reads appends a listed kind."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bastion.audit.listen import CHANNEL, DECISION_KINDS
from bastion.audit.qlogbind import KIND as QUERIES_COMMITTED
from tests.audit.decisions_pg import SCHEMA, append, icu_store, store_conn
from tests.realpg import PgCluster, PgDatabase

BASTION = Path(__file__).resolve().parents[2] / "bastion"
KIND_SHAPE = re.compile(r"[a-z][a-z_]*(?:\.[a-z][a-z_]*)+")
PROBE = "probe: every notice sent before this one has arrived"


@pytest.fixture(scope="module")
def db(pg_cluster: PgCluster) -> Iterator[PgDatabase]:
    with icu_store(pg_cluster) as found:
        yield found


@pytest.fixture
def listener(db: PgDatabase) -> Iterator[psycopg.Connection[Any]]:
    with store_conn(db) as conn:
        conn.execute(f"LISTEN {CHANNEL}")
        yield conn


def heard(listener: psycopg.Connection[Any], writer: psycopg.Connection[Any]) -> list[str]:
    """Every notice sent so far, up to a probe sent last: notices arrive in commit order, so
    once the probe is here, nothing committed before it is still on its way."""
    writer.execute("SELECT pg_notify(%s, %s)", [CHANNEL, PROBE])
    found: list[str] = []
    for notice in listener.notifies(timeout=10):
        if notice.payload == PROBE:
            return found
        found.append(notice.payload)
    raise AssertionError(f"the probe did not arrive in 10 s; heard {found}")


def kinds_in_code() -> set[str]:
    """Every string in the package shaped like an event kind ("grant.revoked"): a superset
    of the kinds the code writes, found anew each run."""
    found = set()
    for path in BASTION.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            text = node.value if isinstance(node, ast.Constant) else None
            if isinstance(text, str) and KIND_SHAPE.fullmatch(text):
                found.add(text)
    return found


def test_the_migration_lists_the_same_kinds_as_the_feed(db: PgDatabase) -> None:
    with store_conn(db) as conn:
        row = conn.execute("SELECT bastion_decision_kinds()").fetchone()
    assert row is not None and sorted(row[0]) == sorted(DECISION_KINDS)


def test_exactly_the_decision_kinds_notify(
    db: PgDatabase, listener: psycopg.Connection[Any]
) -> None:
    written = kinds_in_code()
    assert {QUERIES_COMMITTED, "session.opened"} | DECISION_KINDS <= written
    everything = sorted(written)
    with store_conn(db) as writer:
        seq_of = {kind: append(writer, [kind])[0] for kind in everything}
        notices = heard(listener, writer)
    kind_of = {f"{SCHEMA} {seq}": kind for kind, seq in seq_of.items()}
    assert sorted(kind_of.get(n, n) for n in notices) == sorted(DECISION_KINDS)


def test_one_statement_sends_one_notice_with_its_highest_decision(
    db: PgDatabase, listener: psycopg.Connection[Any]
) -> None:
    with store_conn(db) as writer:
        busy = append(writer, [QUERIES_COMMITTED] * 50)  # a busy commit: nothing
        mixed = append(writer, ["grant.revoked", "session.opened", "user.disabled", "auth.failed"])
        assert heard(listener, writer) == [f"{SCHEMA} {mixed[2]}"]
        assert busy[-1] < mixed[0]


def test_a_rolled_back_decision_sends_nothing(
    db: PgDatabase, listener: psycopg.Connection[Any]
) -> None:
    with store_conn(db) as writer:
        with pytest.raises(psycopg.errors.UniqueViolation), writer.transaction():
            writer.execute(
                "INSERT INTO audit_events (seq, at, kind, severity, actor, detail, prev_hash,"
                " row_hash) VALUES (1000000, 'x', 'grant.revoked', 'notice', 't', '{}', '', ''),"
                " (1000000, 'x', 'grant.revoked', 'notice', 't', '{}', '', '')"
            )
        assert heard(listener, writer) == []


def test_another_search_path_cannot_redirect_the_trigger(
    db: PgDatabase, listener: psycopg.Connection[Any]
) -> None:
    """The trigger's function keeps the search path it was made with: a session that puts a
    schema of its own first (with a bastion_decision_kinds() that lists nothing) still
    notifies."""
    with store_conn(db) as writer:
        writer.execute("CREATE SCHEMA IF NOT EXISTS decoy")
        writer.execute(
            "CREATE OR REPLACE FUNCTION decoy.bastion_decision_kinds() RETURNS text[]"
            " LANGUAGE sql AS $$ SELECT ARRAY[]::text[] $$"
        )
        writer.execute(f"SET search_path = decoy, {SCHEMA}")
        seqs = append(writer, ["user.disabled"])
        assert heard(listener, writer) == [f"{SCHEMA} {seqs[0]}"]
