"""Red team, migration 0028: the store's owner role (the store's password, not a superuser),
or whoever has a SQLite store's file, can switch the append-only guards off; `bastion doctor`
must say so, one line naming each."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest

from bastion.audit import guards
from bastion.audit.location import PgLocation
from tests import test_cli
from tests.test_cli import Bastion
from tests.test_doctor import lines_of

bst = test_cli.bst
pristine = test_cli.pristine

REPLACED = (
    "CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql"
    " AS $$ BEGIN RETURN OLD; END; $$"
)
ATTACKS = {
    "disable": ("ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update",
                "trigger audit_events_no_update on audit_events is disabled (D)"),
    "replica": ("ALTER TABLE chain_checkpoints ENABLE REPLICA TRIGGER chain_checkpoints_no_delete",
                "trigger chain_checkpoints_no_delete on chain_checkpoints is disabled (R)"),
    "drop": ("DROP TRIGGER audit_events_no_truncate ON audit_events",
             "trigger audit_events_no_truncate on audit_events is missing"),
    "replace": (REPLACED, "function audit_events_append_only is not the shipped one"),
    "unpin": ("ALTER FUNCTION audit_events_delete_checkpointed() RESET search_path",
              "function audit_events_delete_checkpointed does not pin its search_path"),
    "shadow": ("CREATE FUNCTION bastion_decision_kinds(x int) RETURNS text[] LANGUAGE sql"
               " AS $$ SELECT ARRAY[]::text[] $$",
               "function bastion_decision_kinds is not the shipped one"),
    "operator": ("CREATE FUNCTION lt(a bigint, b bigint) RETURNS boolean LANGUAGE sql"
                 " AS $$ SELECT true $$ ;; CREATE OPERATOR <= (LEFTARG = bigint,"
                 " RIGHTARG = bigint, FUNCTION = lt)", "operator <= was not made by a migration"),
}  # fmt: skip


def owner_runs(b: Bastion, sql: str) -> None:
    """As the bastion's own role, with the store's password (what an admin with the files has)."""
    where = b.store_at
    assert isinstance(where, PgLocation)
    conn = where.connect("red-team")
    try:
        for statement in sql.split(" ;; "):
            conn.execute(statement)
    finally:
        conn.close()


@pytest.mark.both_stores
def test_an_untouched_store_has_its_guards(bst: Bastion, door_store: str) -> None:
    found = lines_of(bst.run("doctor"))
    assert found["store guards"][0] == "ok", found


@pytest.mark.parametrize(("sql", "said"), [
    ("DROP TRIGGER audit_events_no_update", "trigger audit_events_no_update is missing"),
    ("DROP TRIGGER chain_checkpoints_no_delete; CREATE TRIGGER chain_checkpoints_no_delete"
     " BEFORE DELETE ON chain_checkpoints WHEN 0 BEGIN SELECT 1; END",
     "trigger chain_checkpoints_no_delete is not the shipped one"),
])  # fmt: skip
def test_a_sqlite_store_whose_trigger_was_dropped_or_replaced_fails(
    bst: Bastion, sql: str, said: str
) -> None:
    with closing(sqlite3.connect(bst.db)) as conn:
        conn.executescript(sql)
    result = bst.run("doctor")
    status, text = lines_of(result)["store guards"]
    assert status == "FAIL" and said in text, result.stdout


@pytest.mark.parametrize("attack", sorted(ATTACKS))
@pytest.mark.parametrize("door_store", ["postgresql"], indirect=True)
def test_the_owner_switching_a_guard_off_is_a_doctor_failure(
    bst: Bastion, door_store: str, attack: str
) -> None:
    sql, said = ATTACKS[attack]
    owner_runs(bst, sql)
    result = bst.run("doctor")
    status, text = lines_of(result)["store guards"]
    assert status == "FAIL" and said in text, result.stdout
    assert result.returncode != 0


def test_the_shipped_guards_are_read_with_postgresqls_grammar_whatever_the_spelling() -> None:
    # The first reading used regular expressions: a function whose body is a quoted string, a
    # schema-qualified or quoted name, or a DROP ... IF EXISTS would have been misread, and
    # doctor would then have called a shipped guard foreign, or missed a dropped one.
    scripts = [
        'CREATE FUNCTION s."Guard"() RETURNS trigger LANGUAGE plpgsql'
        " AS 'BEGIN RAISE EXCEPTION ''no''; END;';\n"
        'CREATE TRIGGER t1 BEFORE UPDATE ON s.events FOR EACH ROW EXECUTE FUNCTION s."Guard"();'
        '\nCREATE TRIGGER t2 BEFORE DELETE ON events FOR EACH ROW EXECUTE PROCEDURE "Guard"();',
        "DROP TRIGGER IF EXISTS t1 ON s.events; -- a comment naming CREATE TRIGGER t9 ON x\n"
        "DO $$ BEGIN EXECUTE 'CREATE TRIGGER t8 BEFORE DELETE ON x'; END $$;",
    ]
    found = guards.read_guards(scripts)
    assert found.triggers == {("events", "t2"): "Guard"}
    assert found.bodies == {"Guard": "BEGIN RAISE EXCEPTION 'no'; END;"}
    assert found.trigger_functions() == {"Guard"}


def test_every_function_a_shipped_trigger_runs_must_pin_its_search_path() -> None:
    # The functions that must be pinned come from the migrations' triggers, not a list by hand
    # that a new trigger function could be missing from.
    shipped = guards.shipped()
    for function in shipped.trigger_functions():
        unpinned = [(function, shipped.bodies[function], None)]
        assert guards.problems("bastion", [], unpinned) == sorted(
            [f"function {function} does not pin its search_path"]
            + [f"trigger {name} on {table} is missing" for table, name in shipped.triggers]
        )
