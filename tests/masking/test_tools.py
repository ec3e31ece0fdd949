"""SQLAlchemy 2 (psycopg and asyncpg), pandas and pgcli through the masked door to a real
PostgreSQL 15: each tool's start-up, catalog reads and selects work, and every sensitive
column still comes out masked."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from pgcli.completion_refresher import CompletionRefresher
from pgcli.pgcompleter import PGCompleter
from pgcli.pgexecute import PGExecute
from pgspecial.main import PGSpecial
from sqlalchemy import Engine, MetaData, Table, create_engine, inspect, select, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from tests.harness import Bastion
from tests.masking.door import PASSWORD
from tests.masking.shop import SECRETS
from tests.realpg import PgDatabase

TABLES = ["customers", "newsletter_stats", "orders", "orders_2025", "orders_2026", "payments"]


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    email: Mapped[str]
    ssn: Mapped[str | None]


def url(via: PgDatabase, driver: str) -> str:
    return f"postgresql+{driver}://{via.user}:{via.password}@{via.host}:{via.port}/{via.database}"


def one_connection_engine(bastion: Bastion) -> Engine:
    """An engine holding one pooled connection, opened with a fresh code (each new connection
    needs its own code; a pool of several needs a reusable ticket)."""
    via = bastion.via_bastion("alice", "shop", PASSWORD)
    return create_engine(url(via, "psycopg"), pool_size=1, max_overflow=0)


def clear(found: object) -> list[str]:
    """The fixtures' secrets that appear in `found`'s text."""
    return [s for s in SECRETS if s in str(found)]


def test_sqlalchemy_with_psycopg_reflects_and_selects_with_masking(bastion: Bastion) -> None:
    engine = one_connection_engine(bastion)
    try:
        inspector = inspect(engine)
        assert sorted(inspector.get_table_names()) == TABLES
        columns = {c["name"]: c for c in inspector.get_columns("customers")}
        assert list(columns)[:4] == ["id", "name", "email", "phone"]
        assert str(columns["email"]["type"]) == "TEXT" and not columns["email"]["nullable"]
        assert inspector.get_pk_constraint("customers")["constrained_columns"] == ["id"]
        assert inspector.get_view_names() == ["customer_contacts"]
        customers = Table("customers", MetaData(), autoload_with=engine)
        with engine.connect() as conn:
            query = select(customers.c.id, customers.c.email, customers.c.ssn)
            core = conn.execute(query.where(customers.c.id > 0).order_by(customers.c.id)).all()
            plain = conn.execute(text("SELECT id, phone FROM customers ORDER BY id")).all()
        with Session(engine) as session:
            orm = session.scalars(select(Customer).order_by(Customer.id)).all()
            people = [(c.id, c.name, c.email, c.ssn) for c in orm]
    finally:
        engine.dispose()
    assert [row[0] for row in core] == [4711, 4712]
    assert core[0][1] == "j*******@example.com" and core[0][2] == "***-**-6789"
    assert plain[0][1].endswith("4567") and "555-123" not in plain[0][1]
    assert people[0][:3] == (4711, "Jane Doe", "j*******@example.com")
    assert people[1][3] == "***-**-4321"
    assert clear([core, plain, people]) == []


def test_sqlalchemy_with_asyncpg_reflects_and_selects_with_masking(bastion: Bastion) -> None:
    async def run() -> tuple[list[str], list[str], list[Any], list[Any]]:
        via = bastion.via_bastion("alice", "shop", PASSWORD)
        engine = create_async_engine(url(via, "asyncpg"), pool_size=1, max_overflow=0)
        try:
            async with engine.connect() as conn:
                names = await conn.run_sync(lambda c: inspect(c).get_table_names())
                cols = await conn.run_sync(lambda c: inspect(c).get_columns("payments"))
                core = (await conn.execute(text("SELECT id, card_number, iban FROM payments"
                                                " ORDER BY id"))).all()  # fmt: skip
            async with engine.connect() as conn:
                result = await conn.execute(select(Customer.id, Customer.email)
                                            .order_by(Customer.id))  # fmt: skip
                orm = result.all()
        finally:
            await engine.dispose()
        return names, [c["name"] for c in cols], list(core), list(orm)

    names, cols, core, orm = asyncio.run(run())
    assert sorted(names) == TABLES
    assert cols == ["id", "order_id", "card_number", "iban", "amount_cents"]
    assert [row[0] for row in core] == [1, 2] and core[0][1].endswith("1111")
    assert "4111 1111 1111 1111" not in core[0][1] and core[0][2] != "DE89370400440532013000"
    assert orm[0] == (4711, "j*******@example.com")
    assert clear([core, orm]) == []


def test_pandas_read_sql_over_sqlalchemy_is_masked(bastion: Bastion) -> None:
    engine = one_connection_engine(bastion)
    try:
        with engine.connect() as conn:
            frame = pd.read_sql("SELECT id, name, email, date_of_birth FROM customers"
                                " ORDER BY id", conn)  # fmt: skip
            orders = pd.read_sql_table("orders", conn)
            totals = pd.read_sql("SELECT customer_id, sum(total_cents) AS total FROM orders"
                                 " GROUP BY 1 ORDER BY 1", conn)  # fmt: skip
    finally:
        engine.dispose()
    assert list(frame["id"]) == [4711, 4712] and list(frame["name"]) == ["Jane Doe", "John Roe"]
    assert frame["email"][0] == "j*******@example.com" and frame["date_of_birth"].isna().all()
    assert sorted(orders["id"]) == [1, 2] and "note" in orders.columns
    assert list(totals["total"]) == [1999, 4500]
    assert clear([frame.to_csv(), orders.to_csv()]) == []


def test_pgcli_starts_runs_a_command_and_its_completion_queries_pass(
    bastion: Bastion, tmp_path: Path
) -> None:
    # One reusable ticket for every connection pgcli opens: the CLI's, and the completion
    # refresher's second one.
    token, _, _ = bastion.core.tickets.mint(
        "alice", "shop", bastion.code("alice"), duration=timedelta(hours=1), bind=None, via="test"
    )
    via = PgDatabase("127.0.0.1", bastion.pg_port, "shop", "alice", token)
    # Start-up as a person runs it: the CLI, non-interactively, one connection (-c).
    env = dict(os.environ, PGPASSWORD=via.password, HOME=str(tmp_path), PGSSLMODE="prefer")
    pgcli = Path(sys.executable).parent / "pgcli"
    done = subprocess.run(
        [str(pgcli), "-h", via.host, "-p", str(via.port), "-U", via.user, "-d", via.database,
         "--less-chatty", "-c", "SELECT id, email, ssn FROM customers ORDER BY id", "-c", r"\dt"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "j*******@example.com" in done.stdout and "***-**-6789" in done.stdout
    assert "payments" in done.stdout and clear(done.stdout) == []
    # The completion refresher's own queries, on the connection it opens: the same ticket.
    executor = PGExecute(via.database, via.user, via.password, via.host, via.port, None)
    try:
        completer = PGCompleter(smart_completion=True, pgspecial=PGSpecial())
        for refresh in CompletionRefresher.refreshers.values():
            refresh(completer, executor)
        assert "public" in executor.search_path()
        assert {"customers", "payments"} <= {t[1] for t in executor.tables()}
        assert ("public", "customer_contacts") in list(executor.views())
        assert ("public", "customers", "email", "text", False, None) in list(
            executor.table_columns()
        )
        assert "top_customer" in {f.func_name for f in executor.functions()}
        assert "postgres" in executor.databases()  # the server's names, not the target's
        assert list(executor.datatypes()) == []  # the shop defines no types of its own
        assert "customers" in list(executor.casing())  # words of top_customer()'s source
        rows = [r for _, r, *_ in executor.run("SELECT email, street FROM customers",
                                                pgspecial=PGSpecial())]  # fmt: skip
    finally:
        executor.conn.close()
    assert "customers" in completer.dbmetadata["tables"]["public"]
    assert rows[0] is not None and clear(list(rows[0])) == []
    assert len(bastion.events("auth.ticket_ok")) >= 2  # both connections on the one ticket
