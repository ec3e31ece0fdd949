"""What ordinary work sends to a masked session, and the abuse beside each relaxation: settings
(SET, SET LOCAL, RESET, set_config), the function table, several statements in one simple
Query (each result masked by its own plan) and whole-row references."""

from __future__ import annotations

import pytest

from bastion.masking.catalog import Catalog
from bastion.masking.flow import Flow, FlowError
from bastion.masking.functions import MASKED_ALLOWED, TAKEN, WITHHELD
from bastion.masking.lineage import Refused
from bastion.masking.session import Masking
from bastion.masking.settings import SETTABLE
from bastion.pgproxy.guard import masking_note
from bastion.sqlparse.functions import ALLOWED, FAMILIES
from tests.masking.test_lineage import POLICY, TABLES, VIEWS
from tests.masking.test_session import INT4, KEY, field

# The test catalog of test_lineage, with a table whose columns are all clean.
WAREHOUSES = (7, "warehouses", "r")


def masking() -> Masking:
    tables = {**TABLES, WAREHOUSES: ["id", "city", "opened"]}
    rows = [{"relid": relid, "schema": "public", "relation": name, "kind": kind, "attnum": n,
             "column_name": column, "type_oid": 25, "type_name": "text", "text_like": True}
            for (relid, name, kind), columns in tables.items()
            for n, column in enumerate(columns, 1)]  # fmt: skip
    views = [{"relid": relid, "definition": text} for relid, text in VIEWS.items()]
    catalog = Catalog.from_rows(rows, [{"child": 3, "parent": 2}], views)
    return Masking(catalog, POLICY, KEY, "2026-W47")


def allowed(sql: str) -> bool:
    try:
        masking().plans(sql)
    except Refused:
        return False
    return True


# -- settings ---------------------------------------------------------------------------


@pytest.mark.parametrize("sql", [
    "SET jit = off", "SET LOCAL statement_timeout = '5s'", "RESET jit", "SET work_mem TO '64MB'",
    "SET TIME ZONE 'UTC'", "SET DateStyle = ISO, MDY", "SET bytea_output = hex",
    "SET IntervalStyle TO DEFAULT", "SET extra_float_digits = 3", "SET lock_timeout = 100",
    "SET idle_in_transaction_session_timeout = 0", "SET application_name FROM CURRENT",
    "SET application_name = 'PostgreSQL JDBC Driver'",
    "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY, DEFERRABLE",
    "SELECT set_config('jit', 'off', false)", "SELECT pg_catalog.set_config('jit', $1, false)",
    "SELECT current_setting('jit') AS cur, set_config('jit', 'off', false) AS new",
    "SELECT set_config('statement_timeout'::text, '1s'::text, true::bool)",
    "SELECT set_config('TimeZone', 'UTC', false)",
])  # fmt: skip
def test_settings_that_shape_output_or_limits_may_be_set(sql: str) -> None:
    assert allowed(sql)


