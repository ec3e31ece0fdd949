"""Free text in results: which columns are scanned (the type decides first, then a `clean`
rule), and the masker that hides each detected match inside a value, in each type's text and
binary form, so a note stays readable, JSON stays valid JSON and an array a valid array (pure).

A value that cannot be read (not UTF-8, a binary layout that does not add up) is never sent
as it is: a text value becomes "****", anything else NULL.
"""

from __future__ import annotations

import json
import re
import struct
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Set

from bastion.masking import _fastrows
from bastion.masking.detect import ESCAPE, UNICODE, Detectors, find
from bastion.masking.hiding import mask_text
from bastion.masking.scanguard import SCAN_LIMIT, TOO_MUCH, Budget, TooMuchToScan
from bastion.masking.values import full

# Types that hold no free text: numbers, booleans, dates and times, uuids, network and
# geometric types, bytea, bit strings, ranges over those, the reg* names of catalog objects,
# and arrays of all of these (by type OID).
NO_TEXT = frozenset({
    16, 17, 18, 20, 21, 22, 23, 24, 26, 27, 28, 29, 30, 600, 601, 602, 603, 604, 628, 650,
    700, 701, 718, 774, 790, 829, 869, 1082, 1083, 1114, 1184, 1186, 1266, 1560, 1562, 1700,
    2202, 2203, 2204, 2205, 2206, 2950, 3220, 3734, 3769, 3904, 3906, 3908, 3910, 3912, 3926,
    4089, 4096, 5069,
    1000, 1001, 1002, 1005, 1006, 1007, 1010, 1011, 1012, 1013, 1016, 1017, 1018, 1019, 1020,
    1021, 1022, 1027, 1028, 1040, 1041, 1115, 1182, 1183, 1185, 1187, 1231, 1270, 1561, 1563,
    2951, 651, 775, 791, 3221, 3905, 3907, 3909, 3911, 3913, 3927,
})  # fmt: skip
TEXT = frozenset({25, 1043, 1042, 19, 705})  # text, varchar, bpchar, name, unknown
JSON, JSONB = 114, 3802
ARRAYS = {1009: 25, 1015: 1043, 1014: 1042, 1003: 19, 199: JSON, 3807: JSONB}  # by element
_I32 = struct.Struct("!i")
_NULL = _I32.pack(-1)
# Linear: applied only to valid JSON (the server's, or text json.loads accepted), where each
# string is read once from its opening quote; every run is possessive.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]++|\\.)*+"|-?[0-9]++(?:\.[0-9]++)?+(?:[eE][+\-]?[0-9]++)?+')


def family(type_oid: int, text_types: Set[int]) -> str | None:
    """How a type's values are scanned: "text", "json", "jsonb", "array" (of text or JSON),
    "other" (any type not known to hold no text: enums, composites, domains, xml, hstore), or
    None for a type that holds no free text."""
    if type_oid in NO_TEXT:
        return None
    if type_oid in TEXT or type_oid in text_types:
        return "text"
    if type_oid in (JSON, JSONB):
        return "json" if type_oid == JSON else "jsonb"
    return "array" if type_oid in ARRAYS else "other"


def scan_reason(type_oid: int, type_name: str, text_types: Set[int],
                clean_rule: str | None) -> tuple[bool, str]:  # fmt: skip
    """Whether a column nothing masks is scanned, and why, as `bastion masking show` says it."""
    kind = family(type_oid, text_types)
    if kind is None:
        return False, f"{type_name} holds no free text"
    if clean_rule is not None:
        return False, f"declared clean ({clean_rule})"
    return True, f"{type_name} may hold free text and no rule declares it clean"


