"""Capture what psql, SQLAlchemy, pandas, pgcli and the drivers send for the masked-mode corpus
(tests/masking/corpus): run each against the shop schema on a private PostgreSQL 15 with
log_statement = all, and print TOML entries, each with the call it came from.

    .venv/bin/python -m tests.masking.capture_corpus > /tmp/captured.toml

Straight to the database, not through the bastion: this records what the tools send."""

from __future__ import annotations

import asyncio
import functools
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pandas as pd
from pgcli.completion_refresher import CompletionRefresher
from pgcli.pgcompleter import PGCompleter
from pgcli.pgexecute import PGExecute
from pgspecial.main import PGSpecial
from sqlalchemy import Engine, MetaData, Table, create_engine, inspect, select
from sqlalchemy.ext.asyncio import create_async_engine

from tests.masking.shop import make_shop
from tests.realpg import PgCluster, PgDatabase, run_psql

PSQL_COMMANDS = r"""\d|\d customers|\d+ customers|\d orders|\d+ orders|\d orders_2025
|\d customer_contacts|\d+ customer_contacts|\dt|\dt+|\dv|\dm|\di|\ds|\dE|\df|\df+|\dn|\dn+
|\l|\l+|\du|\dg|\dT|\dT+
|\dx|\dp|\dd|\dD|\dc|\dC|\do|\dL|\dy|\db|\dRp|\dRs|\des|\dew|\det|\deu|\dF|\dFd|\dFp|\dFt
|\dconfig|\ddp|\dA|\dAc|\dAf|\dAo|\dAp|\dP|\drds|\dX|\sf top_customer|\sv customer_contacts
|\z customers|\dt public.*|\d payments|\d+ newsletter_stats"""
INSPECTIONS = [("get_schema_names", ()), ("get_table_names", ()), ("get_view_names", ()),
               ("get_columns", ("customers",)), ("get_pk_constraint", ("customers",)),
               ("get_foreign_keys", ("orders",)), ("get_indexes", ("customers",)),
               ("get_unique_constraints", ("customers",)), ("get_multi_columns", ()),
               ("get_check_constraints", ("customers",)), ("get_table_comment", ("customers",)),
               ("get_view_definition", ("customer_contacts",)),
               ("get_multi_indexes", ())]  # fmt: skip
LOGGED = re.compile(r"^\d{4}-\d\d-\d\d [\d:.]+ UTC \[\d+\] \S* (\w+):  (.*)$")


class Capture:
    """Statements in order of arrival, each with where it came from, without repeats."""

    def __init__(self, cluster: PgCluster) -> None:
        self.cluster = cluster
        self.found: dict[str, str] = {}

    def add(self, source: str, sql: str) -> None:
        self.found.setdefault(sql.strip(), source)

    def logged(self, source: str, run: Callable[[], object]) -> None:
        """Run `run` and keep what the server logged meanwhile (simple or extended protocol)."""
        start = self.cluster.log_offset()
        run()
        current: list[str] | None = None
        end = "0000-00-00 0 UTC [0] x LOG:  "  # closes the last statement
        for line in [*self.cluster.log_text(start).splitlines(), end]:
            match = LOGGED.match(line)
            if match is None:
                if current is not None:
                    current.append(line)
                continue
            if current is not None:
                self.add(source, "\n".join(current))
            statement = re.match(r"(statement|execute [^:]*): (.*)$", match.group(2))
            logged = match.group(1) == "LOG" and statement is not None
            current = [statement.group(2)] if logged and statement else None

    def toml(self) -> str:
        out = []
        for sql, source in self.found.items():
            out.append(
                f"[[statement]]\nsource = '{source.replace(chr(39), '')}'\nsql = '''\n{sql}'''\n"
            )
        return "\n".join(out)


def psql(capture: Capture, shop: PgDatabase) -> None:
    for command in PSQL_COMMANDS.replace("\n", "").split("|"):
        done = run_psql(shop, "-E", "-X", "-c", command)
        for sql in re.findall(r"\*{9} QUERY \*{10}\n(.*?)\n\*{26}", done.stdout, re.S):
            capture.add(f"psql 15 {command} (psql -E)", sql)


