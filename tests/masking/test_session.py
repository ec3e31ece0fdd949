"""A session's masking decisions: statement allowlist, lineage and origin cross-checked per
column, DataRows rewritten, detectors as the last net."""

from __future__ import annotations

import json

import pytest

from bastion.masking.classify import Rules
from bastion.masking.lineage import Refused
from bastion.masking.policy import MaskingPolicy
from bastion.masking.rows import columns, data_row
from bastion.masking.session import Masking, Plan, mask_data_rows
from bastion.pgwire import Field
from tests.masking.test_lineage import CATALOG, POLICY

KEY = b"k" * 32
TEXT, INT4, DATE = 25, 23, 1082


def session() -> Masking:
    return Masking(CATALOG, POLICY, KEY, "2026-W47")


def field(name: str, table: int = 0, column: int = 0, type_oid: int = TEXT) -> Field:
    return Field(name, table, column, type_oid, -1, -1, 0)


def message(values: list[bytes | None]) -> bytes:
    body = data_row(values)
    return b"D" + (len(body) + 4).to_bytes(4, "big") + body


def test_a_projection_is_masked_with_its_style_and_others_pass() -> None:
    masking = session()
    plan = masking.plan("SELECT id, name, email, ssn FROM customers")
    fields = [field("id", 1, 1, INT4), field("name", 1, 2), field("email", 1, 3),
              field("ssn", 1, 5)]  # fmt: skip
    result = masking.result(plan, fields)
    assert result.masked == ["email", "ssn"]
    rows = message([b"4711", b"Jane Doe", b"jane.doe@example.com", b"123-45-6789"]) * 2
    out = mask_data_rows(rows, result)
    first = columns(out[5 : 1 + int.from_bytes(out[1:5], "big")])
    assert first == [b"4711", b"Jane Doe", b"j*******@example.com", b"***-**-6789"]
    assert out.count(b"j*******@example.com") == 2


def test_origin_masks_what_lineage_did_not_see_and_unknown_relations_are_masked() -> None:
    masking = session()
    plan = masking.plan("SELECT id, name FROM customers")
    # The server says column 2 came from customers.email (e.g. a catalog changed meanwhile).
    result = masking.result(plan, [field("id", 1, 1, INT4), field("name", 1, 3)])
    assert result.masked == ["name"]
    unknown = masking.result(None, [field("x", 99999, 1), field("y", 1, 0)])
    assert unknown.masked == ["x", "y"]  # a temp table, and a whole row


def test_a_column_count_that_does_not_match_masks_everything() -> None:
    masking = session()
    plan = masking.plan("SELECT id FROM customers")
    result = masking.result(plan, [field("id", 1, 1, INT4), field("extra")])
    assert result.masked == ["id", "extra"]


def test_non_text_types_become_null() -> None:
    masking = session()
    plan = Plan((masking.plan("SELECT phone FROM customers").columns or ())[:1])
    result = masking.result(plan, [field("phone", 1, 4, DATE)])
    out = mask_data_rows(message([b"2026-01-01"]), result)
    assert columns(out[5:]) == [None]


def test_detectors_catch_what_computed_text_carries() -> None:
    masking = session()
    plan = masking.plan("SELECT 'call jane.doe@example.com' AS note, name FROM customers")
    result = masking.result(plan, [field("note"), field("name", 1, 2)])
    out = mask_data_rows(message([b"call jane.doe@example.com", b"Jane"]), result)
    assert columns(out[5:]) == [b"call j*******@example.com", b"Jane"]
    assert result.fired() == {"note": {"email": 1}} and result.masked == []


def test_a_column_clean_by_its_name_is_scanned_and_only_the_match_is_masked() -> None:
    """customers.name says nothing by its name: today's main sent it as it is."""
    masking = session()
    plan = masking.plan("SELECT id, name FROM customers")
    result = masking.result(plan, [field("id", 1, 1, INT4), field("name", 1, 2)])
    note = b"contact me at jane@example.com, +31 6 1234 5678"
    out = mask_data_rows(message([b"12345678901", note]), result)
    assert columns(out[5:]) == [b"12345678901", b"contact me at j***@example.com, +31 6 **** **78"]
    assert result.fired() == {"name": {"email": 1, "phone": 1}}
    result.restart()
    assert result.fired() == {}


