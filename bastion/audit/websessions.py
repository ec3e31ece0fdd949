"""Store queries for the web console's sign-ins: open, look up, touch, step up and end them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bastion.audit.base import StoreBase
from bastion.audit.chain import Event
from bastion.clock import iso, parse_iso
from bastion.errors import NotFound

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
        parse_iso(proven) if proven else None,
    )  # fmt: skip


class WebSessionQueries(StoreBase):
    def open_web_session(
        self, *, session_id: str, token_sha256: str, user: str, csrf_token: str, client: str
    ) -> None:
        """A sign-in: the row and its `web.signed_in` event in one transaction."""
        user_id = self._id_by_name("users", user)
        now = iso(self.clock.now())
        with self._write() as conn:
            conn.execute(
                "INSERT INTO web_sessions (id, token_sha256, user_id, csrf_token, client_addr,"
                " started_at, last_seen_at, proven_at) VALUES (?,?,?,?,?,?,?,?)",
                (session_id, token_sha256, user_id, csrf_token, client, now, now, now),
            )
            detail = {"door": "web", "client": client}
            self._append(conn, [Event("web.signed_in", user, "web", "notice", session_id,
                                      detail)])  # fmt: skip

    def web_session_by_token(self, token_sha256: str) -> WebSession | None:
        rows = self._rows(WEB_SELECT + " WHERE w.token_sha256 = ?", [token_sha256])
        return _from_row(rows[0]) if rows else None

    def web_sessions(
        self, user: str, *, live_only: bool = True, limit: int = 50
    ) -> list[WebSession]:
        live = " AND w.ended_at IS NULL" if live_only else ""
        sql = WEB_SELECT + f" WHERE u.name = ?{live} ORDER BY w.started_at DESC LIMIT ?"
        return [_from_row(r) for r in self._rows(sql, [user, limit])]

    def touch_web_session(self, session_id: str) -> None:
        """The person did something: the idle lifetime starts again (no audit event)."""
        with self._write() as conn:
            conn.execute(
                "UPDATE web_sessions SET last_seen_at = ? WHERE id = ? AND ended_at IS NULL",
                (iso(self.clock.now()), session_id),
            )

    def prove_web_session(self, session_id: str, user: str, client: str) -> bool:
        """Step-up: the live web session `session_id` of `user` just proved a TOTP code; its
        `web.stepped_up` event in the same transaction. False (and nothing written) when no
        live session of that id belongs to that person."""
        user_id = self._id_by_name("users", user)
        with self._write() as conn:
            changed = conn.execute(
                "UPDATE web_sessions SET proven_at = ? WHERE id = ? AND user_id = ?"
                " AND ended_at IS NULL",
                (iso(self.clock.now()), session_id, user_id),
            ).rowcount
            if changed:
                detail = {"door": "web", "client": client}
                self._append(conn, [Event("web.stepped_up", user, "web", "notice", session_id,
                                          detail)])  # fmt: skip
        return bool(changed)

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
