"""Store queries for the web console's sign-ins: open, look up, touch, step up and end them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import structlog

from bastion.audit.base import StoreBase
from bastion.audit.chain import Event
from bastion.audit.sessionmac import WebSessionKey
from bastion.audit.sqlconn import Conn
from bastion.clock import iso, parse_iso
from bastion.errors import NotFound

log = structlog.get_logger("bastion.audit")

WEB_SELECT = (
    "SELECT w.*, u.name AS user, u.role AS role, u.disabled_at AS disabled_at"
    " FROM web_sessions w JOIN users u ON u.id = w.user_id"
)


@dataclass(frozen=True)
class WebSession:
    """One sign-in to the console, with its person's role and state as they are now."""

    id: str
    user: str
    role: str
    user_disabled: bool
    csrf_token: str
    client_addr: str
    started_at: datetime
    last_seen_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    proven_at: datetime | None = None  # when it last proved its person's TOTP code (step-up)
    user_id: int = 0
    token_mac: str = field(default="", repr=False)  # the key's MAC of the cookie's secret
    row_mac: str | None = field(default=None, repr=False)  # the key's MAC of mac_fields()

    def mac_fields(self) -> list[str | int | None]:
        """Every field the guard trusts, as the row's MAC covers them."""
        return ["web-session", self.id, self.token_mac, self.user_id, self.user,
                self.csrf_token, self.client_addr, iso(self.started_at), iso(self.last_seen_at),
                iso(self.proven_at) if self.proven_at else None]  # fmt: skip

    def public(self) -> dict[str, Any]:
        """What the person may see of it (never the CSRF token or the cookie's hash)."""
        return {"id": self.id, "user": self.user, "client": self.client_addr,
                "started_at": iso(self.started_at), "last_seen_at": iso(self.last_seen_at),
                "ended_at": iso(self.ended_at) if self.ended_at else None,
                "end_reason": self.end_reason}  # fmt: skip


def _from_row(row: dict[str, Any]) -> WebSession:
    ended, proven = row["ended_at"], row["proven_at"]
    return WebSession(
        row["id"], row["user"], row["role"], row["disabled_at"] is not None, row["csrf_token"],
        row["client_addr"], parse_iso(row["started_at"]), parse_iso(row["last_seen_at"]),
        parse_iso(ended) if ended else None, row["end_reason"],
        parse_iso(proven) if proven else None, int(row["user_id"]), row["token_mac"],
        row["row_mac"],
    )  # fmt: skip


def _verified(rows: list[dict[str, Any]], key: WebSessionKey) -> list[WebSession]:
    """The rows whose MAC holds under the key; each other one is refused, in one log line."""
    found = []
    for row in rows:
        session = _from_row(row)
        if key.holds(session.mac_fields(), session.row_mac):
            found.append(session)
        else:
            log.warning("web.session_refused", session=session.id, user=session.user,
                        why="its row does not carry the key's MAC (written or edited"
                            " without the key, or from before the key bound it)")  # fmt: skip
    return found


