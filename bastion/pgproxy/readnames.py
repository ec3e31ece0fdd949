"""Each target's names for the read grant's guard (columns, the database's own functions,
operators and casts), read when a session opens and shared for a while by the next ones."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bastion.pgproxy.upstream import Upstream, read_guard_catalog
from bastion.sqlparse.names import GuardCatalog

NAMES_TTL = 60.0  # seconds a snapshot serves new sessions before it is read again


@dataclass
class ReadNames:
    """Snapshots by (target, upstream role): the role decides what the session can name."""

    entries: dict[tuple[str, str], tuple[float, GuardCatalog]] = field(default_factory=dict)

    async def get(self, target: str, login: str, up: Upstream) -> GuardCatalog:
        """The snapshot for a session logged in as `login` on `up` (before it relays)."""
        key = (target, login)
        found = self.entries.get(key)
        now = time.monotonic()
        if found is not None and now - found[0] <= NAMES_TTL:
            return found[1]
        catalog = await read_guard_catalog(up)
        self.entries[key] = (now, catalog)
        return catalog

    def forgetter(self, target: str, login: str, catalog: GuardCatalog) -> Callable[[], None]:
        """What a session calls when a statement named what the snapshot lacks: the next
        session reads the names again (unless that happened already)."""

        def forget() -> None:
            found = self.entries.get((target, login))
            if found is not None and found[1] is catalog:
                del self.entries[(target, login)]

        return forget
