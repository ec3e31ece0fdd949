"""Masked values that stay valid for their column's type, in text and binary format (pure).

Text-like types (text, varchar, bpchar, name, citext) get a string no longer than the original,
the same bytes in both formats. Every other type gets SQL NULL, which any type and format
accepts; a driver would fail to decode "****" in an integer or a date.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from datetime import datetime

# Type OIDs whose text and binary forms are both the plain string.
TEXT_LIKE = frozenset({25, 1043, 1042, 19})  # text, varchar, bpchar, name
FULL = b"****"
HASH_BYTES = 8  # 16 hex characters of HMAC-SHA256

Masker = Callable[[bytes], bytes | None]  # a value's bytes in; its replacement, or None (NULL)


def full(value: bytes) -> bytes:
    """'****', or as many stars as the value has bytes when it is shorter."""
    return FULL[: len(value)] if len(value) < len(FULL) else FULL


_NOT_DIGITS = bytes(c for c in range(256) if not 48 <= c <= 57)
_STARS = bytes(
    42 if chr(c).isascii() and chr(c).isalnum() else c for c in range(256)
)  # * for A-Za-z0-9
_KEEP_DIGITS = 4


def partial(value: bytes) -> bytes:
    """Show a little and hide the rest, the length kept: `j***@example.com` for an email,
    the last 4 digits of a card, phone, IBAN or ID (`***-**-6789`), else like full()."""
    if not value.isascii():
        return _partial_text(value)
    at = value.find(b"@")
    if at > 0 and at < len(value) - 1 and value.find(b"@", at + 1) < 0:
        return value[:1] + b"*" * (at - 1) + value[at:]
    if len(value.translate(None, _NOT_DIGITS)) >= 6:
        seen, cut = 0, len(value)
        while seen < _KEEP_DIGITS:  # everything before the last four digits is hidden
            cut -= 1
            seen += 48 <= value[cut] <= 57
        return value[:cut].translate(_STARS) + value[cut:]
    return full(value)


def _partial_text(value: bytes) -> bytes:
    """partial() for values beyond ASCII: the same rules on characters."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return full(value)
    local, at, domain = text.partition("@")
    if at and local and domain and "@" not in domain:
        return (local[0] + "*" * (len(local) - 1) + "@" + domain).encode()
    return full(value)


def week_of(now: datetime) -> str:
    """The ISO week a keyed hash is stable within, e.g. "2026-W47"."""
    year, week, _ = now.isocalendar()
    return f"{year}-W{week:02d}"


def keyed_hash(key: bytes, week: str) -> Callable[[bytes], bytes]:
    """HMAC-SHA256 under the deployment key and the week: equal values hash alike (joins and
    GROUP BY still work) but can't be looked up without the key; cut to the value's length."""
    week_key = hmac.new(key, week.encode(), hashlib.sha256).digest()

    def mask(value: bytes) -> bytes:
        digest = hmac.new(week_key, value, hashlib.sha256).hexdigest()[: HASH_BYTES * 2]
        return digest[: max(1, len(value))].encode() if value else b""

    return mask


def null(value: bytes) -> None:
    return None


def masker(style: str, type_oid: int, key: bytes, week: str, *, text_like: bool = False) -> Masker:
    """The function that masks one column's values: its style when the type is text-like,
    NULL for every other type."""
    if not (text_like or type_oid in TEXT_LIKE) or style == "null":
        return null
    if style == "partial":
        return partial
    if style == "hash":
        return keyed_hash(key, week)
    return full
