"""The backup-and-restore drill on a store on PostgreSQL, as real processes: `bastion store
backup` drives pg_dump, `bastion store restore` drives pg_restore into the store's schema with
the replaced schema kept aside, and `audit verify` passes after, showing the loss."""

from __future__ import annotations

import json
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from psycopg import sql as pgsql

from bastion.audit import ChainKey, Store
from bastion.audit.base import migrations
from bastion.audit.cluster import node_lease
from bastion.clock import SystemClock, iso
from bastion.config import load_config
from bastion.errors import Exit
from bastion.identity.sealing import SecretBox
from bastion.reports.facts import EVENT_KINDS, Facts
from bastion.reports.findings_access import restores
from bastion.reports.week import parse_week
from tests.realssh import free_port
from tests.storeat import StoreTemplate
from tests.test_cli import (
    DEADLINE,
    Bastion,
    assert_error,
    assert_ok,
    child_env,
    close_pipes,
    configure_anchors,
    mode_of,
    serve_once,
    wait_for_health,
)
from tests.test_cli_pgstore import pg_bastion
from tests.test_cli_requests import People

__all__ = ["pg_bastion"]


def names(bst: Bastion) -> dict[str, str]:
    return {user["name"]: user["state"] for user in bst.json("user", "list")}


def schemas(template: StoreTemplate, database: str) -> set[str]:
    rows = template.cluster.sql("SELECT nspname FROM pg_namespace", database)
    return {str(r[0]) for r in rows or []}


def restore(people: People, backup: Path, reason: str) -> subprocess.CompletedProcess[str]:
    """Restored by bob, with a code of the current step (the backup knows no step of his
    spent: each restore starts from it again)."""
    people.used.pop("bob", None)
    return people.bst.run("store", "restore", str(backup), "--as", "bob", "--reason", reason,
                          "--json", input=people.code("bob"))  # fmt: skip


def store_restored_findings(bst: Bastion) -> list[str]:
    """The weekly review's store_restored findings for this week, from the store's events
    as the review reads them (the rest of the review on PostgreSQL is another part's)."""
    config = load_config(bst.config)
    where = config.store.where(config.path, config.paths.store)
    box = SecretBox.load(bst.home / "secrets.key", environ={})
    store = Store.open(where, SystemClock(), ChainKey.of(box))
    try:
        now = datetime.now(UTC)
        year, number, _ = now.isocalendar()
        week = parse_week(f"{year}-W{number:02d}", "UTC")
        events = store.week_events(iso(week.start), iso(week.end), EVENT_KINDS)
    finally:
        store.close()
    facts = Facts(week=week, now=now, sessions=[], commands=[], statements=[],
                  routine_writes=[], statement_counts=[], per_person_statements=[],
                  masking_notes=[], file_ops=[], events=events, event_counts={}, grants=[],
                  requests=[], unmasks=[])  # fmt: skip
    return [f.title for f in restores(facts, config) if f.rule == "store_restored"]


