"""Settings that change how PostgreSQL reads SQL text, pinned so the bastion reads it alike.

The bastion parses every statement with PostgreSQL's grammar as UTF-8 with
standard_conforming_strings on. A client encoding such as SJIS or GBK (whose multi-byte
characters may end in a backslash or quote byte) or standard_conforming_strings off (where a
backslash escapes a quote) would make the server read a string literal where the bastion
read code, or the other way round: the guard, the masking and the query log would judge
text the server does not run. So only these values are allowed, at start-up, in SET and
set_config, and in every ParameterStatus the server reports.
"""

from __future__ import annotations

# Client encodings in which every byte below 0x80 is that ASCII character and never part
# of a multi-byte one: PostgreSQL's server encodings (SQL_ASCII is taken as the server's own).
# A quote or backslash reads the same on both sides; bytes that are not UTF-8 make the
# bastion refuse the statement. The client-only encodings (SJIS, BIG5, GBK, UHC, GB18030,
# JOHAB) may end a character in a quote or backslash byte, so they are not here.
ENCODINGS = frozenset({
    "utf8", "unicode", "sqlascii", "eucjp", "euccn", "euckr", "euctw", "eucjis2004",
    "muleinternal", "latin1", "latin2", "latin3", "latin4", "latin5", "latin6", "latin7",
    "latin8", "latin9", "latin10", "iso88591", "iso88592", "iso88593", "iso88594", "iso88595",
    "iso88596", "iso88597", "iso88598", "iso88599", "iso885910", "iso885913", "iso885914",
    "iso885915", "iso885916", "win866", "win874", "win1250", "win1251", "win1252", "win1253",
    "win1254", "win1255", "win1256", "win1257", "win1258", "koi8r", "koi8u",
})  # fmt: skip
PINNED = frozenset({"client_encoding", "standard_conforming_strings"})


def refusal(name: str, value: str) -> str | None:
    """Why this value of a lexing setting is refused, or None (also None for other names)."""
    lowered = name.lower()
    if lowered == "client_encoding":
        # asyncpg sends 'utf-8' with its quotes, which the server takes as utf-8.
        normal = value.strip().strip("'").lower().replace("-", "").replace("_", "")
        if normal not in ENCODINGS:
            return (f"client_encoding {value!r} is not allowed through the bastion, which reads"
                    " statements as UTF-8: use UTF8")  # fmt: skip
    elif lowered == "standard_conforming_strings" and value.strip().strip("'").lower() not in (
        "on",
        "true",
        "yes",
        "1",
    ):
        return ("standard_conforming_strings must stay on through the bastion (a backslash"
                " would read differently on each side)")  # fmt: skip
    return None
