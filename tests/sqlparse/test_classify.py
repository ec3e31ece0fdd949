"""Read-only classification: a table of statements a read grant allows or refuses, and why."""

from __future__ import annotations

import pytest

from bastion.sqlparse import Classification, StatementInfo, classify, command_kind
from bastion.sqlparse.classifier import CACHE_MAX_CHARS

ALLOWED = [
    # plain reads, any spelling
    "SELECT 1",
    "select 1",
    "SeLeCt * FrOm t",
    "SELECT * FROM t WHERE a = 1 -- trailing comment",
    "/* leading comment */ SELECT 1",
    "SELECT 1 /* ; DELETE FROM t */",
    'SELECT U&"\\0073sn" FROM customers',
    'SELECT "ssn" FROM public . "customers"',
    "SELECT $$dollar; DELETE FROM t$$",
    "SELECT $q$ ; INSERT INTO t VALUES (1) $q$",
    "SELECT E'\\x73sn'",
    "SELECT 'it''s; DROP TABLE t'",
    "VALUES (1), (2)",
    "TABLE t",
    "SELECT 1 UNION SELECT 2",
    "WITH x AS (SELECT 1) SELECT * FROM x",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r",
    "SELECT * FROM (SELECT a FROM t) s JOIN u USING (a)",
    "SELECT count(*), max(a) FROM t GROUP BY b HAVING count(*) > 1",
    "SELECT now(), pg_sleep(0), txid_current_if_assigned()",
    # functions on the allow-list, and operators (built-in symbols, or pg_catalog's)
    "SELECT lower(name), length(name), coalesce(a, 0) + 1, a BETWEEN 1 AND 2 FROM t",
    "SELECT date_trunc('day', now()) - interval '1 day', extract(year FROM now())",
    "SELECT jsonb_build_object('a', 1) -> 'a', array_agg(a ORDER BY a) FROM t",
    "SELECT * FROM generate_series(1, 3) g, unnest(ARRAY[1]) u",
    "SELECT a OPERATOR(pg_catalog.+) 1, pg_catalog.upper('x') FROM t",
    "SELECT 1 = ANY (SELECT a FROM t), a IS DISTINCT FROM 2, b LIKE 'x%' FROM t",
    "SELECT a FROM t ORDER BY a USING <, b USING OPERATOR(pg_catalog.>)",
    "SELECT pg_catalog.format_type(t.oid, NULL), pg_catalog.pg_get_userbyid(t.typowner)"
    " FROM pg_catalog.pg_type t WHERE pg_catalog.pg_type_is_visible(t.oid)",
    # set_config of an ordinary setting is SET by another name (asyncpg turns off jit so)
    "SELECT current_setting('jit') AS cur, set_config('jit', 'off', false) AS new",
    "SELECT set_config('jit', $1, false)",
    "SELECT set_config('search_path', 'public', false)",
    # the settings that change how SQL is read, set to what they must be
    "SET client_encoding = 'UTF8'",
    "SET NAMES 'utf-8'",
    "SET standard_conforming_strings = on",
    "SELECT set_config('client_encoding', 'UTF8', false)",
    "SELECT current_setting('default_transaction_read_only')",
    "SELECT row_to_json(c) FROM customers c",
    "SELECT 1; SELECT 2",
    # EXPLAIN: planning only, or ANALYZE of something allowed
    "EXPLAIN SELECT 1",
    "EXPLAIN ANALYZE SELECT * FROM t",
    "EXPLAIN (ANALYZE, BUFFERS) SELECT 1",
    "EXPLAIN INSERT INTO t VALUES (1)",
    "EXPLAIN (COSTS off) DELETE FROM t",
    "EXPLAIN (ANALYZE false) DELETE FROM t",
    "EXPLAIN (ANALYZE off, VERBOSE) UPDATE t SET a = 1",
    "EXPLAIN (ANALYZE 0) DELETE FROM t",
    "EXPLAIN EXECUTE p(1)",
    # SHOW, SET and RESET of ordinary settings
    "SHOW search_path",
    "SHOW ALL",
    "show default_transaction_read_only",
    "SET search_path TO pg_catalog, public",
    "SET search_path TO public",
    "SET SCHEMA 'public'",
    "SET statement_timeout = '5s'",
    "SET LOCAL work_mem = '64MB'",
    "SET TIME ZONE 'UTC'",
    "SET NAMES 'UTF8'",
    "SET application_name = 'psql'",
    "RESET statement_timeout",
    "SET extra_float_digits TO DEFAULT",
    "SET default_transaction_read_only = on",
    "SET default_transaction_read_only TO true",
    "SET transaction_read_only = 1",
    # transactions
    "BEGIN",
    "BEGIN READ ONLY",
    "BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE",
    "START TRANSACTION ISOLATION LEVEL REPEATABLE READ",
    "SET TRANSACTION READ ONLY",
    "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    "SET TRANSACTION SNAPSHOT '00000003-0000001B-1'",
    "COMMIT",
    "END",
    "ROLLBACK",
    "ABORT",
    "SAVEPOINT s",
    "RELEASE SAVEPOINT s",
    "ROLLBACK TO SAVEPOINT s",
    # cursors and prepared statements
    "DECLARE c CURSOR FOR SELECT 1",
    "DECLARE c NO SCROLL CURSOR WITH HOLD FOR SELECT * FROM t",
    "FETCH 10 FROM c",
    "FETCH ALL IN c",
    "MOVE NEXT IN c",
    "CLOSE c",
    "CLOSE ALL",
    "PREPARE p AS SELECT $1",
    "PREPARE p(int) AS SELECT * FROM t WHERE a = $1",
    "DEALLOCATE p",
    "DEALLOCATE ALL",
    # DISCARD, LISTEN
    "DISCARD PLANS",
    "DISCARD SEQUENCES",
    "DISCARD TEMP",
    "LISTEN ch",
    "UNLISTEN ch",
    "UNLISTEN *",
    # COPY out to the client
    "COPY t TO STDOUT",
    "copy t (a, b) to stdout with (format csv, header)",
    "COPY (SELECT * FROM t WHERE a > 1) TO STDOUT",
    # nothing at all
    "",
    ";",
    "-- only a comment",
]