def test_the_drill_on_postgresql_back_up_lose_the_store_restore_verify(
    pg_bastion: Bastion, store_template: StoreTemplate, tmp_path: Path
) -> None:
    bst = pg_bastion
    database = urlsplit(load_config(bst.config).store.url).path.lstrip("/")
    bst.json("store", "create")
    other_mount = tmp_path / "other-mount"
    other_mount.mkdir()
    configure_anchors(bst, f"file:{other_mount / 'anchors.log'}")
    people = People(bst)
    bst.add_user("erin", "--no-qr")
    serve_once(bst)

    backup = tmp_path / "nightly.dump"
    made = bst.json("store", "backup", "--to", str(backup))
    assert mode_of(backup) == 0o600 and made["head_seq"] == bst.events()[-1]["seq"]
    kept = made["head_seq"]
    assert_error(bst.run("store", "backup", "--to", str(backup)), Exit.STORE, "exists already")
    assert_ok(bst.run("user", "disable", "erin", "--reason", "left the company"))
    serve_once(bst)  # anchored: the anchors now name events the backup lacks
    last = bst.events()[-1]["seq"]

    # While a node serves, the restore is refused and changes nothing.
    port = free_port()
    bst.set_web_port(port)
    proc = subprocess.Popen(bst.argv("serve"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=bst.cwd, env=child_env())  # fmt: skip
    try:
        wait_for_health(proc, port, bst.home / "tls" / "bastion-ca.pem")
        busy = restore(people, backup, "x")
        assert_error(busy, Exit.CONFLICT, "stop every `bastion serve`")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=DEADLINE)
        close_pipes(proc)
    assert names(bst)["erin"] == "disabled"
    last = bst.events()[-1]["seq"]

    # 1. Restored over the store it replaces: the offboarding it undoes is named.
    restored = json.loads(assert_ok(restore(people, backup, "bad migration")).stdout)
    assert restored["kept_seq"] == kept and restored["lost_seq"] == last
    assert [(u["kind"], u["subject"]) for u in restored["undone"]] == [("user.disabled", "erin")]
    aside = restored["moved_aside"].removeprefix("schema ")
    assert aside.startswith("public_before_restore_") and aside in schemas(store_template, database)
    assert names(bst)["erin"] == "active"  # back, as the restore says: redo it
    verified = assert_ok(bst.run("audit", "verify"))
    assert "audit chain intact" in verified.stdout
    assert f"events {kept + 1} to {last} were lost" in verified.stdout
    assert_ok(bst.run("user", "disable", "erin", "--reason", "left the company (redone)"))
    serve_once(bst)
    assert_ok(bst.run("audit", "verify"))

    # 2. The store lost for good (its schema dropped), restored from the same backup.
    store_template.cluster.sql("DROP SCHEMA public CASCADE", database)
    second = json.loads(assert_ok(restore(people, backup, "the disk died")).stdout)
    assert second["kept_seq"] == kept and second["undone"] == []
    assert "the store replaced" not in {w["where"] for w in second["witnesses"]}
    verified = assert_ok(bst.run("audit", "verify"))
    assert "RESTORED: the store was restored" in verified.stdout
    assert f"events {kept + 1} to {second['lost_seq']} were lost" in verified.stdout
    # Life goes on, and verifies.
    bst.add_user("frank", "--no-qr")
    serve_once(bst)
    assert_ok(bst.run("audit", "verify"))
    found = store_restored_findings(bst)
    assert len(found) == 1 and "bob restored the store from nightly.dump" in found[0], found