@pytest.mark.parametrize(("sql", "needle"), [
    ("SET search_path = pg_temp, public", "SET search_path"),
    ("SET LOCAL search_path = evil", "SET search_path"),
    ("SET ROLE postgres", "SET role"),
    ("SET SESSION AUTHORIZATION postgres", "SET session_authorization"),
    ("SET client_encoding = 'SJIS'", "SET client_encoding"),
    ("SET standard_conforming_strings = off", "SET standard_conforming_strings"),
    ("SET default_transaction_read_only = off", "SET default_transaction_read_only"),
    ("SET transaction_read_only = off", "SET transaction_read_only"),
    ("SET row_security = off", "SET row_security"),
    ("SET app.tenant_id = '42'", "SET app.tenant_id"),  # what row-level security reads
    ("RESET ALL", "RESET ALL"),
    ("RESET search_path", "SET search_path"),
    ("SET TRANSACTION READ WRITE", "READ WRITE"),
    ("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE",
     "READ WRITE"),
    ("SELECT set_config('search_path', 'pg_temp', false)", "set_config of search_path"),
    ("SELECT set_config('app.tenant_id', '42', false)", "set_config of app.tenant_id"),
    ("SELECT set_config('standard_conforming_strings', 'off', false)", "standard_conforming"),
    ("SELECT set_config('default_transaction_read_only', 'off', false)", "read_only"),
    ("SELECT set_config(' jit', 'off', false)", "set_config of  jit"),
    # a name that is not a constant is read as a value the server computes
    ("SELECT set_config(lower('SEARCH_PATH'), 'pg_temp', false)", "not a constant"),
    ("SELECT set_config('search_' || 'path', 'pg_temp', false)", "not a constant"),
    ("SELECT set_config($1, 'pg_temp', false)", "not a constant"),
    ("SELECT set_config(name, 'x', false) FROM customers", "not a constant"),
    ("SELECT set_config(current_setting('x'), 'pg_temp', false)", "not a constant"),
    # a cast to a type the database defined runs the database's own function
    ("SELECT set_config('jit'::evil, 'off', false)", "not a constant"),
    ("SELECT set_config('jit'::evil.text, 'off', false)", "not a constant"),
    # a value computed from data would carry it into a setting others can read
    ("SELECT set_config('application_name', email, false) FROM customers", "constant value"),
    ("SELECT set_config('application_name', (SELECT name FROM customers LIMIT 1), false)",
     "constant value"),
    ("SELECT set_config('application_name', 'x' || name, false) FROM customers",
     "constant value"),
    ("SELECT set_config('application_name', 'x'::evil, false)", "constant value"),
    ("SELECT set_config('jit', 'off')", "constant value"),
])  # fmt: skip
def test_settings_that_widen_reading_or_change_lexing_stay_refused(sql: str, needle: str) -> None:
    with pytest.raises(Refused) as caught:
        masking().plans(sql)
    assert needle in str(caught.value)


def test_every_settable_name_has_a_reason_and_none_is_guarded() -> None:
    assert all(why for why in SETTABLE.values())
    guarded = {"search_path", "role", "session_authorization", "client_encoding",
               "standard_conforming_strings", "default_transaction_read_only",
               "transaction_read_only", "row_security"}  # fmt: skip
    assert not guarded & SETTABLE.keys()
    assert all("." not in name and name == name.lower() for name in SETTABLE)


# -- functions --------------------------------------------------------------------------


def test_the_function_table_has_a_reason_for_every_family_and_holdback() -> None:
    families = {family for family, _, _ in FAMILIES}
    assert TAKEN.keys() <= families and all(TAKEN.values()) and all(WITHHELD.values())
    taken = {name for family, _, names in FAMILIES if family in TAKEN for name in names.split()}
    assert WITHHELD.keys() <= taken  # each holdback takes a name out of a taken family
    assert MASKED_ALLOWED.keys() <= ALLOWED.keys()
    assert not MASKED_ALLOWED.keys() & WITHHELD.keys()


@pytest.mark.parametrize("sql", [
    "SELECT pg_sleep(0.01)", "SELECT now(), clock_timestamp(), statement_timestamp()",
    "SELECT to_char(now(), 'YYYY-MM-DD'), format('%s-%s', 1, 2), lpad('7', 3, '0')",
    "SELECT round(avg(total_cents) / 100.0, 2), sqrt(2), power(2, 10) FROM orders",
    "SELECT g, g * 2 FROM generate_series(1, 3) AS g",
    "SELECT date_trunc('month', placed_on), count(*) FROM orders GROUP BY 1 ORDER BY 1",
    "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY total_cents) FROM orders",
    "SELECT initcap(name), split_part(name, ' ', 1), regexp_replace(name, 'a', 'b')"
    " FROM customers",
    "SELECT jsonb_build_object('id', id, 'total', total_cents) FROM orders",
    "SELECT md5(name), length(name) FROM customers",
    "SELECT has_table_privilege('customers', 'SELECT'), pg_backend_pid(), version()",
])  # fmt: skip
def test_functions_without_side_effects_are_allowed(sql: str) -> None:
    assert allowed(sql)


