"""The compiled DataRow rewriter gives the same bytes as the Python reference for any run and any
maskers, and refuses the same malformed input (Hypothesis, whole runs and damaged ones)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.masking import _fastrows
from bastion.masking.detect import Detectors, candidates
from bastion.masking.freetext import Scan
from bastion.masking.rows import RowError, data_row, mask_run, mask_run_python
from bastion.masking.values import Masker, full, keyed_hash, null, partial

# Free text with the shapes the compiled scanner looks for, and their near misses.
PIECES = [
    " ",
    "a",
    "@",
    ":",
    "::",
    ".",
    "-",
    "+",
    "(",
    ")",
    "/",
    "\\u0040",
    "\\",
    "1",
    "12",
    "123",
    "1234",
    "NL",
    "fe80",
    "jane@example.com",
    "+31 6 1234 5678",
    "06-12345678",
    "4111 1111 1111 1111",
    "123-45-6789",
    "111222333",
    "NL91 ABNA 0417 1643 00",
    "203.0.113.7",
    "2001:db8::1",
    "1:2:3:4:5:6:7:8",
    "2024-01-15 10:30",
    "é",
    "\x00",
    "\u00a0",  # what the normalised view reads differently, and near misses
    "\u00a9",
    "\u2013",
    "\u2019",
    "\u200b",
    "\u2212",
    "\u3000",
    "\u3042",
    "\uff20",
    "\uff11",
    "\uff5f",
    "\ufeff",
]
FREE_TEXT = st.lists(st.sampled_from(PIECES), max_size=12).map(lambda p: "".join(p).encode())
SCANS = [Scan(Detectors(), oid, set(), {}, binary=binary)
         for oid in (25, 114, 3802, 1009, 16385) for binary in (False, True)]  # fmt: skip

VALUES = st.one_of(
    st.none(),
    st.binary(max_size=40),
    st.text(max_size=30).map(str.encode),
    st.from_regex(r"[a-z.]{1,10}@[a-z]{1,8}\.[a-z]{2,3}", fullmatch=True).map(str.encode),
    st.from_regex(r"[+ ()0-9-]{0,20}", fullmatch=True).map(str.encode),
    st.sampled_from([b"", b"@", b"a@", b"@b", b"a@@b", b"123456", b"12345", b"\xc3\xa9@x.y"]),
    FREE_TEXT,
)
MASKERS: list[Masker] = [null, full, partial, keyed_hash(b"k" * 32, "2026-W47"),
                         lambda v: v + b"+grown", lambda v: None, *SCANS]  # fmt: skip


def message(values: list[bytes | None]) -> bytes:
    body = data_row(values)
    return b"D" + (len(body) + 4).to_bytes(4, "big") + body


def both(data: bytes, maskers: dict[int, Masker]) -> tuple[object, object]:
    outcomes: list[object] = []
    for rewrite in (mask_run, mask_run_python):
        try:
            outcomes.append(rewrite(data, maskers))
        except RowError:
            outcomes.append(RowError)
    return outcomes[0], outcomes[1]


@st.composite
def runs(draw: st.DrawFn) -> tuple[bytes, dict[int, Masker]]:
    width = draw(st.integers(0, 8))
    rows = draw(st.lists(st.lists(VALUES, min_size=width, max_size=width), max_size=6))
    chosen = draw(st.dictionaries(st.integers(0, width + 1), st.sampled_from(MASKERS)))
    return b"".join(message(r) for r in rows), chosen


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(runs())
def test_the_same_bytes_as_the_reference(case: tuple[bytes, dict[int, Masker]]) -> None:
    data, maskers = case
    compiled, reference = both(data, maskers)
    assert compiled == reference


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(runs(), st.data())
def test_damaged_runs_are_refused_alike(case: tuple[bytes, dict[int, Masker]],
                                        data: st.DataObject) -> None:  # fmt: skip
    raw, maskers = case
    if not raw:
        return
    cut = data.draw(st.integers(0, len(raw) - 1))
    flipped = bytearray(raw)
    flipped[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    for damaged in (raw[:cut], bytes(flipped), raw + b"D"):
        compiled, reference = both(damaged, maskers)
        assert compiled == reference


@given(st.binary(max_size=200), st.dictionaries(st.integers(0, 5), st.sampled_from(MASKERS)))
def test_any_bytes_at_all(raw: bytes, maskers: dict[int, Masker]) -> None:
    compiled, reference = both(raw, maskers)
    assert compiled == reference


def test_a_refused_row_names_what_is_wrong() -> None:
    good = message([b"4711", b"jane.doe@example.com"])
    with pytest.raises(RowError, match="column 2 claims more bytes"):
        mask_run(good[:15] + (100).to_bytes(4, "big") + good[19:], {1: full})
    bad_length = good[:1] + (len(good) + 10).to_bytes(4, "big") + good[5:]
    with pytest.raises(RowError, match="length does not fit"):
        mask_run(bad_length, {1: full})
    with pytest.raises(RowError, match="not a whole DataRow"):
        mask_run(b"d" + good[1:], {1: full})
    assert mask_run(good, {1: partial}) == message([b"4711", b"j*******@example.com"])


def test_a_plan_that_makes_no_sense_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        _fastrows.mask_run(b"", "not a tuple")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rise"):
        _fastrows.mask_run(b"", ((2, 1, full), (1, 1, full)))
    with pytest.raises(TypeError, match="bytes or None"):
        _fastrows.mask_run(message([b"x"]), ((0, 3, lambda v: "text"),))  # type: ignore[arg-type,return-value]


@settings(max_examples=600)
@given(st.one_of(st.binary(max_size=120), FREE_TEXT))
def test_the_compiled_scanner_sees_the_same_shapes_as_the_reference(value: bytes) -> None:
    assert _fastrows.candidates(value) == candidates(value)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(runs(), st.binary(max_size=7))
def test_a_view_of_a_read_is_masked_like_its_bytes(case: tuple[bytes, dict[int, Masker]],
                                                   before: bytes) -> None:  # fmt: skip
    # The relay masks DataRows where they lie in the read, as a memoryview slice of it.
    data, maskers = case
    view = memoryview(before + data + b"Z")[len(before) : len(before) + len(data)]
    outcomes: list[object] = []
    for given_ in (data, view):
        try:
            outcomes.append(mask_run(given_, maskers))
        except RowError:
            outcomes.append(RowError)
    assert outcomes[0] == outcomes[1]
