"""The console's URL parameters by name, each with its JSON schema: one list that the OpenAPI
document describes and the guard checks every API call's query and path against.

A route names the query parameters it takes (`Routes.add(query=...)`) and its path
placeholders (`{week}`); `Routes.add` refuses a name that has no schema here, so nothing
reaches a handler, or the document, undescribed. The patterns and enums are the handlers'
own (the session id's, the week label's, the protocols and consent states the searches
accept); a handler may still refuse more (a cursor another listing gave)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from bastion.audit.chain import SEVERITIES
from bastion.console.events import KIND_RE, MAX_KIND, MAX_NAME, MAX_PAGE
from bastion.identity.service import NAME_RE
from bastion.recording.container import SESSION_ID_RE
from bastion.reports.week import LABEL_RE
from bastion.reviewing.logs import STATES
from bastion.reviewing.sessions import MAX_TEXT, PROTOCOLS

Schema = dict[str, object]
PLACEHOLDER = re.compile(r"\{([^{}:]+)(?::[^{}]*)?\}")


def _anchored(pattern: re.Pattern[str]) -> str:
    return "^(?:" + pattern.pattern.removeprefix("^").removesuffix("$") + ")$"


def _string(pattern: str | None = None, *, max_length: int = 256,
            enum: tuple[str, ...] = ()) -> Schema:  # fmt: skip
    schema: Schema = {"type": "string", "maxLength": max_length}
    if pattern is not None:
        schema["pattern"] = pattern
    if enum:
        schema["enum"] = list(enum)
    return schema


ISO = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z"  # clock.iso()
SESSION_ID = _string(_anchored(SESSION_ID_RE), max_length=128)
WEEK = _string(_anchored(LABEL_RE), max_length=8)
QUERY: dict[str, Schema] = {
    "user": _string(_anchored(NAME_RE), max_length=32),
    "target": _string(),
    "since": _string(f"^(?:[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}|{ISO})$", max_length=27),
    "until": _string(f"^(?:[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}|{ISO})$", max_length=27),
    "text": _string(max_length=MAX_TEXT),
    "protocol": _string(enum=PROTOCOLS),
    "state": _string(enum=STATES),
    # an id (commands, queries, consents) or a start~session (sessions), as the listing gave
    "cursor": _string(f"^(?:[0-9]{{1,18}}|{ISO}~{SESSION_ID_RE.pattern})$", max_length=160),
    "session": SESSION_ID,
    "week": WEEK,
    "name": _string(),  # a target's name
    # the audit log's: a kind or a prefix of kinds, who did it, what about, least severity
    "kind": _string(_anchored(KIND_RE), max_length=MAX_KIND),
    "actor": _string(max_length=MAX_NAME),
    "subject": _string(max_length=MAX_NAME),
    "severity": _string(enum=SEVERITIES),
    "limit": _string(f"^(?:[1-9][0-9]?|1[0-9]{{2}}|{MAX_PAGE})$", max_length=3),
}
PATH: dict[str, Schema] = {
    "week": WEEK,
    "finding": _string("^[0-9a-f]{16}$", max_length=16),  # reports.model.finding_id
    "session": SESSION_ID,
    "session_id": SESSION_ID,
    "name": _string("^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=128),  # a static file's
}


def placeholders(path: str) -> tuple[str, ...]:
    """The names of a path template's placeholders, in order: `/a/{week}/b` -> ("week",)."""
    return tuple(PLACEHOLDER.findall(path))


def undescribed(query: tuple[str, ...], path: str) -> list[str]:
    """The route's parameters that have no schema here (none, or the route is refused)."""
    return [f"query parameter {n!r}" for n in query if n not in QUERY] + [
        f"path placeholder {{{n}}}" for n in placeholders(path) if n not in PATH
    ]


def problem(schema: Schema, name: str, value: str) -> str | None:
    """Why `value` does not fit `schema` (one line), or None when it does."""
    limit = schema.get("maxLength")
    if isinstance(limit, int) and len(value) > limit:
        return f"{name} is at most {limit} characters"
    enum = schema.get("enum")
    if isinstance(enum, list) and value not in enum:
        return f"{name} is one of {', '.join(map(str, enum))}"
    pattern = schema.get("pattern")
    if isinstance(pattern, str) and re.fullmatch(pattern, value, re.ASCII) is None:
        return f"{name} is not in the form this API takes (see its OpenAPI document)"
    return None


def refusal(query: tuple[str, ...], items: list[tuple[str, str]],
            path: Mapping[str, str]) -> str | None:  # fmt: skip
    """Why an API call's parameters are refused (one line), or None. `items` are the query's
    (name, value) pairs as sent: a declared name sent twice is refused, an empty value is
    no value (as the search forms send them). Unknown names are the endpoint's to refuse."""
    seen: set[str] = set()
    for name, value in items:
        if name not in query:
            continue
        if name in seen:
            return f"{name} is given more than once"
        seen.add(name)
        wrong = problem(QUERY[name], name, value) if value else None
        if wrong:
            return wrong
    for name, value in path.items():
        wrong = problem(PATH.get(name, {}), name, value)
        if wrong:
            return wrong
    return None
