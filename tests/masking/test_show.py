"""`bastion masking show` against a private PostgreSQL with the shop schema, as a real process."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.errors import Exit
from tests import test_cli
from tests.realpg import PgDatabase
from tests.test_cli import Bastion, assert_error

pytestmark = pytest.mark.both_stores  # the store on SQLite and on PostgreSQL

pristine = test_cli.pristine
bst = test_cli.bst

RULES = """
[targets.shop.masking]
sensitive = ["public.orders.note"]
clean = ["public.newsletter_stats.email_count", "customers.name"]
styles = { "customers.email" = "hash" }
"""


def by_column(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{r['relation']}.{r['column']}": r for r in rows}


def test_every_column_with_its_verdict_and_rule(bst: Bastion, shop: PgDatabase) -> None:
    with bst.config.open("a", encoding="utf-8") as config:
        config.write(RULES)
    bst.json("target", "add-postgres", "shop", "--host", shop.host, "--port", str(shop.port),
             "--database", shop.database, "--user", shop.user, "--password-stdin",
             input=shop.password + "\n")  # fmt: skip
    found = by_column(bst.json("masking", "show", "shop"))
    expect = {
        "customers.id": (False, None), "customers.name": (False, None),
        "customers.email": (True, "hash"), "customers.phone": (True, "partial"),
        "customers.ssn": (True, "partial"), "customers.date_of_birth": (True, "null"),
        "customers.street": (True, "full"), "customers.client_ip": (True, "null"),
        "orders.note": (True, "full"), "orders_2025.note": (True, "full"),
        "orders.total_cents": (False, None), "payments.card_number": (True, "partial"),
        "payments.iban": (True, "partial"), "payments.amount_cents": (False, None),
        "newsletter_stats.email_count": (False, None), "customer_contacts.email": (True, "partial"),
    }  # fmt: skip
    assert {k: (found[k]["masked"], found[k]["style"]) for k in expect} == expect
    assert found["customers.email"]["rule"] == "name looks like email"
    assert (
        found["orders_2025.note"]["rule"] == "sensitive = 'public.orders.note' (on public.orders)"
    )
    assert found["newsletter_stats.email_count"]["rule"] == (
        "clean = 'public.newsletter_stats.email_count'")  # fmt: skip
    scans = {k: (found[k]["scanned"], found[k]["why"]) for k in
             ("customers.id", "customers.name", "orders.note", "payments.card_number",
              "customers.created_at")}  # fmt: skip
    assert scans == {
        "customers.id": (False, "int4 holds no free text"),
        "customers.name": (False, "declared clean (clean = 'customers.name')"),
        "orders.note": (False, "masked as a whole"),
        "payments.card_number": (False, "masked as a whole"),
        "customers.created_at": (False, "timestamptz holds no free text"),
    }
    assert found["payments.id"]["scanned"] is False
    assert found["customers.street"]["scanned"] is False
    assert found["customer_contacts.name"]["scanned"] is True  # the view's own column: no rule
    assert "may hold free text" in found["customer_contacts.name"]["why"]
    assert found["orders.note"]["kind"] == "partitioned table"
    assert found["customer_contacts.email"]["kind"] == "view"
    text = bst.run("masking", "show", "shop")
    assert text.returncode == 0 and "scanned for personal data in free text" in text.stdout
    # Not hardened: the service role owns the tables, and the output says what that allows.
    last = text.stdout.rstrip().splitlines()[-1]
    assert f"the door reads shop as {shop.user}, which PostgreSQL does not hold back" in last
    assert "sensitive column(s)" in last and "create temporary tables" in last
    assert last.endswith("run bastion target harden shop for the database's own protections")


def test_only_database_targets_and_reachable_ones(bst: Bastion, shop: PgDatabase) -> None:
    bst.json("target", "add-postgres", "gone", "--host", "127.0.0.1", "--port", "9",
             "--database", "x", "--user", "x", "--password-stdin", input="pw\n")  # fmt: skip
    assert_error(bst.run("masking", "show", "gone"), Exit.UNREACHABLE, "cannot log in to gone")
    assert_error(bst.run("masking", "show", "nope"), Exit.NOT_FOUND, "nope")