class Scan:
    """The masker for one scanned column in one format: a value goes through the detectors
    only when the compiled scanner saw a candidate shape in it (`classes`; a JSON escape can
    spell any character, so it is one in every type). A value that would cost more than
    `budget` allows is masked whole and counted as TOO_MUCH."""

    def __init__(self, detectors: Detectors, type_oid: int, text_types: Set[int],
                 counts: dict[str, int], *, binary: bool = False,
                 budget: Budget | None = None) -> None:  # fmt: skip
        self.detectors, self.type_oid, self.text_types = detectors, type_oid, text_types
        self.kind = family(type_oid, text_types) or "other"
        self.counts, self.binary = counts, binary
        self.budget = budget if budget is not None else Budget()
        self.classes = detectors.classes | ESCAPE | UNICODE
        self._twin: Scan | None = None

    def in_format(self, binary: bool) -> Scan:
        """This column's masker for values in text (False) or binary (True) format."""
        if binary == self.binary:
            return self
        if self._twin is None:
            self._twin = Scan(self.detectors, self.type_oid, self.text_types, self.counts,
                              binary=binary, budget=self.budget)  # fmt: skip
        return self._twin

    def __call__(self, value: bytes) -> bytes | None:
        self.budget.start()
        return self.scan(value)

    def scan(self, value: bytes) -> bytes | None:
        """The value masked, charged to the budget of the value it is part of."""
        try:
            if len(value) > SCAN_LIMIT and _fastrows.candidates(value) & self.classes:
                raise TooMuchToScan
            return self._dispatch(value)
        except TooMuchToScan:
            self.counts[TOO_MUCH] = self.counts.get(TOO_MUCH, 0) + 1
            return full(value) if self.kind == "text" else None
        except (UnicodeDecodeError, ValueError, struct.error, RecursionError):
            return None

    def _dispatch(self, value: bytes) -> bytes | None:
        if self.kind == "text":
            return self._text(value)
        if self.kind in ("json", "jsonb"):
            return self._json(value, jsonb=self.kind == "jsonb" and self.binary)
        if self.kind == "array" and self.binary:
            return self._binary_array(value)
        if self.binary or ARRAYS.get(self.type_oid) in (JSON, JSONB):
            return self._opaque(value)
        return self._text(value, whole=None)  # a text literal keeps its punctuation

    # -- forms -------------------------------------------------------------------------

    def _text(self, value: bytes, whole: Callable[[bytes], bytes] | None = full) -> bytes | None:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            return whole(value) if whole is not None else None
        if whole is not None and _is_json(text):
            return self._json(value, jsonb=False)  # JSON held as text stays valid JSON
        shapes = _fastrows.candidates(value)
        masked = mask_text(text, self.detectors, self.counts, shapes, self.budget)
        if shapes & ESCAPE:
            masked = self._escaped(text, masked)
        return value if masked is text else masked.encode("utf-8")

    def _escaped(self, text: str, masked: str) -> str:
        """`masked` with what only the text's JSON-style escapes spell hidden too: the text
        is read with each escape as its character, and a match there that holds an escape
        is hidden in `masked` where it stands (an escape in it as the escaped "*")."""
        decoded, keys, spans = _unescape(text)
        if not keys:
            return masked
        shapes = _fastrows.candidates(decoded.encode("utf-8", "surrogatepass"))
        chars: list[str] | None = None
        for hit in find(decoded, self.detectors, shapes, self.budget):
            first = bisect_left(keys, hit.start)
            if first == len(keys) or keys[first] >= hit.end:
                continue  # no escape in it: the text itself holds it, and it is hidden
            chars = chars if chars is not None else list(masked)
            self.counts[hit.kind] = self.counts.get(hit.kind, 0) + 1
            lo, hi = _where(keys, spans, hit.start)[0], _where(keys, spans, hit.end - 1)[1]
            last = bisect_left(keys, hit.end)
            _hide_span(chars, lo, hi, spans[first:last])
        return masked if chars is None else "".join(chars)

    def _json(self, value: bytes, *, jsonb: bool) -> bytes | None:
        if jsonb:
            if value[:1] != b"\x01":
                return None  # a jsonb layout this proxy does not know
            body = self._json(value[1:], jsonb=False)
            return None if body is None else b"\x01" + body
        text = value.decode("utf-8")
        masked = _JSON_TOKEN.sub(self._json_token, text)
        return value if masked == text else masked.encode("utf-8")

    def _json_token(self, match: re.Match[str]) -> str:
        token, budget = match.group(), self.budget
        if token[0] != '"':
            masked = mask_text(token, self.detectors, self.counts, budget=budget)
            return token if masked is token else "null"  # a number can't hold a star
        if "\\" not in token:
            return '"' + mask_text(token[1:-1], self.detectors, self.counts, budget=budget) + '"'
        plain = json.loads(token)
        masked = mask_text(plain, self.detectors, self.counts, budget=budget)
        return token if masked is plain else json.dumps(masked, ensure_ascii=False)

    def _binary_array(self, value: bytes) -> bytes | None:
        """ndim, flags, element type, (size, lower bound) per dimension, then each element
        as a length and its bytes; every element scanned in its own type's binary form."""
        ndim, _flags, element = struct.unpack_from("!iiI", value, 0)
        pos = 12 + 8 * ndim
        if not 0 <= ndim <= 6 or pos > len(value):
            return None
        inner = Scan(self.detectors, element, self.text_types, self.counts, binary=True,
                     budget=self.budget)  # fmt: skip
        if inner.kind == "array":
            return None
        out = [value[:pos]]
        while pos < len(value):
            (size,) = _I32.unpack_from(value, pos)
            pos += 4
            if size == -1:
                out.append(_NULL)
                continue
            if size < 0 or pos + size > len(value):
                return None
            masked = inner.scan(value[pos : pos + size])
            pos += size
            out.append(_NULL if masked is None else _I32.pack(len(masked)) + masked)
        return b"".join(out)

    def _opaque(self, value: bytes) -> bytes | None:
        """A layout this proxy does not take apart: sent as it is when nothing is found in
        it, else NULL (the whole value, since a part can't be masked in place)."""
        text = value.decode("latin-1")
        if "\\u" in text:
            return None  # escaped characters (JSON in an array literal) can't be read here
        masked = mask_text(text, self.detectors, self.counts, budget=self.budget)
        return value if masked is text else None


