"""Which rows of a result belong to an unmask grant's subject: only a key proven to come from
the same occurrence of the same table, compared in the format the server sends."""

from __future__ import annotations

import struct

import pytest

from bastion.masking.lineage import Analyzer, Col
from bastion.masking.rows import RowError, data_row
from bastion.masking.session import Masking, mask_data_rows
from bastion.masking.subject import Subject, column_at, key_bytes, resolve, subject_rows
from bastion.pgwire import Field
from tests.masking.test_lineage import CATALOG, POLICY, SENSITIVE

INT4, TEXT = 23, 25
KEYS = ("public.customers.id", "orders.customer_id")


def subject(columns: list[str]) -> Subject:
    return resolve(CATALOG, 7, columns, KEYS, ("customers.id", "4711"))


def fields_for(sql: str) -> tuple[list[Col], list[Field]]:
    cols = Analyzer(CATALOG, SENSITIVE.__contains__).statement(sql)
    fields = []
    for col in cols:
        origin = next(iter(col.sources)) if len(col.sources) == 1 else (0, 0)
        type_oid = INT4 if col.name in ("id", "customer_id") else TEXT
        fields.append(Field(col.name, origin[0], origin[1], type_oid, 4, -1, 0))
    return list(cols), fields


def test_names_resolve_to_columns_and_whole_tables() -> None:
    found = resolve(CATALOG, 7, ["customers.email", "public.payments"], KEYS,
                    ("customers.id", "4711"))  # fmt: skip
    assert (1, 3) in found.clear and {(4, n) for n in range(1, 5)} <= found.clear
    assert found.keys == {(1, 1), (2, 2)}
    assert resolve(CATALOG, 7, ["nosuch.email"], KEYS, ("customers.id", "1")).clear == set()


@pytest.mark.parametrize(
    ("sql", "clear"),
    [
        ("SELECT id, email, ssn FROM customers", {1}),
        ("SELECT c.email, c.id FROM customers c JOIN orders o ON o.customer_id = c.id", {0}),
        ("SELECT x.email, x.id FROM (SELECT * FROM customers) x", {0}),
        ("SELECT a.email, b.id FROM customers a, customers b", set()),
        ("WITH c AS (SELECT id, email FROM customers) SELECT a.email, b.id FROM c a, c b", set()),
        ("SELECT email FROM customers", set()),  # no key in the result
        ("SELECT id, email FROM customers UNION ALL SELECT id, email FROM customers", set()),
    ],
)
def test_only_a_key_from_the_same_row_proves_whose_row_it_is(sql: str, clear: set[int]) -> None:
    cols, fields = fields_for(sql)
    found = subject_rows([subject(["customers.email"])], cols, fields)
    assert {i for rows in found for i in rows.clear} == clear


def test_a_views_rows_are_never_a_subjects_rows() -> None:
    # PostgreSQL names the view, not the table beneath it, as a view column's origin.
    cols, fields = fields_for("SELECT id, email FROM customer_contacts")
    assert all(f.table_oid == 1 for f in fields)  # what lineage alone would say
    as_sent = [Field(f.name, 5, n + 1, f.type_oid, 4, -1, 0) for n, f in enumerate(fields)]
    assert subject_rows([subject(["customers.email"])], cols, as_sent) == []
    assert subject_rows([subject(["customers.email"])], cols, fields) != []


def test_the_key_is_compared_in_the_results_format() -> None:
    cols, fields = fields_for("SELECT id, email FROM customers")
    [rows] = subject_rows([subject(["customers.email"])], cols, fields)
    assert rows.key(()) == b"4711" and rows.key((1,)) == struct.pack("!i", 4711)
    assert rows.key((1, 0)) == struct.pack("!i", 4711) and rows.key((0, 1)) == b"4711"
    assert key_bytes("4711", 20, 1) == struct.pack("!q", 4711)
    assert key_bytes("not a number", INT4, 0) is None
    assert key_bytes("99999999999", INT4, 1) is None
    assert key_bytes("0E984725-C51C-4BF4-9960-E1C80E27ABA0", 2950, 0) == (
        b"0e984725-c51c-4bf4-9960-e1c80e27aba0")  # fmt: skip
    assert key_bytes("x", 1042, 0) is None  # padded: never compared
    assert key_bytes("2026-01-01", 1082, 0) is None  # a date: not a key we compare


def test_column_at_reads_one_column() -> None:
    body = data_row([b"4711", None, b"x"])
    assert column_at(body, 0) == b"4711" and column_at(body, 1) is None
    assert column_at(body, 2) == b"x" and column_at(body, 5) is None


def test_a_subjects_rows_in_clear_and_a_damaged_run_refused() -> None:
    masking = Masking(CATALOG, POLICY, b"k" * 32, "2026-W47")
    sql = "SELECT id, email FROM customers"
    cols, fields = fields_for(sql)
    mask = masking.result(masking.plan(sql), fields)
    [rows] = subject_rows([subject(["customers.email"])], cols, fields)
    run = b"".join(
        b"D" + (len(b) + 4).to_bytes(4, "big") + b
        for b in (
            data_row([b"4711", b"jane@example.com"]),
            data_row([b"4712", b"john@example.com"]),
        )
    )
    shown: dict[int, int] = {}
    out = mask_data_rows(run, mask, [(rows, b"4711")], shown)
    assert b"jane@example.com" in out and b"john@" not in out and shown == {7: 1}
    for damaged in (run[:-1], run[:3], run + b"D\xff\xff\xff\xff"):
        with pytest.raises(RowError):
            mask_data_rows(damaged, mask, [(rows, b"4711")], {})
