"""The scan's shortcuts find exactly what the plain way finds (Hypothesis): the compiled scan
that stops at the first shape a column asks for, the email search that starts at each "@",
the labelled SSN looked for only where nine digits stand in a row, the masking of matches
that do not overlap, built from slices, and the kept tail of a match found without a
pattern."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.masking import _fastrows
from bastion.masking.detect import (
    _SSN_LABELLED,
    EMAIL,
    KINDS,
    Detectors,
    Hit,
    _emails,
    _module,
    candidates,
    find,
)
from bastion.masking.hiding import _mask, _mask_overlapping, _tail_start
from bastion.masking.rows import data_row

# Pieces of free text around the shapes, their near misses, and what ends a run of each.
PIECES = [
    " ", "a", "x", "Z", "é", "ß", "@", "@@", ":", "::", ".", "..", "-", "+", "(", ")", "/",
    ",", "<", "_", "%", "\\u0040", "\\", "0", "1", "12", "123", "1234", "9999", "NL", "fe80",
    "abcdef", "DE89", "ssn", "SSN: ", "social security no. ", "123456789", "1234567890",
    "jane@example.com", "j.doe+x@mail.example.co.uk", "@example.com", "jane@", "a@b",
    "local" * 14, "+31 6 1234 5678", "06-12345678", "4111 1111 1111 1111", "123-45-6789",
    "111222333", "NL91 ABNA 0417 1643 00", "203.0.113.7", "2001:db8::1", "1:2:3:4:5:6:7:8",
    "2024-01-15 10:30", "\u00a0", "\u2013", "\u3000", "\uff20", "\ufeff", "\x00",
]  # fmt: skip
TEXT = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)
SHAPES = st.integers(1, 127)


def _scan_passes(value: bytes, wanted: int) -> bool:
    """Whether mask_run's scan step leaves `value` as it is (its fallback never called)."""
    body = data_row([value])
    row = b"D" + (len(body) + 4).to_bytes(4, "big") + body
    marked = _fastrows.mask_run(row, ((0, 4 | wanted << 8, lambda v: b"!"),))
    return marked == row


@settings(max_examples=800, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(TEXT.map(str.encode), st.binary(max_size=200)), SHAPES)
def test_a_scanned_value_goes_to_the_detectors_exactly_when_it_holds_a_wanted_shape(
    value: bytes, wanted: int
) -> None:
    assert _scan_passes(value, wanted) == (candidates(value) & wanted == 0)


@settings(max_examples=800, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(TEXT.map(str.encode), st.binary(max_size=300)))
def test_the_compiled_scanner_agrees_on_long_mixed_text(value: bytes) -> None:
    assert _fastrows.candidates(value) == candidates(value)


@settings(max_examples=800, suppress_health_check=[HealthCheck.too_slow])
@given(TEXT)
def test_the_email_search_finds_what_the_pattern_finds_everywhere(text: str) -> None:
    assert [m.span() for m in _emails(text)] == [m.span() for m in EMAIL.finditer(text)]


def test_a_local_part_longer_than_64_characters_is_cut_as_the_pattern_cuts_it() -> None:
    for text in ("a" * 80 + "@example.com", "x " + "b" * 64 + "@example.com", "@a@b.cd"):
        assert [m.span() for m in _emails(text)] == [m.span() for m in EMAIL.finditer(text)]


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(TEXT)
def test_every_labelled_ssn_is_still_found(text: str) -> None:
    ssn = _module("us.ssn")
    wanted = [(m.start(1), m.end(1)) for m in _SSN_LABELLED.finditer(text)
              if ssn.is_valid(m.group(1))]  # fmt: skip
    hits = find(text, Detectors(KINDS), candidates(text.encode()))
    found = {(h.start, h.end) for h in hits if h.kind == "us.ssn"}
    assert set(wanted) <= found


@st.composite
def hits_in(draw: st.DrawFn) -> tuple[str, list[Hit]]:
    text = draw(TEXT.filter(bool))
    kinds = ("email", "phone", "card", "iban", "us.ssn", "ipv4")
    spans = draw(st.lists(st.tuples(st.integers(0, len(text) - 1), st.integers(1, 30),
                                    st.sampled_from(kinds), st.integers(0, 3)),
                          max_size=5))  # fmt: skip
    hits = []
    for start, size, drawn, head in spans:
        end = min(len(text), start + size)
        email_ok = drawn != "email" or "@" in text[start:end]  # an email match holds its "@"
        hits.append(Hit(start, end, drawn if email_ok else "phone", head))
    return text, sorted(hits, key=lambda h: (h.start, -h.end))


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(hits_in())
def test_masking_from_slices_is_masking_in_place(case: tuple[str, list[Hit]]) -> None:
    text, hits = case
    counts: dict[str, int] = {}
    in_place: dict[str, int] = {}
    assert _mask(text, hits, counts) == _mask_overlapping(text, hits, in_place)
    assert counts == in_place


def test_a_shape_byte_anywhere_in_a_word_of_eight_is_seen() -> None:
    # The quiet stretch is skipped eight bytes at a time: a byte that starts a shape must stop
    # the skip wherever it stands in the word, and a quiet byte on either side of the range
    # ("-" and "/", ";" and "?") must not hide it.
    for filler in (b"x", b"-", b"/", b";", b"?", b"A", b"\x7f"):
        for special in (b"0", b"9", b".", b":", b"@", b"\\u", b"\xc2\xa0", b"\xef\xbc\xa0"):
            for at in range(24):
                value = filler * at + special + filler * (23 - at)
                assert _fastrows.candidates(value) == candidates(value), (filler, special, at)
                for wanted in (1, 2, 8, 16, 32, 64, 127):
                    assert _scan_passes(value, wanted) == (candidates(value) & wanted == 0)


_LAST_ALNUM = re.compile(r"[^\W_](?=[\W_]*$)")  # the pattern _tail_start replaced


def _tail_start_by_pattern(piece: str, head: int, keep: int) -> int:
    cut = len(piece)
    for _ in range(keep):
        found = _LAST_ALNUM.search(piece, head, cut)
        cut = found.start() if found is not None else head
    return cut


@settings(max_examples=800)
@given(st.one_of(TEXT, st.text(max_size=30)), st.integers(0, 8), st.integers(0, 5))
def test_the_kept_tail_starts_where_the_pattern_said(piece: str, head: int, keep: int) -> None:
    head = min(head, len(piece))
    assert _tail_start(piece, head, keep) == _tail_start_by_pattern(piece, head, keep)