def _is_json(text: str) -> bool:
    """Whether a text value is a JSON object, array or string (as `payload::text` gives)."""
    if text.lstrip(" \t\r\n")[:1] not in ("{", "[", '"'):
        return False
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


# A JSON-style escape, however many backslashes stand before it (a literal in an array or a
# record doubles them): read as its character, erring towards finding more. Linear: a start
# only where a run of backslashes starts, the run possessive and the rest fixed.
_ESCAPED = re.compile(r"(?<!\\)\\++u([0-9A-Fa-f]{4})")
_STAR = re.compile(r"[^\W_]")
Span = tuple[int, int]


def _unescape(text: str) -> tuple[str, list[int], list[Span]]:
    """`text` with each escape read as its character; where each escape's character stands
    in that reading (ascending), and the escape's span in `text`."""
    out, keys, spans, at, shift = [], [], [], 0, 0
    for m in _ESCAPED.finditer(text):
        out += [text[at : m.start()], chr(int(m.group(1), 16))]
        keys.append(m.start() - shift)
        spans.append(m.span())
        shift += m.end() - m.start() - 1
        at = m.end()
    out.append(text[at:])
    return "".join(out), keys, spans


def _where(keys: list[int], spans: list[Span], index: int) -> Span:
    """The span in the text of the character at `index` of its unescaped reading."""
    found = bisect_right(keys, index) - 1
    if found < 0:
        return index, index + 1
    if keys[found] == index:
        return spans[found]
    at = spans[found][1] + index - keys[found] - 1
    return at, at + 1


def _hide_span(chars: list[str], lo: int, hi: int, escapes: list[Span]) -> None:
    """Letters and digits in chars[lo:hi] starred, each escape in it made the escaped "*"."""
    at = lo
    for start, end in [*escapes, (hi, hi)]:
        chars[at:start] = _STAR.sub("*", "".join(chars[at:start]))
        if end > start:
            chars[end - 4 : end] = "002a"
        at = end