def test_a_restore_that_fails_on_postgresql_puts_the_store_back(
    pg_bastion: Bastion, store_template: StoreTemplate, tmp_path: Path
) -> None:
    """A wrong code: the restored schema is dropped and the replaced one is the store again;
    a schema left by a restore that crashed half-way stops every command, in one line."""
    bst = pg_bastion
    database = urlsplit(load_config(bst.config).store.url).path.lstrip("/")
    bst.json("store", "create")
    configure_anchors(bst, f"file:{tmp_path / 'anchors.log'}")
    people = People(bst)
    backup = tmp_path / "b.dump"
    bst.json("store", "backup", "--to", str(backup))
    bst.add_user("erin", "--no-qr")
    before = bst.events()
    refused = bst.run("store", "restore", str(backup), "--as", "bob", "--reason", "x",
                      input="000000\n")  # fmt: skip
    assert_error(refused, Exit.DENIED, "code")
    assert bst.events() == before and "erin" in names(bst)
    assert not {s for s in schemas(store_template, database) if s.startswith("public_")}

    # An archive holding more than the store's schema (here a function elsewhere, which would
    # run with the store's role) is refused whole, and the store is put back.
    cluster = store_template.cluster
    cluster.sql(pgsql.SQL("CREATE SCHEMA evil AUTHORIZATION {}").format(
        pgsql.Identifier(store_template.role)), database)  # fmt: skip
    cluster.sql("CREATE FUNCTION evil.f() RETURNS int LANGUAGE sql AS 'SELECT 1'", database)
    hostile = tmp_path / "hostile.dump"
    url = load_config(bst.config).store.url
    subprocess.run(["/usr/lib/postgresql/15/bin/pg_dump", "-Fc", "-n", "public", "-n", "evil",
                    f"--file={hostile}", f"--dbname={url}"], check=True,
                   env={**child_env(), "PGPASSWORD": store_template.password})  # fmt: skip
    refused = bst.run("store", "restore", str(hostile), "--as", "bob", "--reason", "x",
                      input=people.code("bob"))  # fmt: skip
    assert_error(refused, Exit.USAGE, "not a dump of the store's schema public alone")
    assert bst.events() == before
    # Rows aimed at another schema (a table of the same name there): refused whole too.
    cluster.sql("DROP FUNCTION evil.f(); CREATE TABLE evil.users AS SELECT * FROM public.users",
                database)  # fmt: skip
    cluster.sql(pgsql.SQL("ALTER TABLE evil.users OWNER TO {}").format(
        pgsql.Identifier(store_template.role)), database)  # fmt: skip
    hostile.unlink()
    subprocess.run(["/usr/lib/postgresql/15/bin/pg_dump", "-Fc", "-n", "public", "-n", "evil",
                    f"--file={hostile}", f"--dbname={url}"], check=True,
                   env={**child_env(), "PGPASSWORD": store_template.password})  # fmt: skip
    listed = subprocess.run(["/usr/lib/postgresql/15/bin/pg_restore", "--list", str(hostile)],
                            check=True, capture_output=True, text=True).stdout  # fmt: skip
    assert "TABLE DATA evil users" in listed and "FUNCTION evil" not in listed
    refused = bst.run("store", "restore", str(hostile), "--as", "bob", "--reason", "x",
                      input=people.code("bob"))  # fmt: skip
    assert_error(refused, Exit.USAGE, "not a dump of the store's schema public alone")
    assert bst.events() == before
    assert not {s for s in schemas(store_template, database) if s.startswith("public_")}

    # A node killed without stopping holds no connection, but its presence lease is live.
    config = load_config(bst.config)
    box = SecretBox.load(bst.home / "secrets.key", environ={})

    def as_node_b(lease: bool) -> None:
        store = Store.open(config.store.location(config.path), SystemClock(), ChainKey.of(box))
        try:
            if lease:
                store.take_lease(node_lease("node-b"), "node-b", timedelta(minutes=5), quiet=True)
            else:
                store.release_lease(node_lease("node-b"), "node-b")
        finally:
            store.close()

    as_node_b(lease=True)
    assert_error(bst.run("store", "restore", str(backup), "--as", "bob", "--reason", "x",
                         input=people.code("bob")), Exit.CONFLICT,
                 "node node-b holds its presence")  # fmt: skip
    as_node_b(lease=False)
    assert bst.events() == before

    store_template.cluster.sql(
        pgsql.SQL("CREATE SCHEMA {}").format(pgsql.Identifier("public_restoring_20261207t1200")),
        database,
    )  # as a restore killed between its steps leaves it
    for argv in (("user", "list"), ("serve",)):
        assert_error(bst.run(*argv), Exit.STORE, "stopped half-way", "rename")
    assert_error(bst.run("store", "restore", str(backup), "--as", "bob", "--reason", "x",
                         input=people.code("bob")), Exit.CONFLICT, "stopped half-way")  # fmt: skip


