"""What a restore on PostgreSQL takes from an archive's printed data (bastion/audit/pgload.py):
COPY rows and setval values of the store's schema, nothing else; an entry whose text aims
elsewhere, or that is SQL rather than rows, refuses the archive."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bastion.audit import pgload
from bastion.audit.base import migrations
from bastion.errors import UsageError

HEAD = (
    b"--\n-- PostgreSQL database dump\n--\n\n\\restrict abcDEF123\n\n"
    b"SET statement_timeout = 0;\nSET client_encoding = 'UTF8';\n"
    b"SELECT pg_catalog.set_config('search_path', '', false);\n\n"
)
TAIL = b"\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abcDEF123\n\n"
USERS = b'COPY public.users (id, name, "user") FROM stdin;\n1\talice\tx\n2\tbob\t\\N\n\\.\n\n\n'
SETVAL = b"SELECT pg_catalog.setval('public.users_id_seq', 7, true);\n"


def parsed(body: bytes, tmp_path: Path) -> pgload.Data:
    data = pgload.Data()
    pgload._parse(io.BytesIO(HEAD + body + TAIL), data, "public", Path("b.dump"), tmp_path)
    return data


def test_rows_and_sequence_values_are_taken_and_nothing_else(tmp_path: Path) -> None:
    data = parsed(USERS + SETVAL + b"SELECT pg_catalog.setval('public.t_id_seq', 3, false);\n",
                  tmp_path)  # fmt: skip
    assert data.columns == {"users": ["id", "name", "user"]}
    assert data.rows["users"].read_bytes() == b"1\talice\tx\n2\tbob\t\\N\n"
    assert data.last_values == {"users_id_seq": 7, "t_id_seq": 2}


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (USERS.replace(b"public.users", b"evil.users"), "aimed at the schema evil"),
        (USERS.replace(b"public.users", b'"public".users'), None),  # quoted: the same target
        (USERS.replace(b"public.users", b"pg_catalog.pg_authid"), "aimed at the schema"),
        (SETVAL.replace(b"public.", b"evil."), "setval aimed at the schema evil"),
        (b"DROP SCHEMA public_restoring_x CASCADE;\n", "DROP SCHEMA"),
        (b"INSERT INTO public.users VALUES (1, 'a');\n", "INSERT INTO"),
        (b"COPY public.users (id) FROM stdin; DROP TABLE x;\n1\n\\.\n", "COPY public.users"),
        (b"COPY public.users (id) FROM '/etc/passwd';\n", "COPY public.users"),
        (b"SELECT pg_catalog.setval('public.s', 1, true); SELECT 1;\n", "setval"),
        (USERS + USERS, "two entries of rows for users"),
        (USERS[: -len(b"\\.\n\n\n")], "rows that do not end"),
        (b"SET client_encoding = 'LATIN1';\n", "not in UTF8"),
        (USERS.replace(b"(id, name", b"(id; name"), "COPY of the columns"),
    ],
)
def test_anything_but_rows_of_the_store_refuses_the_archive(
    tmp_path: Path, body: bytes, said: str | None
) -> None:
    if said is None:
        assert parsed(body, tmp_path).columns == {"users": ["id", "name", "user"]}
        return
    with pytest.raises(UsageError, match="nothing was restored") as refused:
        parsed(body, tmp_path)
    assert said in str(refused.value)


def test_a_line_of_rows_that_reads_like_sql_stays_data(tmp_path: Path) -> None:
    body = b"COPY public.users (id, name) FROM stdin;\n1\tDROP SCHEMA public CASCADE;\n\\.\n"
    assert parsed(body, tmp_path).rows["users"].read_bytes() == (
        b"1\tDROP SCHEMA public CASCADE;\n"
    )


def migration_rows(tmp_path: Path, rows: list[tuple[int, str]]) -> pgload.Data:
    text = "".join(f"{n}\t{name}\t2026-01-0{1 + n % 9}T00:00:00+00:00\n" for n, name in rows)
    path = tmp_path / "m.copy"
    path.write_text(text, encoding="utf-8")
    return pgload.Data(rows={"schema_migrations": path},
                       columns={"schema_migrations": ["number", "name", "applied_at"]})  # fmt: skip


def test_the_archive_names_which_migrations_make_its_tables(tmp_path: Path) -> None:
    ours = [(n, name) for n, name, _ in migrations("postgresql")]
    assert pgload._applied(migration_rows(tmp_path, ours[:-1]), Path("b")) == [
        n for n, _ in ours[:-1]
    ]
    unknown = [*ours, (ours[-1][0] + 1, f"{ours[-1][0] + 1:04d}_from_the_future.sql")]
    with pytest.raises(UsageError, match=r"from_the_future\.sql, which this bastion does not"):
        pgload._applied(migration_rows(tmp_path, unknown), Path("b"))
    renamed = [*ours[:-1], (ours[-1][0], "0099_other.sql")]
    with pytest.raises(UsageError, match="does not have"):
        pgload._applied(migration_rows(tmp_path, renamed), Path("b"))
    with pytest.raises(UsageError, match="skip a migration"):
        pgload._applied(migration_rows(tmp_path, ours[:3] + ours[4:]), Path("b"))
    with pytest.raises(UsageError, match="skip a migration"):
        pgload._applied(migration_rows(tmp_path, []), Path("b"))
