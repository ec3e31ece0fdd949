"""Untrusted text made fit for one line of a terminal, a log or a browser."""

from __future__ import annotations


def printable_line(text: str, limit: int = 200) -> str:
    """No control characters (a terminal escape could hide or rewrite what surrounds it),
    no line breaks, runs of blanks squeezed, at most `limit` characters."""
    text = "".join(c if c.isprintable() else " " for c in text)
    return " ".join(text.split())[:limit]
