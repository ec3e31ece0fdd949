"""`bastion target harden` on a private PostgreSQL with the shop schema: the roles it makes are
enforced by PostgreSQL itself (column privileges, no TEMP, read-only, a pinned search_path)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from bastion.audit import Store
from bastion.clock import SystemClock
from bastion.errors import Exit
from bastion.identity.sealing import SecretBox
from tests import test_cli
from tests.realpg import PgCluster, PgDatabase
from tests.test_cli import Bastion, assert_error

pytestmark = pytest.mark.both_stores  # the store on SQLite and on PostgreSQL

pristine = test_cli.pristine
bst = test_cli.bst


def add_shop(bst: Bastion, shop: PgDatabase) -> None:
    """The shop as a target; its free-text order notes are sensitive by rule."""
    with bst.config.open("a", encoding="utf-8") as config:
        config.write('\n[targets.shop.masking]\nsensitive = ["public.orders.note"]\n')
    bst.json("target", "add-postgres", "shop", "--host", shop.host, "--port", str(shop.port),
             "--database", shop.database, "--user", shop.user, "--password-stdin",
             input=shop.password + "\n")  # fmt: skip


def harden(bst: Bastion, cluster: PgCluster, *extra: str) -> Any:
    admin = cluster.superuser_database()
    return bst.json("target", "harden", "shop", "--admin-user", admin.user, "--password-stdin",
                    *extra, input=admin.password + "\n")  # fmt: skip


def role_login(bst: Bastion, shop: PgDatabase, purpose: str) -> psycopg.Connection[Any]:
    store = Store.open(bst.store_at, SystemClock())
    login, sealed = store.target_role("shop", purpose)
    store.close()
    box = SecretBox.load(bst.home / "secrets.key")
    password = box.open(sealed, context=f"target:shop:{purpose}").decode()
    return psycopg.connect(host=shop.host, port=shop.port, dbname=shop.database, user=login,
                           password=password, autocommit=True)  # fmt: skip


def test_dry_run_prints_the_sql_and_changes_nothing(
    bst: Bastion, shop: PgDatabase, pg_cluster: PgCluster
) -> None:
    add_shop(bst, shop)
    out = harden(bst, pg_cluster, "--dry-run")
    text = "\n".join(out["statements"])
    assert 'GRANT SELECT ("id", "name", "created_at") ON "public"."customers" TO' in text
    assert "REVOKE TEMPORARY ON DATABASE" in text and "<generated" in text
    assert pg_cluster.sql("SELECT 1 FROM pg_roles WHERE rolname = 'bastion_shop_masked'") == []


def test_the_roles_are_enforced_by_postgresql(
    bst: Bastion, shop: PgDatabase, pg_cluster: PgCluster
) -> None:
    add_shop(bst, shop)
    out = harden(bst, pg_cluster)
    assert out["masked_role"] == "bastion_shop_masked" and out["withheld_columns"] > 5
    with role_login(bst, shop, "masked") as masked:
        assert masked.execute("SELECT id, name FROM customers ORDER BY id").fetchall() == [
            (4711, "Jane Doe"), (4712, "John Roe")]  # fmt: skip
        for sql in ("SELECT email FROM customers", "SELECT * FROM customers",
                    "SELECT c FROM customers c", "SELECT id FROM customers WHERE ssn LIKE '1%'",
                    "SELECT note FROM orders", "SELECT card_number FROM payments"):  # fmt: skip
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                masked.execute(sql)
        assert masked.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        # Read-only is only a default a session may change (the door refuses that SET); TEMP
        # is a privilege, and it is gone.
        masked.execute("SET default_transaction_read_only = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            masked.execute("CREATE TEMP TABLE t (x int)")
        assert masked.execute("SHOW search_path").fetchone() == ("public",)
    with role_login(bst, shop, "unmasked") as unmasked:
        assert unmasked.execute("SELECT email FROM customers WHERE id = 4711").fetchone() == (
            "jane.doe@example.com",)  # fmt: skip
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            unmasked.execute("DELETE FROM payments")
    owner = psycopg.connect(shop.dsn, autocommit=True)
    owner.execute("CREATE TEMP TABLE still_mine (x int)")  # the service role keeps TEMP
    owner.close()
    assert "target.hardened" in bst.kinds()
    shown = bst.run("masking", "show", "shop").stdout.rstrip().splitlines()[-1]
    assert shown == ("the door reads shop as bastion_shop_masked, which PostgreSQL itself stops"
                     " from reading sensitive columns")  # fmt: skip
    assert_error(bst.run("target", "harden", "shop", "--admin-user", "postgres",
                         "--password-stdin", input=pg_cluster.superuser_password + "\n"),
                 Exit.CONFLICT, "exists already")  # fmt: skip


def test_a_hardened_role_that_may_read_every_setting_is_called_out(
    bst: Bastion, shop: PgDatabase, pg_cluster: PgCluster
) -> None:
    """Masked sessions may SHOW settings and read pg_settings: PostgreSQL hides the ones that
    hold connection strings and paths unless the role may read them all, so say so."""
    add_shop(bst, shop)
    harden(bst, pg_cluster)
    # Hardening makes the role NOINHERIT; an admin who later changes that and grants the
    # predefined role gives it every setting.
    pg_cluster.sql(
        "ALTER ROLE bastion_shop_masked INHERIT; GRANT pg_read_all_settings TO bastion_shop_masked"
    )
    shown = bst.run("masking", "show", "shop").stdout.rstrip().splitlines()[-1]
    assert "which PostgreSQL does not hold back: it can read every server setting" in shown