def sqlalchemy(capture: Capture, engine: Engine) -> None:
    inspector: Any = None

    def connect() -> None:
        nonlocal inspector
        inspector = inspect(engine)

    capture.logged("SQLAlchemy 2 psycopg dialect: connect and initialize", connect)
    for name, args in INSPECTIONS:
        inspector.clear_cache()
        method = getattr(inspector, name)
        capture.logged(f"SQLAlchemy 2 Inspector.{name} (psycopg)", functools.partial(method, *args))
    table = Table("customers", MetaData(), autoload_with=engine)

    def reads() -> None:
        with engine.connect() as conn:
            conn.execute(select(table.c.id, table.c.name).where(table.c.id > 1)).all()
            pd.read_sql("select id, name from customers", conn)
            pd.read_sql_table("orders", conn)

    capture.logged("SQLAlchemy 2 Core select and pandas read_sql/read_sql_table", reads)


def asyncio_drivers(capture: Capture, shop: PgDatabase, url: str) -> None:
    async def reflect() -> None:
        engine = create_async_engine(f"postgresql+asyncpg://{url}")
        async with engine.connect() as conn:
            await conn.run_sync(lambda c: (inspect(c).get_columns("customers"),
                                           inspect(c).get_indexes("customers")))  # fmt: skip
        await engine.dispose()
        conn2 = await asyncpg.connect(host=shop.host, port=shop.port, user=shop.user,
                                      password=shop.password, database=shop.database)  # fmt: skip
        await conn2.fetch("select id from customers where id = any($1::int[])", [4711])
        await conn2.close()

    capture.logged("SQLAlchemy 2 asyncpg dialect and asyncpg array introspection",
                   lambda: asyncio.run(reflect()))  # fmt: skip


def pgcli(capture: Capture, shop: PgDatabase) -> None:
    executor = PGExecute(shop.database, shop.user, shop.password, shop.host, shop.port, None)
    completer = PGCompleter(smart_completion=True, pgspecial=PGSpecial())
    for key, refresh in CompletionRefresher.refreshers.items():
        capture.logged(f"pgcli completion refresher {key} (pgexecute.PGExecute)",
                       functools.partial(refresh, completer, executor))  # fmt: skip
    capture.logged("pgcli PGExecute.casing", lambda: list(executor.casing()))

    def special(command: str) -> list[Any]:
        return list(executor.run(command, pgspecial=PGSpecial()))

    for command in (
        r"\dt",
        r"\d customers",
        r"\df",
        r"\dn",
        r"\l",
        r"\du",
        r"\dv",
        r"\d+ customers",
    ):
        capture.logged(f"pgcli / pgspecial {command}",
                       functools.partial(special, command))  # fmt: skip
    executor.conn.close()
    env = dict(os.environ, PGPASSWORD=shop.password, HOME="/tmp")
    argv = [str(Path(sys.executable).parent / "pgcli"), "-h", shop.host, "-p", str(shop.port),
            "-U", shop.user, "-d", shop.database, "--less-chatty", "-c", "select 1"]  # fmt: skip
    capture.logged("pgcli start-up (pgcli -c)", lambda: subprocess.run(
        argv, env=env, capture_output=True, timeout=60, check=False))  # fmt: skip


def main() -> None:
    cluster = PgCluster().start()
    try:
        shop = make_shop(cluster)
        cluster.sql(f"ALTER DATABASE \"{shop.database}\" SET log_statement = 'all'")
        capture = Capture(cluster)
        psql(capture, shop)
        url = f"{shop.user}:{shop.password}@{shop.host}:{shop.port}/{shop.database}"
        engine = create_engine(f"postgresql+psycopg://{url}")
        sqlalchemy(capture, engine)
        engine.dispose()
        asyncio_drivers(capture, shop, url)
        pgcli(capture, shop)
        print(capture.toml())
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