# The last migration undone by hand, as a store made before it was shipped has it (a test
# that fails here when a migration is added: write how to undo the new one).
UNDO_LAST_MIGRATION = {
    23: "DROP TRIGGER audit_events_decided ON audit_events;"
    " DROP FUNCTION audit_events_decided(); DROP FUNCTION bastion_decision_kinds();"
    " DELETE FROM schema_migrations WHERE number = 23",
    24: "DROP TABLE chain_lock; DELETE FROM schema_migrations WHERE number = 24",
    25: "ALTER TABLE sessions DROP COLUMN recording_progress_bytes,"
    " DROP COLUMN recording_progress_sha256; DELETE FROM schema_migrations WHERE number = 25",
    26: "DROP TABLE export_cursors; DELETE FROM schema_migrations WHERE number = 26",
    27: "DROP TRIGGER audit_events_no_delete ON audit_events; CREATE TRIGGER"
    " audit_events_no_delete BEFORE DELETE ON audit_events FOR EACH ROW EXECUTE FUNCTION"
    " audit_events_append_only(); DROP FUNCTION audit_events_delete_checkpointed();"
    " DROP TABLE legal_holds; DROP TABLE chain_checkpoints; ALTER TABLE sessions DROP COLUMN"
    " recording_pruned_at; DELETE FROM schema_migrations WHERE number = 27",
    28: "DROP TRIGGER chain_checkpoints_no_update ON chain_checkpoints; DROP TRIGGER"
    " chain_checkpoints_no_delete ON chain_checkpoints; DROP TRIGGER"
    " chain_checkpoints_no_truncate ON chain_checkpoints; DROP FUNCTION"
    " chain_checkpoints_append_only(); ALTER FUNCTION audit_events_append_only() RESET"
    " search_path; ALTER FUNCTION audit_events_delete_checkpointed() RESET search_path;"
    " ALTER FUNCTION audit_events_decided() SET search_path = public;"
    " DELETE FROM schema_migrations WHERE number = 28",
    29: "ALTER TABLE export_cursors DROP COLUMN mac, DROP COLUMN selection;"
    " DELETE FROM schema_migrations"
    " WHERE number = 29",
}


def test_a_backup_made_before_the_last_migration_is_restored_and_brought_up_to_date(
    pg_bastion: Bastion, store_template: StoreTemplate, tmp_path: Path
) -> None:
    """The archive's rows go into the tables of the migrations it had, then the later ones
    run: an older backup comes back up to date (its functions are older: nothing of them
    runs, so nothing of them is compared)."""
    bst = pg_bastion
    url = load_config(bst.config).store.url
    database = urlsplit(url).path.lstrip("/")
    cluster = store_template.cluster
    bst.json("store", "create")
    configure_anchors(bst, f"file:{tmp_path / 'anchors.log'}")
    people = People(bst)
    bst.add_user("erin", "--no-qr")
    serve_once(bst)
    latest = max(number for number, _, _ in migrations("postgresql"))
    assert latest in UNDO_LAST_MIGRATION, "write how to undo the newest migration here"
    cluster.sql(f"SET search_path = public; {UNDO_LAST_MIGRATION[latest]}", database)
    old = tmp_path / "older.dump"  # as `bastion store backup` of the older bastion made it
    subprocess.run(["/usr/lib/postgresql/15/bin/pg_dump", "-Fc", "-n", "public", "--no-owner",
                    "--no-privileges", f"--file={old}", f"--dbname={url}"], check=True,
                   env={**child_env(), "PGPASSWORD": store_template.password})  # fmt: skip
    kept = bst.events()[-1]["seq"]
    bst.add_user("frank", "--no-qr")  # the live store is migrated again on the way
    serve_once(bst)  # anchored: the anchors name events the older backup lacks
    lost = bst.events()[-1]["seq"]
    assert cluster.sql("SELECT max(number) FROM public.schema_migrations", database) == [(latest,)]

    restored = json.loads(assert_ok(restore(people, old, "older backup")).stdout)
    assert restored["kept_seq"] == kept and restored["lost_seq"] == lost
    assert set(names(bst)) >= {"bob", "erin"} and "frank" not in names(bst)
    versions = cluster.sql("SELECT number FROM public.schema_migrations ORDER BY 1", database)
    assert [r[0] for r in versions or []] == sorted(n for n, _, _ in migrations("postgresql"))
    decided = ("SELECT count(*) FROM pg_trigger WHERE tgname = 'audit_events_decided'"
               " AND tgrelid = 'public.audit_events'::regclass")  # fmt: skip
    assert cluster.sql(decided, database) == [(1,)]
    verified = assert_ok(bst.run("audit", "verify")).stdout
    assert "audit chain intact" in verified and f"events {kept + 1} to {lost} were lost" in verified
    bst.add_user("grace", "--no-qr")  # ids continue after the restored ones
    assert_ok(bst.run("audit", "verify"))
