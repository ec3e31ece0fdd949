"""Text from clients as the store keeps it: NUL escaped, reversibly, the same on every engine.

PostgreSQL text cannot hold U+0000, and SQLite would keep it invisibly; a client can send one
(an SSH exec command and an SFTP path are length-prefixed, a terminal sends Ctrl-@). Such text
is stored with one escape character, U+2400 SYMBOL FOR NULL (shown as a visible mark):

    U+0000  ->  U+2400 "0"
    U+2400  ->  U+2400 U+2400

Every U+2400 in stored text starts one of these two pairs, so `restore` gives back exactly
what the client sent, and text holding neither character is stored unchanged.
"""

from __future__ import annotations

MARK = "\u2400"
_PAIRS = {"0": "\x00", MARK: MARK}


def escape(text: str) -> str:
    """The text as the store keeps it."""
    if "\x00" not in text and MARK not in text:
        return text
    return text.replace(MARK, MARK + MARK).replace("\x00", MARK + "0")


def escape_opt(text: str | None) -> str | None:
    return None if text is None else escape(text)


def restore(stored: str) -> str:
    """The text as the client sent it; ValueError for text `escape` could not have made."""
    if MARK not in stored:
        return stored
    out, at = [], 0
    while (found := stored.find(MARK, at)) >= 0:
        pair = stored[found + 1 : found + 2]
        if pair not in _PAIRS:
            raise ValueError(f"a lone {MARK!r} at {found}: not text the store escaped")
        out += [stored[at:found], _PAIRS[pair]]
        at = found + 2
    out.append(stored[at:])
    return "".join(out)
