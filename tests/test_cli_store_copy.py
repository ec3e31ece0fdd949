"""`bastion store copy --to postgresql://...` as an operator runs it: a SQLite store with a
history moved to a real PostgreSQL 15, `audit verify` passing there, a login served from the
copy; and the copies that must be refused, leaving the target empty."""

from __future__ import annotations

import shutil
from pathlib import Path

from bastion import storelock
from bastion.audit.location import PgLocation
from bastion.errors import Exit
from tests import test_cli
from tests.realpg import PgCluster
from tests.test_cli import (
    REASON,
    Bastion,
    assert_error,
    assert_ok,
    assert_tampered,
    configure_anchors,
    run_bastion,
    serve_once,
    tamper,
)
from tests.test_cli_requests import People, people

pristine = test_cli.pristine
bst = test_cli.bst
__all__ = ["people"]


def copy_args(bst: Bastion, where: PgLocation) -> list[str]:
    assert where.password_file is not None
    secret = bst.home / "store.password"
    shutil.copy2(where.password_file, secret)
    return ["store", "copy", "--to", where.url, "--password-file", str(secret)]


def tables_in(cluster: PgCluster, where: PgLocation) -> list[str]:
    database = where.url.rsplit("/", 1)[1]
    with cluster.connect(database) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public'"
        ).fetchall()
    return [row[0] for row in rows]


def switch_to(bst: Bastion, where: PgLocation) -> None:
    """[store] pointed at the copy, as the summary tells the operator."""
    text = bst.config.read_text(encoding="utf-8")
    bst.config.write_text(text.replace(
        "[store]\n", f'[store]\nurl = "{where.url}"\npassword_file = "store.password"\n', 1
    ).replace('\nurl = ""\n', "\n").replace('\npassword_file = ""\n', "\n"))  # fmt: skip


def history(people: People) -> str:
    """A request approved with TOTP codes, a grant made and revoked; carol's code, used."""
    bst = people.bst
    used = people.code("carol")
    made = bst.json("request", "alice", "reports", "--for", "2h", "--reason", REASON, "--as",
                    "carol", input=used)  # fmt: skip
    bst.json("approve", str(made["id"]), "--as", "bob", "--for", "1h", input=people.code("bob"))
    granted = bst.json("grant", "alice", "reports", "--for", "1h", "--reason", REASON)
    assert_ok(bst.run("revoke", str(granted["id"])))
    return used


def test_a_store_with_history_is_copied_and_verifies_and_serves_a_login_there(
    people: People, pg_store_at: PgLocation, tmp_path: Path
) -> None:
    bst = people.bst
    anchors = tmp_path / "anchors.log"
    configure_anchors(bst, f"file:{anchors}")
    used = history(people)
    serve_once(bst)  # signs heads into the anchors file
    before = bst.events()
    out = bst.json(*copy_args(bst, pg_store_at))
    assert out["head_seq"] == before[-1]["seq"] and out["head_mac"] == before[-1]["row_hash"]
    assert out["tables"]["users"] == 4 and out["tables"]["audit_events"] == len(before)
    assert out["tables"]["grants"] >= 2 and out["tables"]["access_requests"] == 1
    assert bst.kinds()[-1] == "store.moved"  # the SQLite store records where it went
    # and a node left on the old config can't write a trail nobody reads
    assert_error(bst.run("revoke", "1"), Exit.STORE, "was copied to", "takes no more writes")
    assert bst.kinds()[-1] == "store.moved"

    switch_to(bst, pg_store_at)
    copied = bst.events()
    assert copied[: len(before)] == before  # same seqs, times, MACs
    assert copied[len(before)]["kind"] == "store.copied_from"
    assert_ok(bst.run("audit", "verify"))
    # a login served from the copy: a code spent on the old store is refused, a fresh one opens
    replayed = bst.run("request", "alice", "orders-prod", "--for", "1h", "--reason", REASON,
                       "--as", "carol", input=used)  # fmt: skip
    assert_error(replayed, Exit.DENIED, "code")
    made = bst.json("request", "alice", "reports", "--for", "1h", "--reason", REASON,
                    "--as", "carol", input=people.code("carol"))  # fmt: skip
    assert made["id"] == 2  # the identity continues after the copied ids
    assert_ok(bst.run("approve", str(made["id"]), "--as", "bob", input=people.code("bob")))
    assert_ok(bst.run("audit", "verify"))
    serve_once(bst)  # serve starts from the copy, anchors its head, and stops
    assert_ok(bst.run("audit", "verify"))