REFUSED = [
    # data
    ("INSERT INTO t VALUES (1)", "INSERT changes data"),
    ("insert into t select * from s", "INSERT changes data"),
    ("UPDATE t SET a = 1", "UPDATE changes data"),
    ("DELETE FROM t", "DELETE changes data"),
    ("delete from t where id = 5", "DELETE changes data"),
    ("MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE", "MERGE changes data"),
    ("TRUNCATE t", "TRUNCATE changes data"),
    ("REFRESH MATERIALIZED VIEW m", "REFRESH MATERIALIZED VIEW changes data"),
    ('INSERT INTO U&"\\0074" VALUES (1)', "INSERT changes data"),
    # SELECT INTO, row locks, data-modifying WITH
    ("SELECT * INTO t2 FROM t", "SELECT INTO creates a table"),
    ("select a into temp t2 from t", "SELECT INTO creates a table"),
    ("CREATE TABLE t2 AS SELECT 1", "CREATE TABLE AS changes the schema"),
    ("SELECT * FROM t FOR UPDATE", "SELECT FOR UPDATE locks rows"),
    ("select * from t for no key update nowait", "SELECT FOR NO KEY UPDATE locks rows"),
    ("SELECT * FROM t FOR SHARE", "SELECT FOR SHARE locks rows"),
    ("SELECT * FROM t FOR KEY SHARE SKIP LOCKED", "SELECT FOR KEY SHARE locks rows"),
    ("SELECT * FROM (SELECT * FROM t FOR UPDATE) s", "locks rows"),
    ("(SELECT 1 FOR SHARE) UNION SELECT 2", "locks rows"),
    ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "data-modifying WITH query (DELETE)"),
    ("WITH i AS (INSERT INTO t VALUES (1) RETURNING a) SELECT 1", "WITH query (INSERT) changes"),
    ("WITH u AS (UPDATE t SET a = 1 RETURNING a) SELECT * FROM u", "WITH query (UPDATE)"),
    (
        "WITH a AS (WITH b AS (DELETE FROM t RETURNING 1) SELECT * FROM b) SELECT * FROM a",
        "WITH query (DELETE)",
    ),
    ("SELECT * FROM (WITH d AS (DELETE FROM t RETURNING a) SELECT a FROM d) s", "(DELETE)"),
    # functions that write or lift the guard
    ("SELECT set_config('default_transaction_read_only', 'off', false)", "set_config()"),
    ("select PG_CATALOG.SET_CONFIG('ROLE', 'y', true)", "set_config() of role"),
    ("SELECT \"set_config\"('transaction_read_only', 'b', false)", "set_config()"),
    ("SELECT U&\"set\\005fconfig\"('session_authorization', 'b', false)", "set_config()"),
    ("SELECT * FROM set_config('default_transaction_read_only', 'b', false)", "set_config()"),
    ("SELECT (SELECT set_config($1, 'b', false))", "set_config() with a setting that is not"),
    ("SELECT 1 WHERE EXISTS (SELECT set_config(a, 'b', false) FROM t)", "set_config()"),
    ("SELECT set_config('search_path', 'public, pg_catalog', false)", "search_path"),
    ("SELECT set_config('search_path', $1, false)", "search_path"),
    # newer grammar than the target's: PostgreSQL 15 reads these as plain function calls
    ("SELECT json_scalar(1)", "JsonScalarExpr is newer SQL syntax"),
    ("SELECT json_value(a, '$.b') FROM t", "newer SQL syntax"),
    ("SELECT 1 FROM t WHERE json_exists(a, '$.b')", "newer SQL syntax"),
    ("SELECT merge_action()", "MergeSupportFunc is newer SQL syntax"),
    # a client encoding or escape rule under which the server would read other code
    ("SET client_encoding = 'SJIS'", "client_encoding 'SJIS' is not allowed"),
    ("SET NAMES 'GBK'", "client_encoding 'GBK' is not allowed"),
    ("RESET client_encoding", "client_encoding may only be set to a constant"),
    ("SET client_encoding TO DEFAULT", "client_encoding may only be set to a constant"),
    ("SET standard_conforming_strings = off", "standard_conforming_strings must stay on"),
    ("SET standard_conforming_strings TO false", "standard_conforming_strings must stay on"),
    ("SELECT set_config('standard_conforming_strings', 'off', false)", "must stay on"),
    ("SELECT set_config('client_encoding', 'BIG5', false)", "'BIG5' is not allowed"),
    ("SELECT set_config('client_encoding', $1, false)", "not a constant"),
    ("SET search_path TO public, pg_catalog", "search_path with pg_catalog after"),
    ('SET search_path = "$user", public, "pg_catalog"', "search_path with pg_catalog after"),
    # not on the allow-list: named with why, and how to ask for more
    ("SELECT ts_rewrite($1::tsquery, 'SELECT set_config(1)')", "ts_rewrite() runs the SQL text"),
    ("SELECT ts_rewrite('a'::tsquery, 'a'::tsquery, 'b'::tsquery)", "request TARGET --mode write"),
    ("SELECT * FROM ts_stat('SELECT to_tsvector(note) FROM orders')", "ts_stat() runs SQL text"),
    ("SELECT query_to_xml_and_xmlschema('SELECT 1', true, true, '')", "query_to_xml_and_xmlsch"),
    ("SELECT cursor_to_xml('c', 1, true, true, '')", "cursor_to_xml() runs"),
    ("SELECT pg_read_file('/etc/passwd')", "pg_read_file() reads the database server's files"),
    ("SELECT lo_create(0)", "lo_create() changes large objects"),
    ("SELECT txid_current()", "txid_current() assigns a transaction id"),
    ("SELECT pg_advisory_lock(1)", "pg_advisory_lock() takes a lock"),
    ("SELECT pg_try_advisory_xact_lock(1)", "pg_try_advisory_xact_lock() takes a lock"),
    ("SELECT public.lower('x')", "public.lower() is not a built-in"),
    ("SELECT my_function(1)", "my_function() is not on the read grant's allow-list"),
    ("SELECT * FROM my_srf()", "my_srf()"),
    ("SELECT x FROM t ORDER BY my_sort_key(x)", "my_sort_key()"),
    ("SELECT 1 ### 2", "operator ### is not a built-in operator"),
    ("SELECT a FROM t ORDER BY a USING OPERATOR(public.<)", "operator public.< is not a"),
    ("SELECT array_agg(a ORDER BY a USING ###) FROM t", "operator ###"),
    ("SELECT 1 OPERATOR(public.+) 2", "operator public.+ is not a built-in operator"),
    ("SELECT 1 = ANY (SELECT 1) AND 2 OPERATOR(public.=) ANY (SELECT 2)", "operator public.="),
    ("SELECT nextval('s')", "nextval() advances a sequence"),
    ("SELECT * FROM t WHERE a = nextval('s')", "nextval()"),
    ("VALUES (nextval('s'))", "nextval()"),
    ("SELECT setval('s', 1)", "setval() changes a sequence"),
    ("SELECT pg_terminate_backend(123)", "pg_terminate_backend() ends another session"),
    ("SELECT pg_cancel_backend(123)", "pg_cancel_backend()"),
    ("SELECT lo_import('/etc/passwd')", "lo_import()"),
    ("SELECT lo_export(1, '/tmp/x')", "lo_export() writes a server file"),
    ("SELECT lo_unlink(1)", "lo_unlink()"),
    ("SELECT dblink_exec('dbname=x', 'DELETE FROM t')", "dblink_exec() runs SQL over another"),
    ("SELECT * FROM dblink('', 'DELETE FROM t') AS r(a int)", "dblink()"),
    ("SELECT pg_reload_conf()", "pg_reload_conf()"),
    ("SELECT pg_rotate_logfile()", "pg_rotate_logfile()"),
    ("SELECT pg_switch_wal()", "pg_switch_wal()"),
    ("SELECT pg_create_restore_point('x')", "pg_create_restore_point()"),
    ("SELECT pg_notify('ch', 'payload')", "pg_notify()"),
    ("SELECT query_to_xml('DELETE FROM t RETURNING 1', true, true, '')", "query_to_xml()"),
    ("SELECT pg_stat_reset()", "pg_stat_reset() resets statistics"),
    ("SELECT pg_create_logical_replication_slot('s', 'pgoutput')", "replication"),
    # EXPLAIN ANALYZE runs the statement
    (
        "EXPLAIN ANALYZE INSERT INTO t VALUES (1)",
        "EXPLAIN ANALYZE runs the statement: INSERT changes data",
    ),
    ("explain analyse delete from t", "EXPLAIN ANALYZE runs the statement: DELETE"),
    ("EXPLAIN (ANALYZE) DELETE FROM t", "DELETE changes data"),
    ("EXPLAIN (ANALYZE true, BUFFERS) UPDATE t SET a = 1", "UPDATE changes data"),
    ("EXPLAIN (ANALYZE on) UPDATE t SET a = 1", "UPDATE changes data"),
    ("EXPLAIN (ANALYZE 1) UPDATE t SET a = 1", "UPDATE changes data"),
    ("EXPLAIN (ANALYZE maybe) DELETE FROM t", "DELETE changes data"),  # unclear: fail closed
    ("EXPLAIN (ANALYZE true, ANALYZE false) DELETE FROM t", "DELETE changes data"),
    ("EXPLAIN ANALYZE SELECT nextval('s')", "nextval()"),
    ("EXPLAIN ANALYZE SELECT * FROM t FOR UPDATE", "locks rows"),
    ("EXPLAIN ANALYZE CREATE TABLE x AS SELECT 1", "CREATE TABLE AS"),
    ("EXPLAIN ANALYZE EXECUTE p(1)", "EXECUTE of a prepared statement cannot be checked"),
    # the read-only guard itself
    (
        "SET default_transaction_read_only = off",
        "SET default_transaction_read_only would lift the read-only guard",
    ),
    ("set default_transaction_read_only to false", "would lift the read-only guard"),
    ("SET default_transaction_read_only = 0", "would lift the read-only guard"),
    ("SET SESSION default_transaction_read_only = off", "would lift the read-only guard"),
    ("SET default_transaction_read_only TO DEFAULT", "would lift the read-only guard"),
    ("SET default_transaction_read_only FROM CURRENT", "would lift the read-only guard"),
    ("SET default_transaction_read_only = on, off", "would lift the read-only guard"),
    ('SET "default_transaction_read_only" = off', "default_transaction_read_only would lift"),
    ('SET "DEFAULT_TRANSACTION_READ_ONLY" = off', "default_transaction_read_only would lift"),
    ('SET U&"default_transaction_read_onl\\0079" = off', "would lift the read-only guard"),
    ("SET LOCAL transaction_read_only = off", "SET transaction_read_only would lift"),
    ("RESET default_transaction_read_only", "RESET default_transaction_read_only would lift"),
    ("RESET transaction_read_only", "RESET transaction_read_only would lift"),
    ("RESET ALL", "RESET ALL would lift the read-only guard"),
    ("DISCARD ALL", "DISCARD ALL would lift the read-only guard"),
    (
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE would lift",
    ),
    ("SET TRANSACTION READ WRITE", "SET TRANSACTION READ WRITE would lift"),
    ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE", "READ WRITE would lift"),
    ("BEGIN READ WRITE", "BEGIN READ WRITE would lift the read-only guard"),
    ("begin isolation level serializable read write", "BEGIN READ WRITE"),
    ("START TRANSACTION READ WRITE", "START TRANSACTION READ WRITE would lift"),
    ("SELECT 1; BEGIN READ WRITE; COMMIT", "BEGIN READ WRITE"),
    # identity
    ("SET ROLE admin", "SET ROLE changes the session's identity"),
    ("SET LOCAL ROLE admin", "SET ROLE changes"),
    ("SET ROLE NONE", "SET ROLE changes"),
    ("RESET ROLE", "RESET ROLE changes the session's identity"),
    ("SET SESSION AUTHORIZATION admin", "SET SESSION AUTHORIZATION changes"),
    ("SET SESSION AUTHORIZATION DEFAULT", "SET SESSION AUTHORIZATION changes"),
    ("RESET SESSION AUTHORIZATION", "RESET SESSION AUTHORIZATION changes"),
    # prepared statements and cursors
    ("EXECUTE p", "EXECUTE of a prepared statement cannot be checked; use the extended protocol"),
    ("EXECUTE p(1, 'x')", "EXECUTE of a prepared statement cannot be checked"),
    ("PREPARE p AS INSERT INTO t VALUES ($1)", "INSERT changes data"),
    ("PREPARE p AS SELECT nextval('s')", "nextval()"),
    ("DECLARE c CURSOR FOR SELECT * FROM t FOR UPDATE", "locks rows"),
    ("DECLARE c CURSOR FOR SELECT set_config('role', 'b', false)", "set_config()"),
    # NOTIFY
    ("NOTIFY ch", "NOTIFY sends a message to other sessions"),
    ("NOTIFY ch, 'payload'", "NOTIFY sends"),
    # COPY
    ("COPY t FROM STDIN", "COPY FROM writes data"),
    ("copy t from '/tmp/x'", "COPY FROM writes data"),
    ("COPY t TO '/tmp/x'", "COPY TO a file writes on the database server"),
    ("COPY (SELECT 1) TO '/tmp/x'", "COPY TO a file"),
    ("COPY t TO PROGRAM 'cat'", "COPY TO PROGRAM runs a program"),
    ("COPY (DELETE FROM t RETURNING *) TO STDOUT", "DELETE changes data"),
    ("COPY (SELECT nextval('s')) TO STDOUT", "nextval()"),
    ("COPY (SELECT * FROM t FOR UPDATE) TO STDOUT", "locks rows"),
    # code, maintenance, locks
    ("DO $$ BEGIN DELETE FROM t; END $$", "DO runs code that can write"),
    ("do $$begin null; end$$", "DO runs code"),
    ("CALL p()", "CALL runs a procedure that can write"),
    ("VACUUM", "VACUUM is a maintenance command"),
    ("VACUUM FULL t", "VACUUM is a maintenance command"),
    ("ANALYZE t", "ANALYZE is a maintenance command"),
    ("CLUSTER t", "CLUSTER rewrites a table"),
    ("REINDEX TABLE t", "REINDEX rebuilds indexes"),
    ("CHECKPOINT", "CHECKPOINT is a server maintenance command"),
    ("LOAD 'auto_explain'", "LOAD loads a library"),
    ("LOCK TABLE t", "LOCK TABLE takes locks"),
    ("lock t in access share mode", "LOCK TABLE takes locks"),
    ("ALTER SYSTEM SET work_mem = '1GB'", "ALTER SYSTEM changes the server configuration"),
    ("PREPARE TRANSACTION 'x'", "PREPARE TRANSACTION acts on a two-phase transaction"),
    ("COMMIT PREPARED 'x'", "COMMIT PREPARED acts on a two-phase transaction"),
    ("ROLLBACK PREPARED 'x'", "ROLLBACK PREPARED acts on a two-phase transaction"),
    ("SET CONSTRAINTS ALL DEFERRED", "SET CONSTRAINTS is not known to be read-only"),
    # schema
    ("CREATE TABLE t (a int)", "CREATE TABLE changes the schema"),
    ("create temp table t (a int)", "CREATE TABLE changes the schema"),
    ("CREATE INDEX i ON t (a)", "CREATE INDEX changes the schema"),
    ("CREATE VIEW v AS SELECT 1", "CREATE VIEW changes the schema"),
    ("CREATE MATERIALIZED VIEW m AS SELECT 1", "CREATE MATERIALIZED VIEW changes the schema"),
    ("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$", "CREATE FUNCTION"),
    ("CREATE PROCEDURE p() LANGUAGE sql AS $$ SELECT 1 $$", "CREATE PROCEDURE changes"),
    ("CREATE EXTENSION dblink", "CREATE EXTENSION changes the schema"),
    ("CREATE SCHEMA s", "CREATE SCHEMA changes the schema"),
    ("CREATE SEQUENCE s", "CREATE SEQUENCE changes the schema"),
    ("CREATE TYPE ty AS (a int)", "CREATE TYPE changes the schema"),
    ("CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()", "CREATE TRIGGER"),
    ("CREATE RULE r AS ON INSERT TO t DO INSTEAD NOTHING", "CREATE RULE changes the schema"),
    ("ALTER TABLE t ADD COLUMN c int", "ALTER TABLE changes the schema"),
    ("ALTER TABLE t RENAME TO u", "ALTER TABLE changes the schema"),
    ("ALTER DATABASE d SET default_transaction_read_only = off", "ALTER DATABASE changes"),
    ("DROP TABLE t", "DROP TABLE changes the schema"),
    ("drop index i", "DROP INDEX changes the schema"),
    ("DROP SCHEMA s CASCADE", "DROP SCHEMA changes the schema"),
    ("COMMENT ON TABLE t IS 'x'", "COMMENT changes the schema"),
    ("SECURITY LABEL ON TABLE t IS 'x'", "SECURITY LABEL changes the schema"),
    ("IMPORT FOREIGN SCHEMA a FROM SERVER s INTO b", "IMPORT FOREIGN SCHEMA changes the schema"),
    # roles and privileges
    ("GRANT SELECT ON t TO u", "GRANT changes roles or privileges"),
    ("REVOKE SELECT ON t FROM u", "REVOKE changes roles or privileges"),
    ("GRANT admin TO u", "GRANT changes roles"),
    ("CREATE ROLE r", "CREATE ROLE changes roles or privileges"),
    ("ALTER ROLE r PASSWORD 'x'", "ALTER ROLE changes roles"),
    ("ALTER ROLE r SET default_transaction_read_only = off", "ALTER ROLE changes roles"),
    ("DROP ROLE r", "DROP ROLE changes roles"),
    ("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO u", "ALTER DEFAULT PRIVILEGES"),
    ("REASSIGN OWNED BY a TO b", "REASSIGN OWNED changes roles"),
    ("DROP OWNED BY a", "DROP OWNED changes roles"),
    # several statements: any writing one refuses the whole text
    ("SELECT 1; DELETE FROM t", "DELETE changes data"),
    ("select 1;delete from t", "DELETE changes data"),
    ("SELECT 1 /* ; */; INSERT INTO t VALUES (1)", "INSERT changes data"),
    ("SELECT '; DELETE FROM t'; UPDATE t SET a = 1", "UPDATE changes data"),
    ("SELECT $$;$$; TRUNCATE t", "TRUNCATE changes data"),
    ("-- ;\nSELECT 1; DROP TABLE t", "DROP TABLE"),
    ("SELECT 1 -- ;\n; CREATE TABLE x ()", "CREATE TABLE"),
    ("BEGIN; SET TRANSACTION READ WRITE; COMMIT", "SET TRANSACTION READ WRITE"),
    # what does not parse is refused (fail closed)
    ("SELEC 1", "cannot parse the statement: syntax error"),
    ("SELECT 'unterminated", "cannot parse the statement"),
    ("SELECT 1; DELET FROM t", "cannot parse the statement"),
    ("SELECT 1 /* unterminated comment", "cannot parse the statement"),
    ("SELECT 1\x00; DELETE FROM t", "cannot parse the statement: the statement contains a NUL"),
    ("SELECT '\ud800'", "cannot parse the statement: the statement is not valid UTF-8"),
    ("SELECT " + "(" * 10_000 + "1" + ")" * 10_000, "cannot parse the statement"),
    ("SELECT " + "ARRAY[" * 400 + "1" + "]" * 400, "cannot parse the statement"),
]


