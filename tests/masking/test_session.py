"""A session's masking decisions: statement allowlist, lineage and origin cross-checked per
column, DataRows rewritten, detectors as the last net."""

from __future__ import annotations

import pytest

from bastion.masking.lineage import Refused
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
    assert columns(out[5:]) == [b"****", b"Jane"]
    assert result.detected == ["note"] and result.masked == []


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
