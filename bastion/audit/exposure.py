"""Who else may connect to a PostgreSQL store's database: each such role can stop every node.

The store serialises its writes with advisory lock keys (bastion/audit/dialect.py) and tells
the nodes of decisions through NOTIFY. Any role that may connect to the database can hold
those keys at session level (every node's writes then wait and fail, and past the grace
every node ends its sessions), or fill the NOTIFY queue (a full queue makes the commit of
every decision fail: no revocation can be recorded). PostgreSQL grants CONNECT to PUBLIC
on a new database, so on a shared cluster every login role may. The server says so at start.
"""

from __future__ import annotations

from bastion.audit.base import StoreBase

NAMED = 10  # roles named at most; the count says how many there are

OTHER_ROLES = (
    "SELECT r.rolname AS name FROM pg_roles r WHERE r.rolcanlogin AND NOT r.rolsuper"
    " AND r.rolname <> current_user AND NOT pg_has_role(current_user, r.oid, 'MEMBER')"
    " AND has_database_privilege(r.oid, current_database(), 'CONNECT') ORDER BY r.rolname"
)


class ExposureQueries(StoreBase):
    def roles_that_may_connect(self) -> list[str]:
        """The login roles, neither superusers nor the store's own, that may connect to the
        store's database (none on SQLite)."""
        if self.location is None:
            return []
        return [str(row["name"]) for row in self._rows(OTHER_ROLES)]
