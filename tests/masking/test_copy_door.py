"""Masked exports through the real door and a real PostgreSQL 15: psql's \\copy and COPY TO
STDOUT, asyncpg's copy_from_query/copy_from_table (binary), psycopg's cursor.copy (text and
binary) show masked values and clean columns intact; COPY FROM, TO a file and PROGRAM stay
refused; attacks through the options and views leak nothing on the wire."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import select
import struct
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import pq

from tests.harness import Bastion
from tests.masking.door import PASSWORD, plain, shop_bastion, unmask
from tests.masking.shop import SECRETS
from tests.masking.wiretap import Tap
from tests.pgproxy.conftest import wait_for_outcomes
from tests.realpg import asyncpg_connect, psycopg_connect, run_psql

JANE = ["4711", "Jane Doe", "j*******@example.com", "***-**-6789"]
JOHN = ["4712", "John Roe", "j*******@example.org", "***-**-4321"]
QUERY = "SELECT id, name, email, ssn FROM customers ORDER BY id"


def _psql(bastion: Bastion, tap: Tap, *args: str, cwd: Path | None = None) -> str:
    via = plain(bastion.via_bastion("alice", "shop", PASSWORD), tap.port)
    env = {"PGSSLMODE": "disable"}
    if cwd is not None:  # \copy writes a file relative to psql's working directory
        args = ("-c", f"\\cd {cwd}", *args)
    done = run_psql(via, *args, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_psql_backslash_copy_to_a_csv_file_is_masked(bastion: Bastion, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    with Tap(bastion.pg_port) as tap:
        _psql(bastion, tap, "-c", f"\\copy ({QUERY}) to '{out}' csv header")
        assert tap.leaked(SECRETS) == []
        assert b"Jane Doe" in tap.received  # the tap reads plain text: the check is real
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert rows == [["id", "name", "email", "ssn"], JANE, JOHN]


def test_psql_copy_table_to_stdout_masks_by_column(bastion: Bastion) -> None:
    with Tap(bastion.pg_port) as tap:
        text = _psql(bastion, tap, "-c", "COPY customers TO STDOUT")
        assert tap.leaked(SECRETS) == []
    jane = text.splitlines()[0].split("\t")
    assert jane[:3] == JANE[:3] and jane[4] == JANE[3]
    assert jane[3].endswith("4567") and "555-123" not in jane[3]  # a phone's last 4
    assert jane[5:8] == ["\\N", "****", "\\N"]  # a date and an inet NULL, a street full
    assert jane[8].startswith("2026-01-01")  # created_at: clean, intact


def test_asyncpg_copy_from_query_and_table(bastion: Bastion) -> None:
    async def export() -> tuple[bytes, bytes, list[Any]]:
        conn = await asyncpg_connect(bastion.via_bastion("alice", "shop", PASSWORD))
        try:
            text, table = io.BytesIO(), io.BytesIO()
            await conn.copy_from_query(QUERY, output=text, format="csv")
            await conn.copy_from_table("customers", output=table, format="binary",
                                       columns=["id", "email", "ssn", "date_of_birth"])  # fmt: skip
            # Prepared statements and COPY in one session: the flow stays in step.
            after = await conn.fetch("SELECT id, email FROM customers ORDER BY id")
            return text.getvalue(), table.getvalue(), [tuple(r) for r in after]
        finally:
            await conn.close()

    text, binary, after = asyncio.run(export())
    assert list(csv.reader(io.StringIO(text.decode()))) == [JANE, JOHN]
    assert binary.startswith(b"PGCOPY\n\xff\r\n\x00") and binary.endswith(b"\xff\xff")
    assert b"j*******@example.com" in binary and b"***-**-6789" in binary
    assert not any(s.encode() in binary for s in SECRETS)
    assert after[0] == (4711, "j*******@example.com")


def test_psycopg_copy_text_and_binary_rows(bastion: Bastion) -> None:
    with psycopg_connect(bastion.via_bastion("alice", "shop", PASSWORD)) as conn:
        cur = conn.cursor()
        with cur.copy(f"COPY ({QUERY}) TO STDOUT") as copy:
            text_rows = list(copy.rows())
        sql = "COPY (SELECT id, email, date_of_birth, created_at FROM customers ORDER BY id)"
        with cur.copy(sql + " TO STDOUT (FORMAT binary)") as copy:
            copy.set_types(["int4", "text", "date", "timestamptz"])
            binary_rows = []
            while (row := copy.read_row()) is not None:
                binary_rows.append(row)
        assert cur.execute("SELECT count(*) FROM customers").fetchone() == (2,)
    assert [list(r) for r in text_rows] == [JANE, JOHN]
    assert [r[:3] for r in binary_rows] == [(4711, "j*******@example.com", None),
                                            (4712, "j*******@example.org", None)]  # fmt: skip
    assert binary_rows[0][3].year == 2026  # a clean timestamptz decodes as itself


@pytest.mark.parametrize("options", ["", "(HEADER)", "(FORMAT csv, HEADER)", "(FORMAT binary)"])
def test_empty_and_large_exports(bastion: Bastion, options: str) -> None:
    # No rows (a binary header and trailer share one message), then many rows over many reads:
    # every generated address masked in place by the detectors, every clean number intact.
    made = "SELECT g AS n, 'user' || g || '@example.com' AS mail FROM generate_series(1, 20000) g"
    with psycopg_connect(bastion.via_bastion("alice", "shop", PASSWORD)) as conn:
        cur = conn.cursor()
        with cur.copy(
            f"COPY (SELECT id, email FROM customers WHERE false) TO STDOUT {options}"
        ) as c:
            empty = b"".join(bytes(b) for b in c)
        with cur.copy(f"COPY ({made}) TO STDOUT {options}") as c:
            data = b"".join(bytes(b) for b in c)
        assert cur.execute("SELECT 1").fetchone() == (1,)
    header = b"id\temail\n" if "HEADER" in options and "csv" not in options else b""
    masked = ["u" + "*" * len(f"ser{n}") + "@example.com" for n in range(1, 20001)]
    if "binary" in options:
        assert empty == b"PGCOPY\n\xff\r\n\x00" + bytes(8) + b"\xff\xff"
        assert data.count(b"@example.com") == 20000
        tail = struct.pack("!i", len(masked[-1])) + masked[-1].encode() + b"\xff\xff"
        assert data.endswith(tail)
    else:
        assert empty in (header, b"id,email\n")
        lines = data.decode().splitlines()[1 if "HEADER" in options else 0 :]
        sep = "," if "csv" in options else "\t"
        wanted = [f"{n}{sep}" + (f'"{m}"' if sep == "," else m) for n, m in enumerate(masked, 1)]
        assert lines == wanted
    assert b"user" not in data  # no address's local part went out


def test_the_query_log_says_what_the_copy_masked(bastion: Bastion) -> None:
    sql = "COPY customers (id, email, ssn) TO STDOUT (FORMAT csv)"
    with psycopg_connect(bastion.via_bastion("alice", "shop", PASSWORD)) as conn, \
            conn.cursor().copy(sql) as copy:  # fmt: skip
        data = b"".join(bytes(b) for b in copy)
    assert data.count(b"@example.") == 2
    wait_for_outcomes(bastion, 1)
    [row] = [q for q in bastion.store.queries() if q.sql.startswith("COPY")]
    assert json.loads(row.masking or "{}") == {"masked": ["email", "ssn"]}
    assert row.rows == 2 and row.refused is None
    trail = json.dumps([e.detail for e in bastion.events()])
    assert not any(s in trail for s in SECRETS)


def test_an_unmask_grant_shows_its_subjects_row_in_clear(bastion: Bastion) -> None:
    unmask(bastion, ["customers.email", "customers.ssn"])
    with psycopg_connect(bastion.via_bastion("alice", "shop", PASSWORD)) as conn, \
            conn.cursor().copy(f"COPY ({QUERY}) TO STDOUT") as copy:  # fmt: skip
        rows = [list(r) for r in copy.rows()]
    assert rows == [["4711", "Jane Doe", "jane.doe@example.com", "123-45-6789"], JOHN]


# -- the attacker's side -----------------------------------------------------------------

SNEAKY = (
    # a query over sensitive columns, in every format
    "COPY (SELECT email, ssn, phone, street FROM customers) TO STDOUT",
    "COPY (SELECT email, ssn, phone, street FROM customers) TO STDOUT (FORMAT csv)",
    "COPY (SELECT email, ssn, phone, street FROM customers) TO STDOUT (FORMAT binary)",
    "COPY (SELECT card_number, iban FROM payments) TO STDOUT (FORMAT csv, HEADER)",
    # a view over sensitive columns, and its table by name
    "COPY (SELECT * FROM customer_contacts) TO STDOUT (FORMAT csv)",
    "COPY customers TO STDOUT (FORMAT binary)",
    "COPY payments (card_number, iban) TO STDOUT",
    # options that try to confuse the re-encoder: every value quoted, odd quote and escape,
    # a NULL string and delimiter made of what masked values hold
    "COPY (SELECT email, ssn FROM customers) TO STDOUT (FORMAT csv, FORCE_QUOTE *)",
    "COPY (SELECT email, ssn FROM customers) TO STDOUT (FORMAT csv, FORCE_QUOTE (email),"
    " QUOTE '*', ESCAPE '@', NULL '@example.com')",
    "COPY (SELECT email, ssn FROM customers) TO STDOUT (FORMAT csv, DELIMITER '*', QUOTE '-')",
    "COPY (SELECT email, ssn FROM customers) TO STDOUT (DELIMITER '@', NULL '\\q')",
    "COPY (SELECT id, note FROM orders) TO STDOUT (FORMAT csv)",
)
REFUSED = (
    "COPY customers FROM STDIN",
    "COPY customers TO '/tmp/bastion-copy-leak.txt'",
    "COPY customers TO PROGRAM 'cat > /tmp/bastion-copy-leak.txt'",
    "COPY (SELECT ssn FROM customers) TO PROGRAM 'cat'",
    "COPY (SELECT ssn FROM customers) TO STDOUT (NULL '123-45-6789')",  # an equality oracle
    "COPY (SELECT ssn FROM customers) TO STDOUT (NULL '')",
    "COPY (SELECT id FROM customers WHERE ssn LIKE '1%') TO STDOUT",
    "COPY (SELECT upper(email) FROM customers) TO STDOUT (FORMAT csv)",
    "COPY (SELECT top_customer()) TO STDOUT",
    "COPY (SELECT id FROM customers) TO STDOUT (ENCODING 'SJIS')",
)


@pytest.mark.parametrize("sql", SNEAKY)
def test_copy_over_sensitive_columns_leaks_nothing(bastion: Bastion, sql: str) -> None:
    with Tap(bastion.pg_port) as tap:
        via = plain(bastion.via_bastion("alice", "shop", PASSWORD), tap.port)
        with psycopg_connect(via, sslmode="disable") as conn:
            with conn.cursor().copy(sql) as copy:
                data = b"".join(bytes(b) for b in copy)
            assert conn.execute("SELECT 1").fetchone() == (1,)  # the session goes on
        assert tap.leaked(SECRETS) == []
    assert data  # rows came, masked
    assert not any(s.encode() in data for s in SECRETS)


def test_free_text_is_masked_as_the_same_select_would_be(tmp_path: Path, shop: Any) -> None:
    # A target that does not call order notes sensitive: the detectors are the last net. COPY
    # masks each column as a SELECT of it is masked; an expression, whose type COPY does not
    # tell, is scanned as text.
    b = shop_bastion(tmp_path / "b", shop, policy="").start()
    select = "SELECT id, note, note::varchar(60) AS cast FROM orders ORDER BY id"
    try:
        with psycopg_connect(b.via_bastion("alice", "shop", PASSWORD)) as conn:
            shown = [tuple(map(_text, r)) for r in conn.execute(select).fetchall()]
            cur = conn.cursor()
            with cur.copy(f"COPY ({select}) TO STDOUT") as copy:
                text = list(copy.rows())
            with cur.copy(f"COPY ({select}) TO STDOUT (FORMAT binary)") as copy:
                copy.set_types(["int4", "text", "text"])
                binary = [tuple(map(_text, r)) for r in iter(copy.read_row, None)]
    finally:
        b.stop()
    assert text == binary == shown
    assert shown[0][1:] == ("gift wrap please",) * 2
    assert shown[1][1:] == ("call j*******@example.com before delivery",) * 2


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def test_copy_from_to_a_file_and_program_stay_refused(bastion: Bastion) -> None:
    with psycopg_connect(bastion.via_bastion("alice", "shop", PASSWORD), autocommit=True) as c:
        for sql in REFUSED:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="refused by the"):
                c.execute(sql)
        assert c.execute("SELECT count(*) FROM customers").fetchone() == (2,)
    assert not Path("/tmp/bastion-copy-leak.txt").exists()
    wait_for_outcomes(bastion, len(REFUSED) + 1)
    refused = [q.refused for q in bastion.store.queries() if q.refused]
    assert len(refused) == len(REFUSED)
    assert sum("only COPY ... TO STDOUT" in (r or "") for r in refused) == 4


def test_psql_copy_from_stdin_is_refused_in_one_line(bastion: Bastion) -> None:
    via = bastion.via_bastion("alice", "shop", PASSWORD)
    done = run_psql(via, "-c", "\\copy customers from stdin", input="1\tx\n\\.\n")
    assert done.returncode != 0
    assert "only COPY ... TO STDOUT is allowed in masked mode" in done.stderr


def test_psycopg_copy_with_a_parameter(bastion: Bastion) -> None:
    sql = "COPY (SELECT id, email FROM customers WHERE id = %s) TO STDOUT"
    with psycopg_connect(bastion.via_bastion("alice", "shop", PASSWORD)) as conn, \
            conn.cursor().copy(sql, (4711,)) as copy:  # fmt: skip
        rows = [tuple(r) for r in copy.rows()]
    assert rows == [("4711", "j*******@example.com")]


def test_an_extended_protocol_copy_through_libpq(bastion: Bastion) -> None:
    # PQsendQueryParams: Parse, Bind, Describe portal (NoData), Execute, Sync; the reply is
    # CopyOutResponse, CopyData, CopyDone, CommandComplete.
    sql = b"COPY (SELECT id, email, ssn FROM customers ORDER BY id) TO STDOUT (FORMAT csv)"
    with psycopg_connect(bastion.via_bastion("alice", "shop", PASSWORD)) as conn:
        pgconn = conn.pgconn
        pgconn.send_query_params(sql, None)
        while pgconn.flush():
            select.select([], [pgconn.socket], [], 10)
        started = _result(pgconn)
        assert started is not None and started.status == pq.ExecStatus.COPY_OUT
        chunks = []
        while (got := pgconn.get_copy_data(1))[0] != -1:
            if got[0] == 0:  # nothing yet: wait for the socket without blocking the bastion
                select.select([pgconn.socket], [], [], 10)
                pgconn.consume_input()
            else:
                chunks.append(bytes(got[1]))
        finished = _result(pgconn)
        assert finished is not None and finished.status == pq.ExecStatus.COMMAND_OK
        assert _result(pgconn) is None
        assert conn.execute("SELECT count(*) FROM customers").fetchone() == (2,)
    assert chunks == [b'4711,"j*******@example.com","***-**-6789"\n',
                      b'4712,"j*******@example.org","***-**-4321"\n']  # fmt: skip


def _result(pgconn: Any) -> Any:
    """libpq's next result, waited for on the socket (a blocking PQgetResult would hold the
    GIL that the bastion, served in this process, needs to answer)."""
    while pgconn.is_busy():
        select.select([pgconn.socket], [], [], 10)
        pgconn.consume_input()
    return pgconn.get_result()
