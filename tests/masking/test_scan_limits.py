"""What one scanned value may cost: the red team's inputs (patterns that backtracked
quadratically, a megabyte of phone-like text) finish and are masked right; a value costs at
most CHECKS_PER_VALUE validated candidates and a result CHECKS_PER_RESULT, counted call by
call, never timed; past either the value is masked whole and counted as too_much_to_scan.
And JSON-style escapes in plain text are read as what they spell."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from stdnum import iban, luhn

from bastion.masking import detect
from bastion.masking.detect import DEFAULT, KINDS, NATIONAL_IDS, Detectors
from bastion.masking.freetext import Scan
from bastion.masking.hiding import mask_text
from bastion.masking.scanguard import CHECKS_PER_VALUE, SCAN_LIMIT, TOO_MUCH, Budget, TooMuchToScan

ALL = Detectors(KINDS)
CARD = " card 4111 1111 1111 1111"
HIDDEN = " card **** **** **** 1111"
BIG = 120_000  # on main the IPv6 case alone took minutes at this size


def scan(value: str | bytes, detectors: Detectors = ALL, oid: int = 25,
         counts: dict[str, int] | None = None) -> bytes | None:  # fmt: skip
    raw = value.encode() if isinstance(value, str) else value
    return Scan(detectors, oid, set(), {} if counts is None else counts)(raw)


# -- the red team's inputs finish, and are masked right -----------------------------------------

RED_TEAM = [
    # _IPV6 gave back the hex run one character at a time, re-reading the digits each time
    ("::" + "1" * BIG + "g, seen from 2001:db8::1", "::" + "1" * BIG + "g, seen from ****:***::*"),
    # _RUN re-read a run of "(" or "." without a digit from every position in it
    ("(" * BIG + CARD, "(" * BIG + HIDDEN),
    ("." * BIG + CARD, "." * BIG + HIDDEN),
    ("call (" + "(" * BIG + "." * BIG + CARD, "call (" + "(" * BIG + "." * BIG + HIDDEN),
    # _ID gave back a separated run from each of its starts; past READS_PER_VALUE groups of
    # digits the value is masked whole
    ("1 " * 5_000 + "ab, BSN 111222333", "1 " * 5_000 + "ab, BSN *********"),
    ("1 " * (BIG // 2) + "ab, BSN 111222333", "****"),
    # _ibans joined every prefix of a run of groups
    ("NL12 " + "ab " * (BIG // 3) + "; DE89370400440532013000",
     "NL12 " + "ab " * (BIG // 3) + "; DE******************00"),
    # an IPv4 look-alike run, and an email look-alike one
    ("1" * BIG + "a 203.0.113.7", "1" * BIG + "a ***.*.***.*"),
    ("a" * BIG + " jane@example.com", "a" * BIG + " j***@example.com"),
    # a run of backslashes, each of which could start an escape
    ("\\" * BIG + "x jane\\u0040example.com", "\\" * BIG + "x ****\\u002a*******.***"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "masked"), RED_TEAM, ids=range(len(RED_TEAM)))
def test_pathological_text_finishes_and_is_masked_right(text: str, masked: str) -> None:
    assert scan(text) == masked.encode()


def test_a_megabyte_of_phone_numbers_is_masked_whole_and_counted() -> None:
    phones = "+1 555 123 4567 " * (SCAN_LIMIT // 16)  # exactly SCAN_LIMIT: scanned, too costly
    assert scan(phones * 4) == b"****"  # a megabyte: longer than SCAN_LIMIT, not read
    counts: dict[str, int] = {}
    assert scan(phones, counts=counts) == b"****"
    assert counts == {TOO_MUCH: 1}
    counts = {}
    assert scan(phones + "x", counts=counts) == b"****"  # longer than SCAN_LIMIT: not read
    assert counts == {TOO_MUCH: 1}
    assert scan(phones * 2, Detectors(DEFAULT), oid=114) is None  # JSON: NULL, never as it is
    assert scan("x" * (SCAN_LIMIT + 1)) == b"x" * (SCAN_LIMIT + 1)  # no candidate: as it is


# -- validator calls are counted, never timed ---------------------------------------------------


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """How often each validator is really called (each wrapped, still doing its work)."""
    seen: dict[str, int] = {}

    def counting(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            seen[name] = seen.get(name, 0) + 1
            return real(*args)

        return call

    monkeypatch.setattr(detect, "_phone", counting("phone", detect._phone))
    monkeypatch.setattr(detect, "_valid", counting("national", detect._valid))
    monkeypatch.setattr(luhn, "is_valid", counting("card", luhn.is_valid))
    monkeypatch.setattr(iban, "is_valid", counting("iban", iban.is_valid))
    monkeypatch.setattr(ipaddress, "ip_address", counting("ip", ipaddress.ip_address))
    yield seen


COSTLY = [
    "+1 555 123 4567 " * 5_000,
    "4111 1111 1111 1111, " * 5_000,
    "1234 5678 " * 10_000,
    "BSN 111222333 or 1112.22.333; " * 5_000,
    "203.0.113.7 2001:db8::1 " * 5_000,
    "NL91 ABNA 0417 1643 00, " * 5_000,
    "06-12345678 (212) 555-0143 123-45-6789 " * 5_000,
]


@pytest.mark.parametrize("text", COSTLY, ids=range(len(COSTLY)))
def test_a_value_costs_a_bounded_number_of_validator_calls(
    calls: dict[str, int], text: str
) -> None:
    counts: dict[str, int] = {}
    assert scan(text, counts=counts) == b"****"
    assert counts == {TOO_MUCH: 1}
    checks = sum(n for name, n in calls.items() if name != "national")
    assert checks + calls.get("national", 0) > 0 and checks <= CHECKS_PER_VALUE
    # a national-id candidate is tried by each national id turned on
    assert calls.get("national", 0) <= CHECKS_PER_VALUE * len(NATIONAL_IDS)


def test_a_result_shares_one_budget_and_each_value_starts_afresh(calls: dict[str, int]) -> None:
    budget, counts = Budget(per_value=5, per_result=12), dict[str, int]()
    note = "call +31 6 1234 5678 or +44 20 7946 0958"  # two phones: two checks
    masker = Scan(Detectors(("phone",)), 25, set(), counts, budget=budget)
    out = [masker(note.encode()) for _ in range(8)]
    assert out[:6] == [b"call +31 6 **** **78 or +44 2* **** **58"] * 6
    assert out[6:] == [b"****"] * 2 and counts == {"phone": 12, TOO_MUCH: 2}
    assert calls["phone"] <= 12 + 2  # the checks past the result's budget are never made
    budget.restart()  # the next statement
    assert masker(note.encode()) == out[0]
    few = Budget(per_value=1)
    assert Scan(Detectors(("phone",)), 25, set(), {}, budget=few)(note.encode()) == b"****"


def test_find_alone_is_bounded_too() -> None:
    with pytest.raises(TooMuchToScan):
        mask_text("jane@example.com " * (CHECKS_PER_VALUE + 1), ALL)


# -- JSON-style escapes in plain text -----------------------------------------------------------

ESCAPED = [
    ("jane.doe\\u0040example.com", "****.***\\u002a*******.***", {"email": 1}),
    ("4111\\u00201111\\u00201111\\u00201111", "****\\u002a****\\u002a****\\u002a****",
     {"card": 1}),
    ("call +31\\u00206\\u00201234\\u00205678!", "call +**\\u002a*\\u002a****\\u002a****!",
     {"phone": 1}),
    ("jane@example.com and jane\\u0040example.com",
     "j***@example.com and ****\\u002a*******.***", {"email": 2}),
    ("a path C:\\\\u0040home is fine", "a path C:\\\\u0040home is fine", {}),
]  # fmt: skip


@pytest.mark.parametrize(("text", "masked", "found"), ESCAPED)
def test_escapes_in_plain_text_are_read_as_what_they_spell(
    text: str, masked: str, found: dict[str, int]
) -> None:
    counts: dict[str, int] = {}
    assert scan(text, counts=counts) == masked.encode()
    assert counts == found


def test_json_held_as_text_stays_json_and_holds_nothing_personal() -> None:
    doc = {"mail": "jane.doe@example.com", "card": "4111 1111 1111 1111", "n": 1, "ok": "fine"}
    text = json.dumps(doc, separators=(",", ":")).replace("@", "\\u0040").replace(" ", "\\u0020")
    out = scan(text)
    assert out is not None
    shown = json.loads(out)
    assert shown["ok"] == "fine" and shown["n"] == 1
    assert "jane" not in shown["mail"] and "1111" not in shown["card"][:14], shown
    literal = '{"jane.doe\\\\u0040example.com",plain}'  # a text[] literal doubles backslashes
    out = scan(literal, oid=1009)
    assert out is not None and b"jane.doe" not in out and out.endswith(b",plain}")


# -- the normalised view: Unicode spaces and dashes, fullwidth forms, zero-width characters ----

FOLDED = [
    ("call +31\u00a06\u00a01234\u00a05678 today", "phone"),
    ("call +31\u202f6\u20091234\u30005678 today", "phone"),
    ("card 4111\u20131111\u20141111\u20131111 on file", "card"),
    ("mail jane\uff20example.com please", "email"),
    ("mail jane\u200b@example.com please", "email"),
    ("tel \uff0b\uff13\uff11 \uff16 \uff11\uff12\uff13\uff14 \uff15\uff16\uff17\uff18", "phone"),
    ("ssn 123\u201345\u20136789", "us.ssn"),
]


@pytest.mark.parametrize(("text", "kind"), FOLDED)
def test_what_only_the_normalised_view_shows_hides_the_whole_value(text: str, kind: str) -> None:
    counts: dict[str, int] = {}
    out = scan(text, Detectors(DEFAULT), counts=counts)
    assert out == re.sub(r"[^\W_]", "*", text).encode()  # every letter and digit starred
    assert counts.get(kind) == 1, counts


def test_ordinary_text_beyond_ascii_is_left_alone() -> None:
    for text in ("Straße 12, 2\u00a0°C, €1.234,56 \u2013 prima", "\u3042\u3000\uff11\uff12\u3002",
                 "l\u2019été à 10\u202fh"):  # fmt: skip
        assert scan(text, Detectors(DEFAULT)) == text.encode()


def test_an_undashed_ssn_after_its_label_is_found() -> None:
    counts: dict[str, int] = {}
    ssn = Detectors(("us.ssn",))
    assert (
        scan("SSN: 123456789, ref 123456789", ssn, counts=counts)
        == b"SSN: *********, ref 123456789"
    )
    assert counts == {"us.ssn": 1}
    assert scan("Social Security No. 536904512", ssn) == b"Social Security No. *********"
