"""Two factors in one SSH login on asyncssh: a proven key or password, then TOTP.

asyncssh (2.24) completes authentication as soon as one method succeeds and offers no
partial-success hook. Its `validate_public_key` owner hook also runs before the signature
is checked, so it cannot tell a key that was merely offered from one that was proven.

So the bastion replaces asyncssh's server-side handlers for `publickey` and `password`.
They do the same checks asyncssh does, and asyncssh still verifies the signature. But a
success does not end authentication. It tells the connection's owner that the first
factor is proven, and answers SSH_MSG_USERAUTH_FAILURE with partial success. The method
list then holds only `keyboard-interactive`, where the owner asks for the TOTP code, and
only that success completes the login. A key that was offered but never signed for
(a PK_OK query) proves nothing, and every factor is bound to the login name it was proven
for: the owner refuses a factor for any other name, and a changed name ends the connection.
"""

from __future__ import annotations

from typing import Protocol, cast

import asyncssh
from asyncssh import auth as _auth
from asyncssh.packet import SSHPacket, String
from asyncssh.saslprep import SASLPrepError, saslprep

TESTED_WITH = "2.24"


class FactorSink(Protocol):
    """The SSHServer that learns when a first factor is proven."""

    def first_factor_proven(self, username: str, method: str, key_data: bytes | None) -> bool: ...


def _sink(handler: _auth.ServerAuth) -> FactorSink:
    owner = handler._conn.get_owner()
    return cast(FactorSink, owner)


class KeyFirstFactor(_auth._ServerPublicKeyAuth):
    """publickey: a verified signature is a first factor, never a whole login."""

    async def _start(self, packet: SSHPacket) -> None:
        sig_present = packet.get_boolean()
        algorithm = packet.get_string()
        key_data = packet.get_string()
        msg, signature = b"", b""
        if sig_present:
            msg = packet.get_consumed_payload()
            signature = packet.get_string()
        packet.check_end()
        conn = self._conn
        allowed = await conn.validate_public_key(self._username, key_data, msg, signature)
        if not allowed:
            self.send_failure()
        elif not sig_present:
            self.send_packet(_auth.MSG_USERAUTH_PK_OK, String(algorithm), String(key_data))
        elif _sink(self).first_factor_proven(self._username, "publickey", key_data):
            self.send_failure(partial_success=True)
        else:
            self.send_failure()


class PasswordFirstFactor(_auth._ServerPasswordAuth):
    """password: for users without keys; a right password is a first factor only."""

    async def _start(self, packet: SSHPacket) -> None:
        password_change = packet.get_boolean()
        password_bytes = packet.get_string()
        if password_change:
            packet.get_string()
        packet.check_end()
        if password_change:
            self.send_failure()
            return
        try:
            password = saslprep(password_bytes.decode("utf-8"))
        except (UnicodeDecodeError, SASLPrepError):
            raise asyncssh.ProtocolError("Invalid password auth request") from None
        conn = self._conn
        proven = await conn.validate_password(self._username, password)
        if proven and _sink(self).first_factor_proven(self._username, "password", None):
            self.send_failure(partial_success=True)
        else:
            self.send_failure()


def install() -> None:
    """Put the two-factor handlers in asyncssh's server handler table (idempotent)."""
    handlers = _auth._server_auth_handlers
    handlers[b"publickey"] = KeyFirstFactor
    handlers[b"password"] = PasswordFirstFactor


def installed() -> bool:
    handlers = _auth._server_auth_handlers
    return handlers.get(b"publickey") is KeyFirstFactor and (
        handlers.get(b"password") is PasswordFirstFactor
    )
