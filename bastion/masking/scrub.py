"""What a masked session may see of errors, notices and startup parameters (pure).

PostgreSQL's messages can quote values: `invalid input syntax for type integer:
"123-45-6789"`, a unique violation's DETAIL, a RAISE NOTICE. In masked mode the client gets
the SQLSTATE and a generic line; the original goes only to the audit trail.
"""

from __future__ import annotations

from collections.abc import Mapping

from bastion import pgwire

# Startup parameters a masked session may send: no options (-c search_path=, -c role=),
# no replication, no protocol extensions.
STARTUP_ALLOWED = frozenset({"user", "database", "application_name", "client_encoding",
                             "datestyle", "timezone", "extra_float_digits", "intervalstyle",
                             "fallback_application_name", "statement_timeout",
                             "lock_timeout", "idle_in_transaction_session_timeout"})  # fmt: skip

_EXACT = {
    "42501": "the database refused a privilege: on a hardened target the masked role may not"
             " read sensitive columns, so name the columns you need (SELECT * asks for all),"
             " or ask for unmasking",
    "42P01": "a table or view the statement names does not exist",
    "42703": "a column the statement names does not exist",
}  # fmt: skip
_CLASSES = {
    "22": "a value did not fit its type or function",
    "23": "a constraint was violated",
    "42": "the statement refers to something it may not, or is malformed",
    "P0": "a PL/pgSQL error was raised",
    "57": "the server ended the operation",
    "25": "the transaction state does not allow this",
    "40": "the transaction was rolled back",
    "53": "the server ran out of a resource",
    "54": "a limit was exceeded",
}


def startup_refusal(params: Mapping[str, str]) -> str | None:
    """Why a masked session's startup parameters are refused, or None."""
    for key in params:
        if key.lower() not in STARTUP_ALLOWED:
            return f"the startup parameter {key!r} is not allowed in masked mode"
    return None


def scrubbed(fields: Mapping[str, str], *, notice: bool = False) -> bytes:
    """An ErrorResponse (or NoticeResponse) with only the severity, the SQLSTATE and a line
    that quotes nothing from the statement or the data."""
    severity = fields.get("V") or fields.get("S") or ("NOTICE" if notice else "ERROR")
    sqlstate = fields.get("C", "XX000")
    what = _EXACT.get(sqlstate) or _CLASSES.get(sqlstate[:2], "the statement failed")
    message = (f"{what} (SQLSTATE {sqlstate}); in masked mode the server's message is kept"
               " in the audit trail only")  # fmt: skip
    if notice:
        return pgwire.notice_response(severity, sqlstate, message)
    return pgwire.error_response(severity, sqlstate, message)
