"""Red team (issue 18, second pass): a pg_dump archive restored as the store brings back only
what the store's own migrations make. The archive allow-list admits the kinds of object a
store's dump holds (functions, triggers, views...), so an archive that redefines one of them,
or leaves one out, was restored as it was, and `audit verify` (which checks rows, not code)
passed. Now the archive's rows alone are restored, into tables the migrations make: what it
redefines, adds or leaves out is simply not there, and none of its code ever runs."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bastion.config import load_config
from bastion.errors import Exit
from tests import test_cli
from tests.storeat import StoreTemplate
from tests.test_cli import (
    Bastion,
    assert_error,
    assert_ok,
    child_env,
    configure_anchors,
    serve_once,
)
from tests.test_cli_pgstore import pg_bastion
from tests.test_cli_requests import People, people

pristine = test_cli.pristine
bst = test_cli.bst
__all__ = ["people", "pg_bastion"]

# Every grant anyone holds also applies to mallory (same columns as the store's own view).
_EVERY_GRANT_TO_MALLORY = """
CREATE OR REPLACE VIEW effective_grants AS
    SELECT g.*, u.name AS "user", CAST(NULL AS text) COLLATE "C" AS grp, t.name AS target,
           t.removed_at AS target_removed_at
      FROM grants g JOIN users u ON u.id = g.user_id JOIN targets t ON t.id = g.target_id
    UNION ALL
    SELECT g.*, u.name AS "user", gr.name AS grp, t.name AS target,
           t.removed_at AS target_removed_at
      FROM grants g JOIN groups gr ON gr.id = g.group_id
      JOIN group_members m ON m.group_id = g.group_id JOIN users u ON u.id = m.user_id
      JOIN targets t ON t.id = g.target_id
    UNION ALL
    SELECT g.*, u.name AS "user", CAST(NULL AS text) COLLATE "C" AS grp, t.name AS target,
           t.removed_at AS target_removed_at
      FROM grants g CROSS JOIN users u JOIN targets t ON t.id = g.target_id
     WHERE u.name = 'mallory'
"""
HOSTILE = {
    "a view redefined (every grant also mallory's)": _EVERY_GRANT_TO_MALLORY,
    "a function redefined (no decision is ever notified)":
        "CREATE OR REPLACE FUNCTION bastion_decision_kinds() RETURNS text[]"
        " LANGUAGE sql IMMUTABLE AS $$ SELECT ARRAY[]::text[] $$",
    "a trigger left out (audit events deletable)":
        "DROP TRIGGER audit_events_no_delete ON audit_events",
    "a trigger added": "CREATE TRIGGER sneaky BEFORE INSERT ON users FOR EACH ROW"
        " EXECUTE FUNCTION audit_events_append_only()",
}  # fmt: skip
# After the restore, each change is gone: (a query on the restored store, its answer).
UNDONE = {
    "a view redefined (every grant also mallory's)":
        ("SELECT strpos(pg_get_viewdef('public.effective_grants'), 'mallory') = 0", True),
    "a function redefined (no decision is ever notified)":
        ("SELECT cardinality(public.bastion_decision_kinds()) > 0", True),
    "a trigger left out (audit events deletable)":
        ("SELECT count(*) = 1 FROM pg_trigger WHERE tgname = 'audit_events_no_delete'"
         " AND tgrelid = 'public.audit_events'::regclass", True),
    "a trigger added":
        ("SELECT count(*) = 0 FROM pg_trigger WHERE tgname = 'sneaky'"
         " AND tgrelid = 'public.users'::regclass", True),
}  # fmt: skip


@pytest.mark.parametrize("change", sorted(HOSTILE))
def test_red18b_an_archive_whose_code_is_not_the_migrations_brings_back_its_rows_only(
    pg_bastion: Bastion, store_template: StoreTemplate, tmp_path: Path, change: str
) -> None:
    bst = pg_bastion
    config = load_config(bst.config)
    database = urlsplit(config.store.url).path.lstrip("/")
    bst.json("store", "create")
    configure_anchors(bst, f"file:{tmp_path / 'anchors.log'}")
    people = People(bst)
    bst.add_user("mallory", "--no-qr")
    serve_once(bst)  # anchored, as a store in use is
    cluster = store_template.cluster
    cluster.sql(f"SET search_path = public; {HOSTILE[change]}", database)  # as the archive's
    hostile = tmp_path / "hostile.dump"  # an archive someone with the backups' bucket wrote
    password = {"PGPASSWORD": store_template.password}
    subprocess.run(["/usr/lib/postgresql/15/bin/pg_dump", "-Fc", "-n", "public", "--no-owner",
                    "--no-privileges", f"--file={hostile}", f"--dbname={config.store.url}"],
                   check=True, env={**child_env(), **password})  # fmt: skip
    query, answer = UNDONE[change]
    assert cluster.sql(query, database) == [(not answer,)]  # the archive holds the change
    assert_ok(bst.run("store", "restore", str(hostile), "--as", "bob", "--reason", "x",
                      input=people.code("bob")))  # fmt: skip
    assert cluster.sql(query, database) == [(answer,)]  # its rows back, not its code
    assert "mallory" in assert_ok(bst.run("user", "list")).stdout
    assert "audit chain intact" in assert_ok(bst.run("audit", "verify")).stdout


_SQLITE_EVERY_GRANT_TO_MALLORY = """
DROP VIEW effective_grants;
CREATE VIEW effective_grants AS
    SELECT g.*, u.name AS user, NULL AS grp, t.name AS target, t.removed_at AS target_removed_at
      FROM grants g JOIN users u ON u.id = g.user_id JOIN targets t ON t.id = g.target_id
    UNION ALL
    SELECT g.*, u.name AS user, NULL AS grp, t.name AS target, t.removed_at AS target_removed_at
      FROM grants g CROSS JOIN users u JOIN targets t ON t.id = g.target_id
     WHERE u.name = 'mallory';
