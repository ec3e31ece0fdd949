"""The content detectors over free text: what they find and hide in place, what ordinary text
they leave alone, that every finding lies where the compiled scanner looks (Hypothesis), and
that JSON, jsonb and arrays stay valid in text and binary form."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.masking.detect import (
    DEFAULT,
    KINDS,
    NATIONAL_IDS,
    Detectors,
    candidates,
    find,
)
from bastion.masking.freetext import Scan, family, scan_reason
from bastion.masking.hiding import mask_text
from bastion.masking.policy import check_kinds

ALL = Detectors(KINDS)

FOUND = [
    ("contact me at jane@example.com, +31 6 1234 5678",
     "contact me at j***@example.com, +31 6 **** **78", {"email": 1, "phone": 1}),
    ("card 4111-1111-1111-1111 on file", "card ****-****-****-1111 on file", {"card": 1}),
    ("ssn 123-45-6789.", "ssn ***-**-****.", {"us.ssn": 1}),
    ("BSN 111222333 checked", "BSN ********* checked", {"nl.bsn": 1}),
    ("IBAN DE89 3704 0044 0532 0130 00 please", "IBAN DE** **** **** **** **** 00 please",
     {"iban": 1}),
    ("GB82WEST12345698765432", "GB******************32", {"iban": 1}),
    ("call (212) 555-0143 or 020 7946 0958", "call (***) ***-**43 or *** **** **58",
     {"phone": 2}),
    ("mobiel 06-12345678", "mobiel **-******78", {"phone": 1}),
    ("from 203.0.113.7 and 2001:db8::1.", "from ***.*.***.* and ****:***::*.",
     {"ipv4": 1, "ipv6": 1}),
    ("x@y.io wrote", "*@y.io wrote", {"email": 1}),
    ("jöhn.dœ@exämple.de", "j******@exämple.de", {"email": 1}),
]  # fmt: skip

ORDINARY = [
    "order #48213 shipped 2024-01-15 10:30 for EUR 1.234,56",
    "ORD-20240115-0042 total 1999.00 at 12:30:45",
    "placed 15.01.2024 12:00, invoice 2024-000123, qty 1000000",
    "tracking 1Z999AA10123456784 via UPS, 3 parcels",
    "build 4.18.0-477.10.1 on kernel 5.15.0-91, version 1.2.3.4.5",
    "paid 12,345,678.90 USD on 2026-11-30T23:59:59Z",
    "room 101, floor 3, ext. 4471, meeting 09:00-10:30",
    "SKU AB12-CD34, ISBN 978-3-16-148410-0",
    "uptime 1234567 seconds, 99.95% available",
    "see ticket SUP-1234 and PR #8812; hash 9f86d081884c7d65",
    "temperature 21.5 C, humidity 45%, pressure 1013.25 hPa",
]


@pytest.mark.parametrize(("text", "masked", "counts"), FOUND)
def test_each_match_is_hidden_where_it_stands(text: str, masked: str,
                                              counts: dict[str, int]) -> None:  # fmt: skip
    seen: dict[str, int] = {}
    assert mask_text(text, ALL, seen) == masked
    assert seen == counts
    assert len(masked) == len(text)  # characters are replaced one for one


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert find(text, ALL) == []


def test_detectors_not_turned_on_find_nothing() -> None:
    only_email = Detectors(("email",))
    assert mask_text("jane@example.com, 4111 1111 1111 1111", only_email) == (
        "j***@example.com, 4111 1111 1111 1111"
    )
    assert find("1 85 05 78 006 084 36 or 111222333", Detectors(("us.ssn",))) == []
    with pytest.raises(ValueError, match="not a detector"):
        check_kinds(["email", "zz.nothing"])


# -- the compiled scanner's reference is sound -------------------------------------------------

PII = ["jane@example.com", "+31 6 1234 5678", "06-12345678", "(212) 555-0143", "020 7946 0958",
       "4111 1111 1111 1111", "5500-0000-0000-0004", "123-45-6789", "111222333", "1112.22.333",
       "NL91 ABNA 0417 1643 00", "DE89370400440532013000", "203.0.113.7", "2001:db8::1",
       "::ffff:192.0.2.1", "fe80::1", "2001:0db8:0000:0000:0000:ff00:0042:8329",
       "x@y.io"]  # fmt: skip
NOISE = [
    " ",
    ",",
    ".",
    "-",
    ":",
    "@",
    "(",
    ")",
    "+",
    "/",
    "a",
    "Z",
    "7",
    "42",
    "é",
    "\n",
    '"',
    "\\",
]
TEXTS = st.lists(st.sampled_from(PII + NOISE + ORDINARY), max_size=10).map("".join)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(TEXTS)
def test_every_finding_lies_where_the_scanner_sends_values(text: str) -> None:
    """A value the compiled scanner lets through unread must hold nothing a detector finds."""
    if find(text, ALL):
        assert candidates(text.encode()) & ALL.classes


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(TEXTS)
def test_masked_text_holds_no_detected_value(text: str) -> None:
    masked = mask_text(text, ALL)
    for hit in find(text, ALL):
        assert masked[hit.start : hit.end] != text[hit.start : hit.end]
    assert len(masked) == len(text)


# -- values in each type's form ------------------------------------------------------------------

DOC = {"note": "call +31 6 1234 5678", "mail": "jane@example.com", "card": 4111111111111111,
       "tags": ["iban NL91 ABNA 0417 1643 00", "fine"], "escaped": "jane\u0040example.com \n\t",
       "jane@example.com": "as a key", "amount": 12.5, "ok": True, "none": None}  # fmt: skip
SECRETS = ["1234 5678", "jane@", "4111111111111111", "0417 1643"]


def scan(type_oid: int, value: bytes, binary: bool = False) -> bytes | None:
    return Scan(Detectors(DEFAULT), type_oid, set(), {}, binary=binary)(value)


@pytest.mark.parametrize("escape", [False, True])
def test_json_and_jsonb_stay_valid_json(escape: bool) -> None:
    text = json.dumps(DOC, ensure_ascii=escape).replace("@", "\\u0040" if escape else "@")
    for type_oid, binary, prefix in ((114, False, b""), (3802, False, b""), (114, True, b""),
                                     (3802, True, b"\x01")):  # fmt: skip
        out = scan(type_oid, prefix + text.encode(), binary)
        assert out is not None and out.startswith(prefix)
        doc = json.loads(out[len(prefix) :])
        shown = json.dumps(doc)
        assert not any(secret in shown for secret in SECRETS), shown
        assert doc["amount"] == 12.5 and doc["ok"] is True and doc["tags"][1] == "fine"
        assert doc["card"] is None and doc["note"] == "call +31 6 **** **78"


def test_an_unknown_jsonb_version_is_null() -> None:
    assert scan(3802, b'\x02{"a": "jane@example.com"}', binary=True) is None


def binary_array(element: int, values: list[bytes | None]) -> bytes:
    head = struct.pack("!iiIii", 1, int(None in values), element, len(values), 1)
    return head + b"".join(struct.pack("!i", -1) if v is None else struct.pack("!i", len(v)) + v
                           for v in values)  # fmt: skip


def test_arrays_stay_valid_in_text_and_binary_form() -> None:
    literal = b'{"mail jane@example.com",plain,NULL,"say \\"hi\\" +31 6 1234 5678"}'
    assert (
        scan(1009, literal)
        == b'{"mail j***@example.com",plain,NULL,"say \\"hi\\" +31 6 **** **78"}'
    )
    out = scan(1009, binary_array(25, [b"jane@example.com", None, b"fine"]), binary=True)
    assert out == binary_array(25, [b"j***@example.com", None, b"fine"])
    jsonb = scan(3807, binary_array(3802, [b'\x01{"a": "jane@example.com"}']), binary=True)
    assert jsonb == binary_array(3802, [b'\x01{"a": "j***@example.com"}'])
    assert scan(1009, b"\x00\x00\x00\x01garbage jane@example.com", binary=True) is None


def test_values_that_cannot_be_read_are_never_sent_as_they_are() -> None:
    assert scan(25, b"\xff\xfe jane@example.com") == b"****"
    assert scan(16385, b"\x00\x01jane@example.com\x00", binary=True) is None  # a composite
    assert scan(199, b'{"{\\"a\\": \\"jane@example.com\\"}"}') is None  # json[] as text
    assert scan(16385, b"(jane@example.com,1)") == b"(j***@example.com,1)"  # a record as text


def test_the_type_decides_what_is_scanned() -> None:
    citext = 16400
    assert [family(oid, {citext}) for oid in (25, 1043, 1042, 19, 705, citext)] == ["text"] * 6
    assert family(114, set()) == "json" and family(3802, set()) == "jsonb"
    assert family(1009, set()) == "array" and family(16385, set()) == "other"
    for no_text in (16, 17, 20, 21, 23, 700, 701, 1700, 1082, 1114, 1184, 2950, 869, 650, 1007):
        assert family(no_text, set()) is None
    assert scan_reason(23, "integer", set(), None) == (False, "integer holds no free text")
    assert scan_reason(25, "text", set(), "clean = 'notes'")[0] is False
    assert scan_reason(25, "text", set(), None)[0] is True


def test_every_national_id_named_is_one_python_stdnum_checks() -> None:
    for kind in NATIONAL_IDS:
        assert find("nothing here", Detectors((kind,))) == []