def test_a_clean_rule_and_a_type_without_text_are_not_scanned() -> None:
    policy = MaskingPolicy(rules=Rules(sensitive=POLICY.rules.sensitive,
                                       clean=("customers.name",)))  # fmt: skip
    masking = Masking(CATALOG, policy, KEY, "2026-W47")
    plan = masking.plan("SELECT id, name, name || '' AS copy FROM customers")
    fields = [field("id", 1, 1, INT4), field("name", 1, 2), field("copy")]
    result = masking.result(plan, fields)
    assert sorted(result.maskers) == [2]  # only the computed copy: it is no bare reference
    value = b"jane@example.com"
    out = mask_data_rows(message([value, value, value]), result)
    assert columns(out[5:]) == [value, value, b"j***@example.com"]


def test_binary_results_are_scanned_in_their_own_layout() -> None:
    masking = session()
    plan = masking.plan("SELECT id, name FROM customers")
    result = masking.result(plan, [field("id", 1, 1, INT4), field("name", 1, 2, 3802)])
    jsonb = b'\x01{"note": "mail jane@example.com", "n": 4111111111111111}'
    out = mask_data_rows(message([b"\x00\x00\x00\x01", jsonb]), result, formats=(1,))
    masked = columns(out[5:])[1]
    assert masked is not None and masked[:1] == b"\x01"
    assert json.loads(masked[1:]) == {"note": "mail j***@example.com", "n": None}
    text = mask_data_rows(message([b"1", jsonb[1:]]), result)  # the same in text format
    assert columns(text[5:])[1] == masked[1:]


@pytest.mark.parametrize(
    ("sql", "needle"),
    [
        ("COPY customers FROM STDIN", "only COPY ... TO STDOUT is allowed"),
        ("DO $$ BEGIN END $$", "Do statements are not allowed"),
        ("LISTEN c", "Listen statements"),
        ("NOTIFY c, 'x'", "Notify statements"),
        ("SET search_path = evil", "SET search_path is not allowed"),
        ("SET ROLE postgres", "SET role is not allowed"),
        ("EXPLAIN ANALYZE SELECT id FROM customers", "EXPLAIN ANALYZE"),
        ("CREATE TEMP TABLE t AS SELECT ssn FROM customers", "CreateTableAs statements"),
        ("SELECT 1 /* ; */; SELECT ssn -- '", "one statement at a time"),
        ("SELEC email FROM customers", "cannot be parsed"),
        ("PREPARE p AS SELECT email FROM customers", "Prepare statements"),
    ],
)  # fmt: skip
def test_statements_outside_the_allowlist_are_refused(sql: str, needle: str) -> None:
    with pytest.raises(Refused) as caught:
        session().plan(sql)
    assert needle in str(caught.value)


def test_allowed_statements_without_results_to_trace() -> None:
    masking = session()
    for sql in ("SHOW timezone", "BEGIN", "COMMIT", "SET application_name = 'x'",
                "EXPLAIN SELECT id FROM customers"):  # fmt: skip
        assert masking.plan(sql).columns is None
    with pytest.raises(Refused, match="WHERE"):
        masking.plan("EXPLAIN SELECT id FROM customers WHERE email = 'x'")
    with pytest.raises(Refused, match="WHERE"):  # refusals are cached too
        masking.plan("EXPLAIN SELECT id FROM customers WHERE email = 'x'")


@pytest.mark.parametrize("sql", ["", " ;", "DISCARD ALL", "DEALLOCATE ALL", "SHOW search_path",
                                 "BEGIN READ ONLY", "RESET application_name"])  # fmt: skip
def test_what_drivers_and_pools_send_is_allowed(sql: str) -> None:
    assert session().plan(sql).columns is None


@pytest.mark.parametrize("sql", ["RESET ALL", "RESET search_path", "SET LOCAL role = x"])
def test_resetting_what_the_checks_rely_on_is_refused(sql: str) -> None:
    with pytest.raises(Refused):
        session().plan(sql)
