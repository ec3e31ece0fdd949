"""One-time database tickets bound to the key kept outside the store.

A one-time ticket (`bt_` and 32 URL-safe characters) is kept only as an HMAC under a key
derived from the secrets key, and its row carries a second keyed MAC over that digest, its
person, its target and its end. Someone with the store file but without the key can neither
insert a ticket a token of theirs finds, nor move their own ticket to someone else, nor
stretch it: such a row is an unknown ticket. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac

from bastion.audit.chain import KeySource, canonical_json

DIGEST_PURPOSE = "bastion one-time tickets v1"
ROW_PURPOSE = "bastion one-time ticket rows v1"


class OneTimeKey:
    """The keys of one-time tickets: what the store keeps of a token, and its row's MAC."""

    __slots__ = ("_digest_key", "_row_key")

    def __init__(self, box: KeySource) -> None:
        self._digest_key = box.hkdf(DIGEST_PURPOSE)
        self._row_key = box.hkdf(ROW_PURPOSE)

    def __repr__(self) -> str:
        return "OneTimeKey(...)"

    def digest(self, token: str) -> str:
        """What the store keeps of a token, and looks the ticket up by."""
        message = token.encode("utf-8", "surrogatepass")
        return hmac.new(self._digest_key, message, hashlib.sha256).hexdigest()

    def row(self, digest: str, user: str, target: str, expires_at: str) -> str:
        """The MAC binding a ticket's digest to its person, target and end (stored form)."""
        fields = canonical_json(["one-time-ticket", digest, user, target, expires_at])
        return hmac.new(self._row_key, fields.encode(), hashlib.sha256).hexdigest()

    def holds(self, digest: str, user: str, target: str, expires_at: str,
              mac: str | None) -> bool:  # fmt: skip
        """Whether a row's MAC is this key's (a row from before the key bound it: never)."""
        expected = self.row(digest, user, target, expires_at)
        return mac is not None and hmac.compare_digest(expected, mac)
