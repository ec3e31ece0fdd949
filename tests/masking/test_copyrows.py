"""COPY's CopyData rows parsed and written back in text, csv and binary format: parse∘encode is
the identity, a masked field never leaks, and anything that is not one whole row of the planned
width (two rows in a message, a lying length, a stray escape) is refused."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.masking.copyrows import (
    CopyError,
    CopyFormat,
    CopyRows,
    Value,
    binary_encode,
    binary_header,
    binary_trailer,
    copy_data_run,
    csv_format,
    encode_row,
    parse_row,
)
from bastion.masking.values import full, null, partial

TEXT = CopyFormat()
CSV = csv_format()
BINARY = CopyFormat("binary")

values = st.one_of(st.none(), st.binary(max_size=40))
rows = st.lists(values, min_size=1, max_size=6)
# Delimiters COPY accepts in text format (no backslash, letter, digit, dot, CR or LF).
text_delims = st.sampled_from([b"\t", b"|", b",", b";", b" ", b"\x01", b"~"])
csv_chars = st.sampled_from([b",", b";", b"|", b"\t", b"'", b'"', b"\\", b"!"])


def message(body: bytes) -> bytes:
    return b"d" + struct.pack("!i", len(body) + 4) + body


def pg_csv(values: list[Value], fmt: CopyFormat) -> bytes:
    """A row as PostgreSQL's COPY TO writes csv: quoted only where it must be."""
    parts = []
    for v in values:
        if v is None:
            parts.append(fmt.null)
            continue
        special = (fmt.delimiter, fmt.quote, b"\n", b"\r")
        if v == fmt.null or any(c in v for c in special) or (len(values) == 1 and v == b"\\."):
            body = v.replace(fmt.escape, fmt.escape + fmt.escape) if fmt.escape != fmt.quote else v
            parts.append(fmt.quote + body.replace(fmt.quote, fmt.escape + fmt.quote) + fmt.quote)
        else:
            parts.append(v)
    return fmt.delimiter.join(parts) + b"\n"


@st.composite
def csv_formats(draw: st.DrawFn) -> CopyFormat:
    delimiter = draw(csv_chars)
    quote = draw(csv_chars.filter(lambda c: c != delimiter))
    escape = draw(st.one_of(st.just(quote), csv_chars.filter(lambda c: c != delimiter)))
    null = draw(st.sampled_from([b"", b"NULL", b"\\N", b"-"]).filter(
        lambda n: delimiter not in n and quote not in n))  # fmt: skip
    return csv_format(delimiter=delimiter, quote=quote, escape=escape, null=null)


@given(rows, text_delims)
def test_text_rows_parse_back_to_what_was_written(row: list[Value], delimiter: bytes) -> None:
    fmt = CopyFormat(delimiter=delimiter)
    assert parse_row(encode_row(row, fmt), fmt, len(row)) == row


@given(rows, csv_formats())
def test_csv_rows_parse_back_whether_quoted_always_or_as_postgres_does(
    row: list[Value], fmt: CopyFormat
) -> None:
    assert parse_row(encode_row(row, fmt), fmt, len(row)) == row
    assert parse_row(pg_csv(row, fmt), fmt, len(row)) == row


@given(rows)
def test_binary_tuples_parse_back(row: list[Value]) -> None:
    assert parse_row(encode_row(row, BINARY), BINARY, len(row)) == row


def _stream(fmt: CopyFormat, table: list[list[Value]]) -> bytes:
    if fmt.binary:
        bodies = [binary_header() + binary_encode(table[0])] + [binary_encode(r) for r in table[1:]]
        bodies.append(binary_trailer())
    elif fmt.kind == "csv":
        bodies = [pg_csv(r, fmt) for r in table]
    else:
        bodies = [encode_row(r, fmt) for r in table]
    return b"".join(message(b) for b in bodies)


