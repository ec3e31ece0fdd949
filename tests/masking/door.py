"""A bastion in front of the shop database, masking on, and the unmask grants tests need."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from bastion.access.unmask import Unmasking
from tests.harness import Bastion
from tests.realpg import PgDatabase

PASSWORD = "correct horse battery"
POLICY = """
[targets.shop]
unmask_max = "4h"
[targets.shop.masking]
sensitive = ["public.orders.note"]
subject_keys = ["public.customers.id", "public.orders.customer_id"]
"""
REASON = "SUP-1234 customer asked why their card was charged twice"


def shop_bastion(home: Path, shop: PgDatabase, extra: str = "", policy: str = POLICY) -> Bastion:
    """alice (engineer) may read the shop; bob is an admin who can approve unmasking."""
    b = Bastion(home, policy + extra, postgres=True)
    b.add_user("alice", password=PASSWORD)
    b.add_user("bob", role="admin", password=PASSWORD)
    b.add_pg_target("shop", shop)
    b.grant("alice", "shop")
    return b


def plain(via: PgDatabase, port: int) -> PgDatabase:
    """The same login through the wiretap's port (the client must not use TLS)."""
    return via.replace(port=port)


def unmask(b: Bastion, columns: list[str], subject: str = "customers.id=4711",
           hours: float = 1) -> int:  # fmt: skip
    """An unmask grant for alice, asked by alice and approved by bob with consent confirmed."""
    rules = Unmasking(b.store, b.config, b.clock)
    made = rules.request(user="alice", target="shop", columns=columns, subject=subject,
                         reason=REASON, consent_ref="SUP-1234", requested_by="alice",
                         duration=timedelta(hours=hours))  # fmt: skip
    rules.approve(made.id, "bob", consent_confirmed=True)
    return made.id
