"""Redaction of statement text and parameters for the query log, and statement splitting."""

from __future__ import annotations

import re

import pytest

from bastion.sqlparse import (
    describe_params,
    redact,
    redact_params,
    split_statements,
    unparsable,
)

UNPARSABLE = re.compile(r"^\[unparsable statement, \d+ bytes, sha256 [0-9a-f]{16}\]$")


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "SELECT * FROM t WHERE name = 'alice' AND age > 30",
            "SELECT * FROM t WHERE name = $1 AND age > $2",
        ),
        ("select * from t where id in (101, 202, 303)", "select * from t where id in ($1, $2, $3)"),
        (
            "INSERT INTO t (a, b) VALUES ('x', 1.5), ('y', -2)",
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)",
        ),
        (
            "UPDATE customers SET ssn = '123-45-6789' WHERE id = 7",
            "UPDATE customers SET ssn = $1 WHERE id = $2",
        ),
        ("SELECT $$secret$$, $tag$other$tag$", "SELECT $1, $2"),
        ("SELECT E'\\x73sn', B'101', X'ff', U&'d\\0061t'", "SELECT $1, $2, $3, $4"),
        ("SELECT interval '1 day', date '2024-01-01', true", "SELECT interval $1, date $2, $3"),
        (
            "SELECT * FROM t WHERE name LIKE '%smith%' LIMIT 10",
            "SELECT * FROM t WHERE name LIKE $1 LIMIT $2",
        ),
        # parameters already in the text keep their numbers; literals are numbered after them
        ("SELECT $1, 'x'", "SELECT $1, $2"),
        ("SELECT $2, 'x', $1", "SELECT $2, $3, $1"),
        # identifiers, keywords, case and spacing are kept
        (
            'SELECT U&"\\0073sn" FROM  Public."Customers"',
            'SELECT U&"\\0073sn" FROM  Public."Customers"',
        ),
        # several statements
        ("SELECT 'a'; SELECT 'b'", "SELECT $1; SELECT $2"),
        # comments are free text: emptied
        ("SELECT 1 /* customer alice@example.com */", "SELECT $1 /* */"),
        ("-- ssn 123-45-6789\nSELECT 1", "/* */\nSELECT $1"),
        ("SELECT 'café' /* ö */, 'ü'", "SELECT $1 /* */, $2"),
        # literals libpg_query's normalize leaves in utility statements
        ("COMMENT ON TABLE t IS 'secret note'", "COMMENT ON TABLE t IS $1"),
        ("SECURITY LABEL ON TABLE t IS 'secret'", "SECURITY LABEL ON TABLE t IS $1"),
        ("COPY t TO '/srv/secret.csv'", "COPY t TO $1"),
        (
            "PREPARE p AS SELECT * FROM t WHERE ssn = '123-45-6789' AND id = 42",
            "PREPARE p AS SELECT * FROM t WHERE ssn = $1 AND id = $2",
        ),
        ("EXECUTE p('123-45-6789', 42)", "EXECUTE p($1, $2)"),
        ("CREATE VIEW v AS SELECT 'secret' AS s", "CREATE VIEW v AS SELECT $1 AS s"),
        ("ALTER TABLE t ADD c text DEFAULT 'secret'", "ALTER TABLE t ADD c text DEFAULT $1"),
        # ones normalize handles
        ("CREATE USER bob PASSWORD 'hunter2'", "CREATE USER bob PASSWORD $1"),
        ("ALTER ROLE bob WITH PASSWORD 'hunter2'", "ALTER ROLE bob WITH PASSWORD $1"),
        ("DO $$ BEGIN RAISE NOTICE 'secret'; END $$", "DO $$ BEGIN RAISE NOTICE $1; END $$"),
        ("SET application_name = 'secret'", "SET application_name = $1"),
        ("SELECT set_config('x', 'secret', false)", "SELECT set_config($1, $2, $3)"),
        ("NOTIFY ch, 'secret'", "NOTIFY ch, $1"),
        ("CALL p('secret')", "CALL p($1)"),
        ("", ""),
    ],
)
def test_redact_replaces_literals_and_keeps_the_shape(sql: str, expected: str) -> None:
    assert redact(sql) == expected


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM t WHERE name = 'secret",
        "SELEC 'secret'",
        "SELECT 1; DELET FROM t WHERE ssn = 'secret'",
        "SELECT 'secret'\x00",
        "SELECT '\ud800secret'",
    ],
)
def test_unparsable_text_keeps_no_literal(sql: str) -> None:
    redacted = redact(sql)
    assert UNPARSABLE.match(redacted), redacted
    assert "secret" not in redacted
    assert redacted == unparsable(sql)


def test_the_unparsable_fallback_counts_utf8_bytes() -> None:
    assert unparsable("é").startswith("[unparsable statement, 2 bytes, sha256 ")
    assert unparsable("a") != unparsable("b")


def test_redaction_is_idempotent_where_normalize_did_all_the_work() -> None:
    once = redact("SELECT 'a', 2 /* c */ FROM t WHERE x IN ('p', 'q'); UPDATE t SET a = 'z'")
    assert redact(once) == once


def test_redact_params_gives_sizes_only() -> None:
    assert redact_params([b"alice", None, b"", b"x"]) == [
        "$1: 5 bytes",
        "$2: NULL",
        "$3: 0 bytes",
        "$4: 1 byte",
    ]
    assert redact_params([]) == []


def test_describe_params_decodes_text_and_shows_binary_as_hex() -> None:
    params = [b"alice", None, b"\x00\x00\x00\x07", "caf\u00e9".encode()]
    assert describe_params(params) == ["alice", None, "\x00\x00\x00\x07", "café"]
    assert describe_params(params, [1]) == ["\\x616c696365", None, "\\x00000007", "\\x636166c3a9"]
    assert describe_params(params, [0, 0, 1, 0]) == ["alice", None, "\\x00000007", "café"]
    assert describe_params([b"\xff"]) == ["\ufffd"]


@pytest.mark.parametrize(
    ("sql", "statements"),
    [
        ("SELECT 1", ["SELECT 1"]),
        ("SELECT 1; DELETE FROM t", ["SELECT 1", "DELETE FROM t"]),
        (
            "SELECT 1 /* ; */; INSERT INTO t VALUES (1);",
            ["SELECT 1 /* ; */", "INSERT INTO t VALUES (1)"],
        ),
        ("SELECT ';'; SELECT $$;$$ ;; ", ["SELECT ';'", "SELECT $$;$$"]),
        ("SELECT 1 -- ;\n; SELECT 2", ["SELECT 1 -- ;", "SELECT 2"]),
        ("SELECT 'é'; SELECT 'ü'", ["SELECT 'é'", "SELECT 'ü'"]),
        ("SELEC 1; SELECT 2", ["SELEC 1; SELECT 2"]),
        ("SELECT 1\x00; SELECT 2", ["SELECT 1\x00; SELECT 2"]),
        ("-- just a comment", ["-- just a comment"]),
        ("  ", []),
        ("", []),
    ],
)
def test_split_statements(sql: str, statements: list[str]) -> None:
    assert split_statements(sql) == statements


def test_split_statements_returns_a_fresh_list() -> None:
    first = split_statements("SELECT 1; SELECT 2")
    first.append("mutated")
    assert split_statements("SELECT 1; SELECT 2") == ["SELECT 1", "SELECT 2"]