def _bodies(run: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(run):
        (length,) = struct.unpack_from("!i", run, pos + 1)
        out.append(run[pos + 5 : pos + 1 + length])
        pos += 1 + length
    return out


secret = st.text('abcdefghijklmnopqrstuvwxyz@.-\\\t\n",;|', min_size=8, max_size=30).map(str.encode)
other = st.one_of(st.none(), st.text("0123456789 ", max_size=12).map(str.encode))


@settings(max_examples=60)
@given(st.sampled_from([TEXT, CSV, BINARY, csv_format(delimiter=b";", escape=b"\\")]),
       st.lists(st.tuples(other, secret, other), min_size=1, max_size=5),
       st.sampled_from([full, null, partial]))  # fmt: skip
def test_a_masked_field_never_leaks(
    fmt: CopyFormat, table: list[tuple[Value, bytes, Value]], masker: object
) -> None:
    rows_in = [list(r) for r in table]
    copy = CopyRows(fmt, 3, {1: masker})  # type: ignore[dict-item]
    out = copy_data_run(_stream(fmt, rows_in), copy)
    copy.done()
    for _, value, _ in table:
        shown = masker(value)  # type: ignore[operator]
        if shown is None or value not in shown:  # partial keeps an email's domain, by design
            assert value not in out
    bodies = _bodies(out)
    if fmt.binary:
        bodies = [bodies[0][len(binary_header()) :], *bodies[1:-1]]
    for body, row in zip(bodies, rows_in, strict=True):
        parsed = parse_row(body, fmt, 3)
        assert parsed[0] == row[0] and parsed[2] == row[2]  # the clean columns as they were
        assert parsed[1] == masker(row[1])  # type: ignore[operator]


def test_a_header_line_is_checked_and_passes_as_it_is() -> None:
    copy = CopyRows(csv_format(header=True), 2, {1: full})
    run = message(b"id,email\n") + message(b"1,jane@example.com\n")
    assert _bodies(copy_data_run(run, copy)) == [b"id,email\n", b'1,"****"\n']
    with pytest.raises(CopyError):
        CopyRows(csv_format(header=True), 2, {}).done()  # no header line at all


def test_masked_values_are_escaped_for_their_format() -> None:
    def shout(_: bytes) -> bytes:
        return b'a\tb\\c"d\ne'

    text = copy_data_run(message(b"1\tx\n"), CopyRows(TEXT, 2, {1: shout}))
    assert _bodies(text) == [b'1\ta\\tb\\\\c"d\\ne\n']
    csv = copy_data_run(message(b"1,x\n"), CopyRows(CSV, 2, {1: shout}))
    assert _bodies(csv) == [b'1,"a\tb\\c""d\ne"\n']
    nulled = copy_data_run(message(b"1\tx\n"), CopyRows(TEXT, 2, {1: null}))
    assert _bodies(nulled) == [b"1\t\\N\n"]


@pytest.mark.parametrize(
    ("fmt", "body", "why"),
    [
        (TEXT, b"1\tjane@example.com", "does not end a row"),
        (TEXT, b"1\ta\n2\tb\n", "raw line break"),
        (TEXT, b"1\ta\tb\n", "3 fields where 2"),
        (TEXT, b"1\t\\x41\n", "escape COPY does not write"),
        (TEXT, b"1\ta\\\n", "escape COPY does not write"),
        (CSV, b'1,"a\n', "inside quotes"),
        (CSV, b'1,"a"b\n', "after a closing quote"),
        (CSV, b'1,a"b\n', "unquoted"),
        (CSV, b"1,a\n2,b\n", "unquoted"),
        (CSV, b'1,"a"\n2,"b"\n', "after a closing quote"),
    ],
)
def test_what_is_not_one_whole_row_is_refused(fmt: CopyFormat, body: bytes, why: str) -> None:
    with pytest.raises(CopyError, match=why):
        CopyRows(fmt, 2, {1: full}).message(body)


def _tuple(count: int, *fields: tuple[int, bytes]) -> bytes:
    return struct.pack("!h", count) + b"".join(struct.pack("!i", n) + b for n, b in fields)


@pytest.mark.parametrize(
    ("bodies", "why"),
    [
        ([_tuple(2, (1, b"1"), (4, b"jane"))], "header is missing"),
        ([b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 1 << 16, 0)], "flags"),
        ([b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 4) + b"xxxx"], "extension"),
        ([binary_header() + _tuple(2, (1, b"1"), (99, b"jane"))], "claims 99 bytes"),
        ([binary_header() + _tuple(2, (1, b"1"), (-7, b""))], "claims -7 bytes"),
        ([binary_header() + _tuple(2, (1, b"1"), (2, b"jane"))], "bytes after"),
        ([binary_header() + _tuple(3, (1, b"1"), (1, b"j"), (1, b"x"))], "3 fields"),
        ([binary_header() + _tuple(1, (1, b"1"))], "1 fields"),
        ([binary_header() + _tuple(-2)], "negative"),
        ([binary_header() + binary_trailer(), _tuple(2, (1, b"1"), (1, b"j"))], "after the"),
    ],
)
def test_binary_rows_that_lie_about_lengths_are_refused(bodies: list[bytes], why: str) -> None:
    copy = CopyRows(BINARY, 2, {1: full})
    with pytest.raises(CopyError, match=why):
        copy_data_run(b"".join(message(b) for b in bodies), copy)


def test_binary_needs_its_trailer_before_copydone() -> None:
    copy = CopyRows(BINARY, 2, {1: full})
    copy_data_run(message(binary_header() + _tuple(2, (1, b"1"), (4, b"jane"))), copy)
    with pytest.raises(CopyError, match="trailer"):
        copy.done()
    copy_data_run(message(binary_trailer()), copy)
    copy.done()


def test_a_run_holding_another_message_type_is_refused() -> None:
    with pytest.raises(CopyError, match="other than CopyData"):
        copy_data_run(message(b"1\ta\n") + b"D\x00\x00\x00\x06\x00\x00", CopyRows(TEXT, 2, {}))


def test_unmask_positions_are_shown_in_clear_only_in_their_rows() -> None:
    def clear(row: list[Value]) -> frozenset[int]:
        return frozenset({1}) if row[0] == b"4711" else frozenset()

    copy = CopyRows(TEXT, 2, {1: full}, clear)  # type: ignore[arg-type]
    out = copy_data_run(message(b"4711\tjane@x.org\n") + message(b"4712\tjohn@x.org\n"), copy)
    assert _bodies(out) == [b"4711\tjane@x.org\n", b"4712\t****\n"]
