"""Hiding what the content detectors found, in place: letters and digits starred, separators
and a few characters kept, lengths unchanged (pure)."""

from __future__ import annotations

import re

from bastion.masking.detect import UNICODE, Detectors, Hit, find
from bastion.masking.scanguard import Budget, normal_view

_KEEP_TAIL = {"card": 4, "phone": 2, "iban": 2}


def _hide(piece: str, hit: Hit) -> str:
    """The match with its letters and digits starred, separators and a few characters kept."""
    if hit.kind == "email":
        local, _, domain = piece.partition("@")
        shown = local[:1] if len(local) > 2 else ""  # "x@y.com" would show it all
        return shown + "*" * (len(local) - len(shown)) + "@" + domain
    head = hit.keep_head
    cut = _tail_start(piece, head, _KEEP_TAIL.get(hit.kind, 0))
    return piece[:head] + _ALNUM.sub("*", piece[head:cut]) + piece[cut:]


def _tail_start(piece: str, head: int, keep: int) -> int:
    """Where the last `keep` letters or digits after `head` begin (`head` when fewer)."""
    cut, index = len(piece), len(piece)
    while keep and index > head:
        index -= 1
        if piece[index].isalnum():  # what [^\W_] matches
            cut, keep = index, keep - 1
    return head if keep else cut


_ALNUM = re.compile(r"[^\W_]")


def mask_text(text: str, detectors: Detectors, counts: dict[str, int] | None = None,
              shapes: int = ~0, budget: Budget | None = None) -> str:  # fmt: skip
    """`text` with every detected match hidden in place (lengths kept); `counts` adds up the
    matches per detector; `shapes` and `budget` as for find()."""
    masked = _mask(text, find(text, detectors, shapes, budget), counts)
    if shapes & UNICODE and not text.isascii():
        hidden = _hide_folded(text, masked, detectors, counts, budget)
        if hidden is not None:
            return hidden
    return masked


def _hide_folded(text: str, masked: str, detectors: Detectors, counts: dict[str, int] | None,
                 budget: Budget | None) -> str | None:  # fmt: skip
    """The text with every letter and digit starred when its normalised view holds a match
    the text itself does not show (a phone spaced with U+00A0): where the match stands in the
    text is not mapped back, so the whole value is hidden. None when there is none."""
    view = normal_view(masked)
    if view == masked:
        return None
    found = find(view, detectors, ~0, budget)
    if not found:
        return None
    if counts is not None:
        for hit in found:
            counts[hit.kind] = counts.get(hit.kind, 0) + 1
    return _ALNUM.sub("*", text)


def _mask(text: str, hits: list[Hit], counts: dict[str, int] | None) -> str:
    if not hits:
        return text
    pieces: list[str] = []
    at = 0
    for hit in hits:
        if hit.start < at:  # inside one hidden already: hidden again in place
            return _mask_overlapping(text, hits, counts)
        pieces += (text[at : hit.start], _hide(text[hit.start : hit.end], hit))
        at = hit.end
    if counts is not None:
        for hit in hits:
            counts[hit.kind] = counts.get(hit.kind, 0) + 1
    pieces.append(text[at:])
    return "".join(pieces)


def _mask_overlapping(text: str, hits: list[Hit], counts: dict[str, int] | None) -> str:
    chars, covered = list(text), -1
    for hit in hits:
        # A match inside one already hidden (a phone-shaped part of an IBAN, digits glued to
        # an email's domain) is hidden too, but counted once.
        if counts is not None and hit.end > covered:
            counts[hit.kind] = counts.get(hit.kind, 0) + 1
        chars[hit.start : hit.end] = _hide("".join(chars[hit.start : hit.end]), hit)
        covered = max(covered, hit.end)
    return "".join(chars)