@pytest.mark.parametrize("sql", ALLOWED)
def test_allowed_under_a_read_grant(sql: str) -> None:
    result = classify(sql)
    assert result.error is None
    assert result.read_only_refusal is None, result
    assert not any(statement.writes for statement in result.statements)


@pytest.mark.parametrize(("sql", "reason"), REFUSED, ids=[sql[:60] for sql, _ in REFUSED])
def test_refused_under_a_read_grant(sql: str, reason: str) -> None:
    refusal = classify(sql).read_only_refusal
    assert refusal is not None
    assert reason in refusal
    assert "\n" not in refusal


def test_one_entry_per_statement_with_node_names() -> None:
    result = classify("SELECT 1; DELETE FROM t; SET search_path = a")
    assert result == Classification(
        (
            StatementInfo("SelectStmt", writes=False, reason=None),
            StatementInfo("DeleteStmt", writes=True, reason="DELETE changes data"),
            StatementInfo("VariableSetStmt", writes=False, reason=None),
        )
    )
    assert result.read_only_refusal == "DELETE changes data"


def test_the_first_refusal_wins() -> None:
    refusal = classify("CREATE TABLE x (a int); INSERT INTO x VALUES (1)").read_only_refusal
    assert refusal == "CREATE TABLE changes the schema"