@pytest.mark.parametrize(("sql", "needle"), [
    ("SELECT table_to_xml('customers', true, false, '')", "reads a table's rows"),
    ("SELECT lo_get(16400)", "function lo_get"),
    ("SELECT * FROM pg_stat_get_activity(NULL)", "other sessions"),
    ("SELECT pg_lock_status()", "other sessions"),
    ("SELECT inet_server_addr()", "internals"),
    ("SELECT pg_relation_filepath('customers')", "files"),
    ("SELECT pg_read_file('/etc/hostname')", "function pg_read_file"),
    ("SELECT query_to_xml('select ssn from customers', true, false, '')", "query_to_xml"),
    ("SELECT nextval('s')", "function nextval"),
    ("SELECT pg_notify('c', 'x')", "function pg_notify"),
    ("SELECT public.now()", "function public.now"),
    ("SELECT top_customer()", "function top_customer"),
    ("SELECT pg_sleep(CASE WHEN ssn LIKE '1%' THEN 1 ELSE 0 END) FROM customers",
     "customers.ssn is sensitive"),
    ("SELECT md5(email) FROM customers", "customers.email is sensitive"),
])  # fmt: skip
def test_functions_that_reveal_or_change_what_matters_stay_refused(sql: str, needle: str) -> None:
    with pytest.raises(Refused) as caught:
        masking().plans(sql)
    assert needle in str(caught.value)


# -- several statements in one simple Query ---------------------------------------------


def test_each_statement_gets_its_own_plan() -> None:
    plans = masking().plans("begin; select count(*) from orders; select id, email from"
                            " customers; commit")  # fmt: skip
    assert [p.columns is None for p in plans] == [True, False, False, True]
    assert [c.name for c in plans[2].columns or ()] == ["id", "email"]
    assert len(masking().plans("")) == 1  # answered by EmptyQueryResponse


@pytest.mark.parametrize("sql", [
    "SELECT 1; SELECT lower(email) FROM customers",
    "SET standard_conforming_strings = off; SELECT 'a\\' , ssn FROM customers --'",
    "SET client_encoding = 'SJIS'; SELECT 1",
    "SELECT set_config('search_path', 'pg_temp', false); SELECT * FROM customers",
    "BEGIN; SET LOCAL search_path = pg_temp; SELECT note FROM orders; COMMIT",
    "SELECT id FROM customers; DELETE FROM customers",
    "SELECT id FROM customers; COPY customers FROM STDIN",
])  # fmt: skip
def test_a_string_with_any_refused_statement_runs_none_of_them(sql: str) -> None:
    assert not allowed(sql)


def test_a_query_with_too_many_statements_is_refused() -> None:
    assert len(masking().plans("SELECT 1;" * 1000)) == 1000
    with pytest.raises(Refused, match="more than 1000 statements"):
        masking().plans("SELECT 1;" * 1001)


def test_a_prepared_statement_still_holds_one_statement() -> None:
    with pytest.raises(Refused, match="one statement at a time"):
        masking().plan("SELECT 1; SELECT 2")
    with pytest.raises(Refused, match="one statement at a time"):
        masking().plan("SELECT 1; SELECT lower(email) FROM customers")


EMAIL = [field("id", 1, 1, INT4), field("email", 1, 3)]
NAME = [field("id", 1, 1, INT4), field("name", 1, 2)]


def test_each_result_of_a_simple_query_is_masked_by_its_own_plan() -> None:
    flow = Flow(masking())
    flow.query("SELECT id, name FROM customers; SELECT id, email FROM customers; SELECT 1")
    assert flow.row_description(NAME)
    first = flow.rows_mask()  # nothing masked by origin; the name is text, so scanned
    assert first is not None and first.masked == [] and list(first.maskers) == [1]
    flow.completed()
    assert flow.row_description(EMAIL)
    mask = flow.rows_mask()
    assert mask is not None and mask.masked == ["email"]
    flow.completed()
    # The third statement's result is not the second's: a name in it is not masked by origin.
    assert flow.row_description([field("?column?", 0, 0, INT4)])
    assert flow.rows_mask() is None
    flow.completed()
    flow.ready()
    assert not flow.queue


