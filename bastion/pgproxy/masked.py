"""Opening a masked database session: the role the door logs in as, the target's catalog
snapshot, and the Guard that checks every statement and reply."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from bastion.audit import UnmaskGrant
from bastion.audit.records import Target
from bastion.config import Config
from bastion.core import Core
from bastion.errors import NotFound
from bastion.masking.scrub import startup_refusal
from bastion.masking.session import Masking
from bastion.masking.values import week_of
from bastion.pgproxy.client import ClientRefused
from bastion.pgproxy.guard import Guard
from bastion.pgproxy.upstream import Upstream, read_catalog

CATALOG_TTL = 60.0  # seconds a catalog snapshot serves new sessions before it is read again
SEARCH_PATH = ("public",)  # what the analysis resolves unqualified names against, pinned


def check_startup(params: dict[str, str]) -> None:
    """Refuse start-up parameters that would slip past the statement checks (options, role)."""
    refusal = startup_refusal(params)
    if refusal is not None:
        raise ClientRefused("42501", f"refused by the bastion: {refusal}")


async def login_for(core: Core, target: Target, grants: list[UnmaskGrant]) -> tuple[str, str]:
    """The role and password to log in upstream as: the hardened masked role (the unmasked one
    while an unmask grant is live), or the target's service role when it was never hardened."""
    purpose = "unmasked" if grants else "masked"
    try:
        return await core.target_role(target.name, purpose)
    except NotFound:
        return target.login, (await core.target_secret(target.name)).decode()


@dataclass
class Maskings:
    """Each target's masking, shared by its sessions so the plan cache stays warm; read again
    from the database after CATALOG_TTL, and each week (keyed hashes change weekly)."""

    entries: dict[tuple[str, str], tuple[float, str, Masking]] = field(default_factory=dict)

    async def guard(self, core: Core, target: Target, login: str, up: Upstream,
                    config: Config | None = None) -> Guard:  # fmt: skip
        """A Guard for a session logged in as `login` on `up` (before it relays anything),
        under `config` (the one the session started with; the core's by default)."""
        config = config or core.config
        policy = config.target_policy(target.name).masking
        week = week_of(core.clock.now())
        found = self.entries.get((target.name, login))
        now = time.monotonic()
        stale = found is None or now - found[0] > CATALOG_TTL or found[1] != week
        if found is None or stale or found[2].policy != policy:  # a reload changed the rules
            catalog = await read_catalog(up)
            key = core.box.derive(f"masking:{target.name}")
            masking = Masking(catalog, policy, key, week, SEARCH_PATH)
            self.entries[(target.name, login)] = (now, week, masking)
        else:
            masking = found[2]
        entry = (target.name, login)
        return Guard(masking, policy.subject_keys, lambda: self.forget(entry, masking),
                     max_prepared=config.postgres.max_prepared)  # fmt: skip

    def forget(self, key: tuple[str, str], masking: Masking) -> None:
        """Read the catalog again for the next session (unless that happened already)."""
        found = self.entries.get(key)
        if found is not None and found[2] is masking:
            del self.entries[key]