def test_a_parse_error_is_one_line_with_no_statements() -> None:
    result = classify("SELECT 1;\n\nSELEC\n2")
    assert result.statements == ()
    assert result.error is not None and "\n" not in result.error
    assert result.read_only_refusal == f"cannot parse the statement: {result.error}"


def test_results_are_cached_by_text() -> None:
    sql = "SELECT abalance FROM pgbench_accounts WHERE aid = $1"
    assert classify(sql) is classify(sql)


def test_long_texts_are_classified_without_the_cache() -> None:
    long_select = "SELECT " + ", ".join(["1"] * CACHE_MAX_CHARS) + "; DELETE FROM t"
    assert len(long_select) > CACHE_MAX_CHARS
    assert classify(long_select).read_only_refusal == "DELETE changes data"
    assert classify(long_select) is not classify(long_select)


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("SELECT 1", "SELECT"),
        ("insert into t values (1)", "INSERT"),
        ("UPDATE t SET a = 1", "UPDATE"),
        ("DELETE FROM t", "DELETE"),
        ("CREATE TABLE t (a int)", "CREATE TABLE"),
        ("DROP VIEW v", "DROP VIEW"),
        ("SET a = 1", "SET"),
        ("RESET ALL", "RESET"),
        ("BEGIN", "BEGIN"),
        ("COPY t TO STDOUT", "COPY"),
        ("MOVE c", "MOVE"),
        ("SELECT 1; DELETE FROM t", "SELECT"),
        ("", "EMPTY"),
        ("SELEC 1", "UNKNOWN"),
    ],
)
def test_command_kind(sql: str, kind: str) -> None:
    assert command_kind(sql) == kind


def test_texts_differing_only_in_literals_share_one_analysis() -> None:
    first = classify("SELECT abalance FROM pgbench_accounts WHERE aid = 101")
    assert classify("SELECT abalance FROM pgbench_accounts WHERE aid = 202") is first


@pytest.mark.parametrize(
    ("allowed", "refused"),
    [
        ("SET default_transaction_read_only = on", "SET default_transaction_read_only = off"),
        ("SET transaction_read_only = 'true'", "SET transaction_read_only = 'false'"),
        ("SET TRANSACTION READ ONLY", "SET TRANSACTION READ WRITE"),
        ("EXPLAIN (ANALYZE false) DELETE FROM t", "EXPLAIN (ANALYZE true) DELETE FROM t"),
        ("SELECT 1 FROM t", "SELECT 1 FROM t FOR UPDATE"),
    ],
)
def test_value_dependent_statements_are_never_shared_by_shape(allowed: str, refused: str) -> None:
    assert classify(allowed).read_only_refusal is None
    assert classify(refused).read_only_refusal is not None
    assert classify(allowed).read_only_refusal is None
