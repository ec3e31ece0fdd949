"""Answering a target's authentication requests: only the methods the target allows, and a
SCRAM login that ends with the server's proof (no I/O: requests in, replies out)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import scramp

from bastion import pgwire
from bastion.errors import BastionError

SCRAM = "scram-sha-256"
MD5 = "md5"
CLEARTEXT = "password"  # pg_hba.conf's name for a cleartext password
TRUST = "trust"  # AuthenticationOk with no authentication asked at all
METHODS = (SCRAM, MD5, CLEARTEXT, TRUST)
DEFAULT_METHODS = (SCRAM,)

_OK, _CLEARTEXT, _MD5, _SASL, _SASL_CONTINUE, _SASL_FINAL = 0, 3, 5, 10, 11, 12
_NAMES = {_CLEARTEXT: "a cleartext password", _MD5: "an md5 password", _SASL: "SASL"}


class UpstreamError(BastionError):
    """The target could not be reached or refused the service role; detail is for the audit."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


@dataclass
class UpstreamAuth:
    """One login's authentication exchange, in the order PostgreSQL runs it.

    The states: nothing asked yet; SCRAM started (client-first sent); SCRAM continued
    (client-final sent); done (a password sent, or the server's SCRAM signature checked).
    AuthenticationOk is accepted only when done, or with nothing asked where "trust" is
    allowed; any second request after one method finished is refused (no downgrade).
    """

    user: str
    password: str
    allowed: Collection[str] = DEFAULT_METHODS
    _scram: scramp.ScramClient | None = None
    _state: str = "start"  # start, scram-first, scram-final, done
    _asked: list[int] = field(default_factory=list)
    finished: bool = False  # AuthenticationOk accepted

    def answer(self, auth: pgwire.Authentication) -> bytes | None:
        """The reply to one Authentication message (None for AuthenticationOk, which ends
        the exchange); UpstreamError, with nothing sent, when the request is not acceptable."""
        code = auth.code
        if self.finished:
            raise UpstreamError("the database asked to authenticate after letting the bastion"
                                " in; refused", f"request {code}")  # fmt: skip
        if code == _OK:
            self._ok()
            self.finished = True
            return None
        if code == _SASL_CONTINUE:
            return self._continue(auth.data)
        if code == _SASL_FINAL:
            self._final(auth.data)
            return None
        if self._state != "start":
            raise UpstreamError("the database asked to authenticate twice; refused",
                                f"request {code} after {self._asked}")  # fmt: skip
        self._asked.append(code)
        if code == _CLEARTEXT:
            self._allow(CLEARTEXT, code)
            self._state = "done"
            return pgwire.password_message(self.password.encode())
        if code == _MD5:
            self._allow(MD5, code)
            self._state = "done"
            return pgwire.password_message(pgwire.md5_password(self.user, self.password,
                                                               auth.data))  # fmt: skip
        if code == _SASL:
            return self._start_scram(auth.data)
        raise UpstreamError(f"the database asks for an authentication method ({code}) the"
                            " bastion does not speak")  # fmt: skip

    def _allow(self, method: str, code: int) -> None:
        if method not in self.allowed:
            raise UpstreamError(
                f"the database asks for {_NAMES[code]}, which this target does not allow;"
                " refused without sending the password (set [targets.NAME] upstream_auth"
                f" to include {method!r} if the server is really configured so)",
                f"asked for method {code}",
            )

    def _start_scram(self, data: bytes) -> bytes:
        self._allow(SCRAM, _SASL)
        mechanisms = pgwire.sasl_mechanisms(data)
        if "SCRAM-SHA-256" not in mechanisms:
            raise UpstreamError("the database offers no SASL mechanism the bastion speaks",
                                ", ".join(mechanisms))  # fmt: skip
        self._scram = scramp.ScramClient(["SCRAM-SHA-256"], self.user, self.password)
        self._state = "scram-first"
        first = self._scram.get_client_first().encode()
        return pgwire.sasl_initial_response("SCRAM-SHA-256", first)

    def _continue(self, data: bytes) -> bytes:
        if self._state != "scram-first" or self._scram is None:
            raise UpstreamError("the database sent a SCRAM message out of order; refused")
        try:
            self._scram.set_server_first(data.decode())
            final = self._scram.get_client_final().encode()
        except (scramp.ScramException, UnicodeDecodeError) as exc:
            raise UpstreamError("the database sent a malformed SCRAM message", str(exc)) from exc
        self._state = "scram-final"
        return pgwire.sasl_response(final)

    def _final(self, data: bytes) -> None:
        if self._state != "scram-final" or self._scram is None:
            raise UpstreamError("the database sent a SCRAM message out of order; refused")
        try:
            self._scram.set_server_final(data.decode())
        except (scramp.ScramException, UnicodeDecodeError) as exc:
            why = "the database failed SCRAM server verification (it does not know the password)"
            raise UpstreamError(why, str(exc)) from exc
        self._state = "done"

    def _ok(self) -> None:
        if self._state == "done":
            return
        if self._state == "start" and TRUST in self.allowed:
            self._state = "done"
            return
        if self._state == "start":
            raise UpstreamError("the database let the service role in without authenticating;"
                                " refused (a target that trusts the bastion must allow"
                                " \"trust\" in upstream_auth)")  # fmt: skip
        raise UpstreamError("the database ended SCRAM without proving it knows the password"
                            " (no server signature); refused")  # fmt: skip
