"""`store_at`: where a test's new store goes, once as a SQLite file and once on PostgreSQL 15.

The PostgreSQL side is a fresh database per test, owned by a role that is not a superuser,
cloned from a template made once per test process: ICU en-US as its default collation (a
text column without COLLATE "C" then sorts punctuation unlike SQLite, so the schema's own
collation is what the tests see), amcheck in a schema of its own and granted to the role
(by the superuser, as an operator sets it up), and, per database, REPEATABLE READ as the
default isolation (a transaction that does not state READ COMMITTED shows). The database
is dropped after the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql as pgsql

from bastion.audit.location import PgLocation
from bastion.audit.pgconn import PgConn
from tests.realpg import PgCluster, random_password, unique_name

BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class StoreTemplate:
    """One worker's role and template database for the stores of its PostgreSQL tests."""

    cluster: PgCluster
    role: str
    password: str
    template: str

    def fresh(self) -> str:
        """A new database cloned from the template, owned by the role."""
        name = unique_name("bs")
        self.cluster.sql(
            pgsql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE {} STRATEGY FILE_COPY").format(
                pgsql.Identifier(name), pgsql.Identifier(self.role), pgsql.Identifier(self.template)
            )
        )
        self.cluster.sql(
            pgsql.SQL("ALTER DATABASE {} SET default_transaction_isolation = 'repeatable read'")
            .format(pgsql.Identifier(name))
        )  # fmt: skip
        return name

    def location(self, database: str, directory: Path, schema: str = "public") -> PgLocation:
        secret = directory / f"{database}.password"
        secret.write_text(self.password + "\n")
        secret.chmod(0o600)
        url = f"postgresql://{self.role}@{self.cluster.host}:{self.cluster.port}/{database}"
        return PgLocation(
            url, password_file=secret, schema=schema, head_file=directory / f"{database}.head"
        )


@pytest.fixture(scope="session")
def store_template(pg_cluster: PgCluster) -> Iterator[StoreTemplate]:
    role, password, template = unique_name("bs_r"), random_password(), unique_name("bs_tpl")
    pg_cluster.create_role(role, password)
    pg_cluster.sql(
        pgsql.SQL(
            "CREATE DATABASE {} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
            " LOCALE 'C.UTF-8'"
        ).format(pgsql.Identifier(template))
    )
    pg_cluster.sql(  # as an operator sets it up, so `audit verify` can check the indexes
        f"CREATE SCHEMA amcheck; CREATE EXTENSION amcheck SCHEMA amcheck;"
        f" GRANT USAGE ON SCHEMA amcheck TO {role};"
        f" GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA amcheck TO {role}",
        template,
    )
    made = StoreTemplate(pg_cluster, role, password, template)
    try:
        yield made
    finally:
        pg_cluster.drop_database(template)
        pg_cluster.drop_role(role)


@contextmanager
def _fresh(template: StoreTemplate, directory: Path) -> Iterator[PgLocation]:
    """A fresh database's location; after, every connection made to it is closed (a test
    need not close its stores), then it is dropped."""
    database = template.fresh()
    where = template.location(database, directory)
    opened: list[PgConn] = []
    connect = PgLocation.connect

    def tracked(self: PgLocation, *args: Any, **kwargs: Any) -> PgConn:
        conn = connect(self, *args, **kwargs)
        if self.url == where.url:
            opened.append(conn)
        return conn

    PgLocation.connect = tracked  # type: ignore[method-assign]
    try:
        yield where
    finally:
        PgLocation.connect = connect  # type: ignore[method-assign]
        for conn in opened:
            conn.close()
        template.cluster.drop_database(database)


@pytest.fixture(params=BACKENDS)
def store_at(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path | PgLocation]:
    """Where a test's new store goes: a file on SQLite, an empty database on PostgreSQL."""
    if request.param == "sqlite":
        yield tmp_path / "bastion.db"
        return
    with _fresh(request.getfixturevalue("store_template"), tmp_path) as where:
        yield where


@pytest.fixture
def pg_store_at(store_template: StoreTemplate, tmp_path: Path) -> Iterator[PgLocation]:
    """An empty PostgreSQL store's place only, for the tests of PostgreSQL's own behaviour."""
    with _fresh(store_template, tmp_path) as where:
        yield where
