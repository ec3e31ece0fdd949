"""What the database reports of a session (ParameterStatus) that ends it, or that makes its
statements wait again: settings that change how SQL is read, a read-only guard lifted."""

from __future__ import annotations

from bastion import pgwire
from bastion.pgproxy.guard import MaskingLost
from bastion.sqlparse import lexing as sqlparse_lexing

LIFTED = ("the read-only guard was lifted by code the database runs (a function, view, cast or"
          " operator of its own); the session was ended")  # fmt: skip


def check_status(frame: pgwire.Frame, read_only: bool) -> bool:
    """The server reports a setting that changes how it reads SQL (SET in a pipelined query,
    a function, a role's default): the bastion would judge text the server reads otherwise.
    Under a read grant, it reports default_transaction_read_only turned off: code the guard
    could not see lifted it, and the session ends before anything else runs. False when the
    server reports the session no longer read-only (where that may happen)."""
    status = pgwire.decode_backend(frame)
    if isinstance(status, pgwire.ParameterStatus):
        why = sqlparse_lexing.refusal(status.name, status.value)
        if why is not None:
            raise MaskingLost(f"the database reported {status.name}={status.value}", why)
        if status.name == "default_transaction_read_only" and status.value != "on":
            if read_only:
                raise MaskingLost(f"the database reported {status.name}={status.value}", LIFTED)
            return False  # the session is no longer read-only upstream
    return True