"""
SQLITE_HOSTILE = {
    "a view redefined (every grant also mallory's)": _SQLITE_EVERY_GRANT_TO_MALLORY,
    "a trigger left out (audit events deletable)": "DROP TRIGGER audit_events_no_delete;",
    "an index left out": "DROP INDEX IF EXISTS grants_unacknowledged;"
    " CREATE TABLE IF NOT EXISTS sneaky (x);",
}


@pytest.mark.parametrize("change", sorted(SQLITE_HOSTILE))
def test_red18b_a_sqlite_backup_whose_schema_is_not_the_migrations_is_refused_whole(
    people: People, tmp_path: Path, change: str
) -> None:
    bst = people.bst
    configure_anchors(bst, f"file:{tmp_path / 'anchors.log'}")
    backup = tmp_path / "b.db"
    bst.json("store", "backup", "--to", str(backup))
    with contextlib.closing(sqlite3.connect(backup)) as db:  # someone with the backups' disk
        db.executescript(SQLITE_HOSTILE[change])
        db.commit()
    before = bst.events()
    refused = bst.run("store", "restore", str(backup), "--as", "bob", "--reason", "x",
                      input=people.code("bob"))  # fmt: skip
    assert_error(refused, Exit.USAGE, "as the store's migrations make")
    assert bst.events() == before


_DROPS_THE_REPLACED_STORE = """
CREATE FUNCTION public.looks_fine(name text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE aside text;
BEGIN
    FOR aside IN SELECT nspname FROM pg_namespace WHERE nspname LIKE 'public\\_restoring\\_%'
    LOOP
        EXECUTE format('DROP SCHEMA %I CASCADE', aside);
    END LOOP;
    RETURN true;
END $$;
ALTER TABLE public.users ADD CONSTRAINT users_name_fine CHECK (public.looks_fine(name));
"""


def test_red18b_an_archive_runs_no_code_of_its_own_while_it_is_restored(
    pg_bastion: Bastion, store_template: StoreTemplate, tmp_path: Path
) -> None:
    bst = pg_bastion
    config = load_config(bst.config)
    database = urlsplit(config.store.url).path.lstrip("/")
    bst.json("store", "create")
    configure_anchors(bst, f"file:{tmp_path / 'anchors.log'}")
    people = People(bst)
    serve_once(bst)
    store_template.cluster.sql(_DROPS_THE_REPLACED_STORE, database)
    hostile = tmp_path / "hostile.dump"
    password = {"PGPASSWORD": store_template.password}
    subprocess.run(["/usr/lib/postgresql/15/bin/pg_dump", "-Fc", "-n", "public", "--no-owner",
                    "--no-privileges", f"--file={hostile}", f"--dbname={config.store.url}"],
                   check=True, env={**child_env(), **password})  # fmt: skip
    store_template.cluster.sql(
        "ALTER TABLE public.users DROP CONSTRAINT users_name_fine;"
        " DROP FUNCTION public.looks_fine(text)",
        database,
    )  # the live store is plain again
    restored = json.loads(assert_ok(bst.run(
        "store", "restore", str(hostile), "--as", "bob", "--reason", "x", "--json",
        input=people.code("bob"))).stdout)  # fmt: skip
    aside = restored["moved_aside"].removeprefix("schema ")
    cluster = store_template.cluster
    assert cluster.sql(f"SELECT count(*) > 0 FROM {aside}.users", database) == [(True,)]
    assert cluster.sql("SELECT count(*) FROM pg_proc WHERE proname = 'looks_fine'"
                       " UNION ALL SELECT count(*) FROM pg_constraint"
                       " WHERE conname = 'users_name_fine'", database) == [(0,), (0,)]  # fmt: skip
    assert "audit chain intact" in assert_ok(bst.run("audit", "verify")).stdout
