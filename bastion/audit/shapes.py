"""A SQLite store's shape and code (tables, indexes, views, triggers), to compare two stores."""

from __future__ import annotations

import re

from bastion.audit.sqlconn import Conn

_COMMENT = re.compile(r"--[^\n]*")


def sqlite_shape(conn: Conn) -> set[tuple[str, str, str]]:
    """Each schema object's (type, name, statement), comments and spacing taken out of the
    statement (an edited comment in a migration is no difference); SQLite's own left out."""
    rows = conn.execute(
        "SELECT type, name, coalesce(sql, '') AS def FROM sqlite_master"
        " WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
    ).fetchall()
    return {
        (str(r["type"]), str(r["name"]), " ".join(_COMMENT.sub("", str(r["def"])).split()))
        for r in rows
    }
