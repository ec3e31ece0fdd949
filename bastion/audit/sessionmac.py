"""Keyed MACs that bind the console's web session rows to the key kept outside the store.

The store keeps, for each web session, an HMAC of the cookie's secret (never the secret) and
an HMAC over every field the guard trusts: the session's id, its person (id and name), its
CSRF token, where it came from, when it started, when it was last used and when it last
proved a TOTP code. Both are keyed with a key derived from the secrets key, as the audit
chain's is: someone with the store file but without that key can neither make a row that a
cookie of theirs finds, nor move a row to another person, nor stretch its lifetimes or its
step-up proof. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

from bastion.audit.chain import KeySource, canonical_json

WEB_SESSION_PURPOSE = "bastion web sessions v1"


class WebSessionKey:
    """The key that MACs web session rows and their cookies' secrets (never shown)."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise ValueError("a web session key is 32 bytes")
        self._secret = bytes(secret)

    @classmethod
    def of(cls, box: KeySource) -> WebSessionKey:
        return cls(box.hkdf(WEB_SESSION_PURPOSE))

    def __repr__(self) -> str:
        return "WebSessionKey(...)"

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError("a WebSessionKey is never pickled")

    def token(self, token: str) -> str:
        """What the store keeps of a cookie's secret, and looks the session up by."""
        return self._mac(b"token", token.encode("utf-8", "surrogatepass"))

    def row(self, fields: Sequence[str | int | None]) -> str:
        """The MAC over a row's trusted fields, in the order WebSession.mac_fields gives."""
        return self._mac(b"row", canonical_json(list(fields)).encode())

    def holds(self, fields: Sequence[str | int | None], mac: str | None) -> bool:
        """Whether `mac` is this key's MAC of `fields` (a row from before the key: never)."""
        return mac is not None and hmac.compare_digest(self.row(fields), mac)

    def _mac(self, what: bytes, message: bytes) -> str:
        return hmac.new(self._secret, what + b"\x00" + message, hashlib.sha256).hexdigest()