def test_a_tampered_source_is_refused_before_anything_is_copied(
    people: People, pg_store_at: PgLocation, pg_cluster: PgCluster
) -> None:
    bst = people.bst
    history(people)
    tamper(bst.db, "UPDATE audit_events SET actor = 'nobody' WHERE kind = 'grant.revoked'")
    result = bst.run(*copy_args(bst, pg_store_at))
    assert_tampered(result, "does not verify, nothing was copied")
    assert tables_in(pg_cluster, pg_store_at) == []


def test_a_value_that_does_not_fit_its_column_stops_the_copy_leaving_nothing(
    people: People, pg_store_at: PgLocation, pg_cluster: PgCluster
) -> None:
    """A row edited to hold text where the store keeps a number: the copy names table, row
    and column, and the target is left empty."""
    bst = people.bst
    history(people)
    tamper(bst.db, "UPDATE users SET failed_attempts = 'many' WHERE name = 'alice'")
    result = bst.run(*copy_args(bst, pg_store_at))
    assert_error(result, Exit.STORE, "users row id=", "failed_attempts", "left it empty")
    assert tables_in(pg_cluster, pg_store_at) == []


def test_a_target_that_is_not_empty_is_refused_in_one_line(
    people: People, pg_store_at: PgLocation, pg_cluster: PgCluster
) -> None:
    bst = people.bst
    database = pg_store_at.url.rsplit("/", 1)[1]
    pg_cluster.sql("CREATE TABLE public.other (x int)", database)
    message = assert_error(bst.run(*copy_args(bst, pg_store_at)), Exit.STORE, "not empty",
                           "'other'")  # fmt: skip
    assert "\n" not in message.strip() and "left it empty" not in message
    assert tables_in(pg_cluster, pg_store_at) == ["other"]


def test_the_copy_waits_for_no_server_it_refuses_while_one_serves(
    people: People, pg_store_at: PgLocation, pg_cluster: PgCluster
) -> None:
    bst = people.bst
    with storelock.serving(bst.db):
        assert_error(bst.run(*copy_args(bst, pg_store_at)), Exit.CONFLICT, "stop every")
    assert tables_in(pg_cluster, pg_store_at) == []


def test_a_password_in_the_url_is_refused(people: People, pg_store_at: PgLocation) -> None:
    url = pg_store_at.url.replace("@", ":secret@", 1)
    result = people.bst.run("store", "copy", "--to", url)
    assert_error(result, Exit.CONFIG, "password_file")
    assert "secret" not in result.stderr


def test_a_new_installation_on_postgresql_is_init_then_copy(
    tmp_path: Path, pg_store_at: PgLocation
) -> None:
    """The two steps the README gives: `bastion init`, then `bastion store copy` of its fresh
    store, then the [store] lines the copy prints."""
    assert_ok(run_bastion("init", str(tmp_path / "b"), cwd=tmp_path))
    fresh = Bastion(home=tmp_path / "b", cwd=tmp_path)
    made = fresh.run(*copy_args(fresh, pg_store_at))
    assert_ok(made)
    assert f'url = "{pg_store_at.url}"' in made.stdout
    assert 'password_file = "store.password"' in made.stdout
    switch_to(fresh, pg_store_at)
    fresh.add_user("alice", role="admin")
    assert fresh.kinds()[-2:] == ["store.copied_from", "user.added"]
    assert_ok(fresh.run("audit", "verify"))


def test_anchors_the_copy_cannot_read_are_no_pass(
    people: People, pg_store_at: PgLocation, pg_cluster: PgCluster
) -> None:
    """As `audit verify`: with only a remote sink, a deleted tail with a rewritten head file
    would go unseen, so the copy wants the sink's copy (--anchors) before it moves anything."""
    bst = people.bst
    configure_anchors(bst, "syslog:udp://127.0.0.1:9")
    result = bst.run(*copy_args(bst, pg_store_at))
    assert_tampered(result, "does not verify", "pass --anchors")
    assert tables_in(pg_cluster, pg_store_at) == []
