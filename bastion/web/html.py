"""HTML built from Python values: every string is escaped unless it was built here (Markup).

An insider types reasons, target names and commands; none of it can become markup. Pages
carry no script and no inline style, so the CSP can forbid both."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence


class Markup(str):
    """Text that is markup already (made by `el` or `join`); everything else is escaped."""

    __slots__ = ()


def escape(value: object) -> Markup:
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


def _children(children: Iterable[object]) -> str:
    out: list[str] = []
    for child in children:
        if child is None or child is False:
            continue
        if isinstance(child, str | int):
            out.append(escape(child))
        else:
            out.append(_children(child))  # type: ignore[arg-type]
    return "".join(out)


VOID = frozenset({"input", "meta", "link", "br", "img", "hr"})
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def el(tag: str, attrs: Mapping[str, object] | None = None, *children: object) -> Markup:
    """<tag attr="value">children</tag>; an attribute set to True is written bare, None or
    False leaves it out. Tag and attribute names are the code's own, checked anyway."""
    parts = [tag]
    for key, value in (attrs or {}).items():
        name = key.rstrip("_").replace("_", "-")
        if not set(name) <= NAME_CHARS or not set(tag) <= NAME_CHARS:
            raise ValueError(f"bad HTML name {tag!r} {name!r}")
        if value is None or value is False:
            continue
        parts.append(name if value is True else f'{name}="{escape(value)}"')
    opening = "<" + " ".join(parts) + ">"
    if tag in VOID:
        return Markup(opening)
    return Markup(opening + _children(children) + f"</{tag}>")


def join(*children: object) -> Markup:
    return Markup(_children(children))


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], empty: str) -> Markup:
    """A table with a header row, or a paragraph saying there is nothing."""
    body = [el("tr", None, *(el("td", None, cell) for cell in row)) for row in rows]
    if not body:
        return el("p", {"class": "empty"}, empty)
    head = el("tr", None, *(el("th", {"scope": "col"}, h) for h in headers))
    return el("table", None, el("thead", None, head), el("tbody", None, *body))
