"""A PostgreSQL store schema for the decision-notice tests: the twins applied, events appended."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg import sql as pgsql

from bastion.audit.location import PgLocation
from tests.audit.migschema import apply_pg, pg_migrations
from tests.realpg import PgCluster, PgDatabase, psycopg_connect, random_password, unique_name

SCHEMA = "store"  # not public: notices carry the schema, and a feed hears only its own
AT = "2026-12-07T09:00:00.000000Z"


@contextlib.contextmanager
def icu_store(cluster: PgCluster) -> Iterator[PgDatabase]:
    """A database owned by an ordinary role, ICU en-US by default, with every PostgreSQL
    twin applied in the schema SCHEMA (as the store's runner would)."""
    role, name = unique_name("listen_owner"), unique_name("listen_db")
    password = random_password()
    cluster.create_role(role, password)
    cluster.sql(
        pgsql.SQL(
            "CREATE DATABASE {} OWNER {} TEMPLATE template0 LOCALE_PROVIDER icu"
            " ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
        ).format(pgsql.Identifier(name), pgsql.Identifier(role))
    )
    db = PgDatabase(cluster.host, cluster.port, name, role, password, cluster)
    try:
        with store_conn(db, create=True) as conn:
            apply_pg(conn, pg_migrations())
        yield db
    finally:
        cluster.drop_database(name)
        cluster.drop_role(role)


@contextlib.contextmanager
def store_conn(db: PgDatabase, *, create: bool = False) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection as the owner, working in SCHEMA (another node, or the CLI)."""
    conn = psycopg_connect(db, autocommit=True)
    try:
        if create:
            conn.execute(pgsql.SQL("CREATE SCHEMA {}").format(pgsql.Identifier(SCHEMA)))
        conn.execute(pgsql.SQL("SET search_path = {}").format(pgsql.Identifier(SCHEMA)))
        yield conn
    finally:
        conn.close()


def location(db: PgDatabase) -> PgLocation:
    """The store as a node's config names it (the password handed over, never in the URL)."""
    url = f"postgresql://{db.user}@{db.host}:{db.port}/{db.database}"
    return PgLocation.handed(url, db.password, schema=SCHEMA)


def append(conn: psycopg.Connection[Any], kinds: Sequence[str]) -> list[int]:
    """Append one event of each kind in ONE statement (one transaction); their seqs."""
    with conn.transaction():
        (head,) = conn.execute("SELECT coalesce(max(seq), 0) FROM audit_events").fetchone() or (0,)
        seqs = list(range(head + 1, head + 1 + len(kinds)))
        rows = pgsql.SQL(", ").join(
            pgsql.SQL("({}, {}, {}, 'notice', 'test', '', '{{}}', '', '')").format(
                pgsql.Literal(seq), pgsql.Literal(AT), pgsql.Literal(kind)
            )
            for seq, kind in zip(seqs, kinds, strict=True)
        )
        conn.execute(
            pgsql.SQL(
                "INSERT INTO audit_events (seq, at, kind, severity, actor, subject, detail,"
                " prev_hash, row_hash) VALUES {}"
            ).format(rows)
        )
    return seqs
