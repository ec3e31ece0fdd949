"""What the webhook says about requests, approvals, denials and break-glass (pure; no secrets)."""

from __future__ import annotations

from bastion.audit import NewGrant, NewRequest, Notice
from bastion.audit.records import AccessRequest
from bastion.durations import format_duration

SEVERITY = {"breakglass.opened": "high"}

_TEXT = {
    "request.created": "{by} asks for {mode} access to {target} for {user}, {window}: {reason}"
    " (request {request}: bastion approve {request}, or deny {request} --reason ...)",
    "request.approval": "{by} approved {user}'s request for {target}; more approvals needed",
    "request.approved": "{by} approved {user}'s {mode} access to {target}, {window}",
    "request.denied": "{by} denied {user}'s request for {target}: {why}",
    "breakglass.opened": ":rotating_light: BREAK-GLASS: {user} opened {mode} access to {target}"
    " for {window}: {reason}",
}


def request_notice(
    kind: str,
    subject: AccessRequest | NewRequest | NewGrant,
    by: str,
    why: str = "",
    request_id: int | None = None,
) -> Notice:
    """The webhook message for one step. It names people, targets, windows and reasons;
    it never carries a password, code, key, ticket token or the webhook's own URL."""
    if isinstance(subject, NewGrant):
        window = subject.ends_at - subject.starts_at
        user = subject.user or f"group:{subject.group}"
    else:
        window, user = subject.duration, subject.user
    if isinstance(subject, AccessRequest):
        request_id = subject.id
    fields = {"request": request_id, "by": by, "user": user, "target": subject.target,
              "mode": subject.mode, "window": format_duration(window), "reason": subject.reason,
              "why": why}  # fmt: skip
    severity = SEVERITY.get(kind, "notice")
    body: dict[str, object] = {
        "text": "bastion: " + _TEXT[kind].format(**fields),
        "event": kind,
        "severity": severity,
        "user": user,
        "target": subject.target,
        "mode": subject.mode,
        "seconds": int(window.total_seconds()),
        "by": by,
        "reason": subject.reason,
    }
    if request_id is not None:
        body["request"] = request_id
    if why:
        body["denied_because"] = why
    return Notice(kind, severity, body)