class WebSessionQueries(StoreBase):
    def open_web_session(
        self, key: WebSessionKey, *, session_id: str, token_mac: str, user: str,
        csrf_token: str, client: str,
    ) -> None:  # fmt: skip
        """A sign-in: the row, MACed under `key`, and its `web.signed_in` event in one
        transaction."""
        user_id = self._id_by_name("users", user)
        at = self.clock.now()
        made = WebSession(session_id, user, "", False, csrf_token, client, at, at, None, None,
                          at, user_id, token_mac)  # fmt: skip
        now = iso(at)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO web_sessions (id, token_mac, user_id, csrf_token, client_addr,"
                " started_at, last_seen_at, proven_at, row_mac) VALUES (?,?,?,?,?,?,?,?,?)",
                (session_id, token_mac, user_id, csrf_token, client, now, now, now,
                 key.row(made.mac_fields())),
            )  # fmt: skip
            detail = {"door": "web", "client": client}
            self._append(conn, [Event("web.signed_in", user, "web", "notice", session_id,
                                      detail)])  # fmt: skip

    def web_session_by_token(self, key: WebSessionKey, token_mac: str) -> WebSession | None:
        """The session whose cookie's MAC is `token_mac`, if its row's MAC holds under `key`
        (a row that fails is refused like a missing one, in one log line)."""
        rows = self._rows(WEB_SELECT + " WHERE w.token_mac = ?", [token_mac])
        found = _verified(rows, key)
        return found[0] if found else None

    def web_sessions(
        self, user: str, key: WebSessionKey, *, live_only: bool = True, limit: int = 50
    ) -> list[WebSession]:
        """`user`'s web sessions whose rows' MACs hold, newest first."""
        live = " AND w.ended_at IS NULL" if live_only else ""
        sql = WEB_SELECT + f" WHERE u.name = ?{live} ORDER BY w.started_at DESC LIMIT ?"
        return _verified(self._rows(sql, [user, limit]), key)

    def _remac(
        self, conn: Conn, key: WebSessionKey, session: WebSession, **change: Any
    ) -> WebSession | None:
        """Change a live session's last use or proof, with its new MAC, after checking the row
        as it is now (still live, still MACed, still this person's); None if it is not."""
        rows = conn.execute(WEB_SELECT + " WHERE w.id = ? AND w.ended_at IS NULL",
                            (session.id,)).fetchall()  # fmt: skip
        found = _verified([dict(r) for r in rows], key)
        if not found or found[0].user_id != session.user_id:
            return None
        now = replace(found[0], **change)
        proven = iso(now.proven_at) if now.proven_at else None
        now = replace(now, row_mac=key.row(now.mac_fields()))
        conn.execute(
            "UPDATE web_sessions SET last_seen_at = ?, proven_at = ?, row_mac = ? WHERE id = ?",
            (iso(now.last_seen_at), proven, now.row_mac, now.id),
        )
        return now

    def touch_web_session(self, key: WebSessionKey, session: WebSession) -> WebSession | None:
        """The person did something: the idle lifetime starts again (no audit event). The
        session as it is now, or None when it ended or its row fails its MAC."""
        with self._write() as conn:
            return self._remac(conn, key, session, last_seen_at=self.clock.now())

    def prove_web_session(self, key: WebSessionKey, session: WebSession, client: str) -> bool:
        """Step-up: the live web session `session` just proved its person's TOTP code; its
        `web.stepped_up` event in the same transaction. False (and nothing written) when the
        session ended or its row fails its MAC."""
        with self._write() as conn:
            changed = self._remac(conn, key, session, proven_at=self.clock.now())
            if changed is not None:
                detail = {"door": "web", "client": client}
                self._append(conn, [Event("web.stepped_up", session.user, "web", "notice",
                                          session.id, detail)])  # fmt: skip
        return changed is not None

    def end_web_session(self, session_id: str, reason: str, actor: str) -> bool:
        """End one web session (False when it had ended already); chained as web.signed_out."""
        rows = self._rows(WEB_SELECT + " WHERE w.id = ?", [session_id])
        if not rows:
            raise NotFound(f"no web session with id {session_id}")
        found = _from_row(rows[0])
        with self._write() as conn:
            changed = conn.execute(
                "UPDATE web_sessions SET ended_at = ?, end_reason = ? WHERE id = ?"
                " AND ended_at IS NULL",
                (iso(self.clock.now()), reason, session_id),
            ).rowcount
            if changed:
                detail = {"door": "web", "reason": reason, "client": found.client_addr}
                self._append(conn, [Event("web.signed_out", actor, found.user, "notice",
                                          session_id, detail)])  # fmt: skip
        return bool(changed)

    def end_user_web_sessions(self, user: str, reason: str, actor: str) -> list[str]:
        """Sign-out everywhere: every live web session of `user` ends, one event naming them."""
        user_id = self._id_by_name("users", user)
        with self._write() as conn:
            ids = [str(r[0]) for r in conn.execute(
                "SELECT id FROM web_sessions WHERE user_id = ? AND ended_at IS NULL ORDER BY id",
                (user_id,)).fetchall()]  # fmt: skip
            conn.execute(
                "UPDATE web_sessions SET ended_at = ?, end_reason = ? WHERE user_id = ?"
                " AND ended_at IS NULL",
                (iso(self.clock.now()), reason, user_id),
            )
            detail = {"door": "web", "reason": reason, "sessions": ids}
            self._append(conn, [Event("web.signed_out_everywhere", actor, user, "notice",
                                      None, detail)])  # fmt: skip
        return ids
