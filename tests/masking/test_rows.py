"""DataRow rewriting: masked columns replaced, the rest byte-for-byte, bad rows refused."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.masking.rows import RowError, columns, data_row, mask_run, mask_run_python
from bastion.masking.values import Masker, full, null


def mask_row(body: bytes, maskers: dict[int, Masker]) -> bytes:
    """One DataRow body through the compiled rewriter and the reference; they must agree."""
    message = b"D" + struct.pack("!i", len(body) + 4) + body
    compiled = mask_run(message, maskers)
    assert compiled == mask_run_python(message, maskers)
    return compiled[5:]


values = st.lists(st.one_of(st.none(), st.binary(max_size=40)), min_size=0, max_size=12)


@given(values, st.sets(st.integers(min_value=0, max_value=14)))
def test_masked_columns_change_and_nothing_else_does(row: list[bytes | None],
                                                     masked: set[int]) -> None:  # fmt: skip
    out = mask_row(data_row(row), {i: full for i in masked})
    expected = [v if i not in masked or v is None else full(v) for i, v in enumerate(row)]
    assert columns(out) == expected


@given(values)
def test_no_masks_is_the_same_bytes(row: list[bytes | None]) -> None:
    body = data_row(row)
    assert mask_row(body, {}) == body


def test_null_masking_writes_sql_null() -> None:
    out = mask_row(data_row([b"1", b"1990-01-01", None]), {1: null, 2: full})
    assert columns(out) == [b"1", None, None]


@pytest.mark.parametrize(
    ("body", "masked"),
    [
        (b"\x00", 0),
        (struct.pack("!h", 1), 0),
        (struct.pack("!hi", 1, 10) + b"abc", 0),
        (struct.pack("!hi", 1, -2), 0),
        (struct.pack("!hi", 2, 1) + b"a", 1),
    ],
)
def test_rows_that_do_not_add_up_to_a_masked_column_are_refused(body: bytes, masked: int) -> None:
    message = b"D" + struct.pack("!i", len(body) + 4) + body
    for rewrite in (mask_run, mask_run_python):
        with pytest.raises(RowError):
            rewrite(message, {masked: full})


def test_nothing_after_the_last_masked_column_is_walked() -> None:
    """Columns after the last masked one are copied as they came (the framing was checked
    when the message was read); nothing in them moves where the masks apply."""
    body = data_row([b"123-45-6789", b"tail"]) + b"x"
    assert mask_row(body, {0: full}) == data_row([b"****", b"tail"]) + b"x"
    assert mask_row(body, {}) == body