def test_a_second_result_with_the_first_plan_would_be_caught() -> None:
    """The plan of the first statement (id, name) must not serve the second (id, email): the
    columns' origins mask email whichever plan meets it."""
    flow = Flow(masking())
    flow.query("SELECT id, name FROM customers; SELECT id, name FROM customers")
    flow.row_description(NAME)
    flow.completed()
    flow.row_description(EMAIL)  # the server says column 2 is customers.email
    mask = flow.rows_mask()
    assert mask is not None and mask.masked == ["email"]


def test_an_error_in_the_middle_ends_the_rest() -> None:
    flow = Flow(masking())
    flow.query("SELECT 1; SELECT 1/0; SELECT id, email FROM customers")
    flow.row_description([field("?column?", 0, 0, INT4)])
    flow.completed()
    flow.error()
    flow.ready()
    assert not flow.queue


def test_more_results_than_statements_end_the_session() -> None:
    flow = Flow(masking())
    flow.query("SELECT id FROM customers")
    flow.row_description([field("id", 1, 1, INT4)])
    flow.completed()
    with pytest.raises(FlowError):
        flow.row_description(EMAIL)


# -- whole-row references ---------------------------------------------------------------


@pytest.mark.parametrize("sql", [
    "SELECT count(w.*) FROM warehouses w",
    "SELECT row_to_json(w) FROM warehouses w",
    "SELECT to_jsonb(w), to_json(w.*) FROM warehouses AS w",
    "SELECT w FROM warehouses w",
    "SELECT w.* FROM warehouses w",
    "SELECT ROW(w.*) FROM warehouses w",
    "SELECT row_to_json(s) FROM (SELECT id, name FROM customers) s",
    "WITH s AS (SELECT id, total_cents FROM orders) SELECT jsonb_agg(s) FROM s",
    "SELECT count(c.*) FROM (SELECT id FROM customers) c",
    "SELECT json_agg(g) FROM generate_series(1, 3) g",
])  # fmt: skip
def test_whole_rows_of_clean_relations_are_answered(sql: str) -> None:
    assert allowed(sql)


@pytest.mark.parametrize("sql", [
    "SELECT count(c.*) FROM customers c",
    "SELECT count(*) FROM customers c WHERE c IS NOT NULL",
    "SELECT row_to_json(c) FROM customers c",
    "SELECT to_jsonb(o.*) FROM orders o",
    "SELECT c FROM customers c",
    "SELECT c::text FROM customers c",
    "SELECT ROW(c.*) FROM customers c",
    "SELECT row_to_json(v) FROM customer_contacts v",  # through a view
    "WITH s AS (SELECT * FROM customers) SELECT to_jsonb(s) FROM s",  # through a CTE
    "SELECT to_jsonb(s) FROM (SELECT id, ssn FROM customers) s",  # through a subquery
    "SELECT row_to_json(s.*) FROM (SELECT name AS n, email AS e FROM customers) s",
    "SELECT (SELECT count(x.*) FROM customers x WHERE x.id = w.id) FROM warehouses w",
    "SELECT count(*) FROM warehouses w, customers c GROUP BY ROW(w.*, c.*)",
    "SELECT to_jsonb(w) FROM warehouses w JOIN customers c ON to_jsonb(c) IS NOT NULL",
    "SELECT * FROM warehouses w, LATERAL (SELECT row_to_json(c) FROM customers c) l",
])  # fmt: skip
def test_whole_rows_holding_a_sensitive_column_are_refused(sql: str) -> None:
    with pytest.raises(Refused, match="is sensitive"):
        masking().plans(sql)


def test_the_query_log_notes_every_masked_result_of_a_simple_query() -> None:
    flow = Flow(masking())
    flow.query("SELECT id, email FROM customers; SELECT id, phone FROM customers")
    flow.row_description(EMAIL)
    first = flow.rows_mask()
    flow.completed()
    flow.row_description([field("id", 1, 1, INT4), field("phone", 1, 4)])
    second = flow.rows_mask()
    assert first is not None and second is not None
    assert masking_note(second, {}, [first]) == '{"masked": ["email", "phone"]}'
