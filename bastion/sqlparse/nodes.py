"""The parse-node kinds a read grant's statement may contain: an allow-list, each with why.

The read guard walks every node of a query (and of the statement an EXPLAIN plans). A node
kind not named here is refused, whatever it is: grammar newer than the target's (pglast reads
PostgreSQL 18's; PostgreSQL 15 reads `json_scalar(...)` or `merge_action()` as plain calls
that may find a function of the database's own), or anything no one has yet checked.

The list was drawn from the nodes that the test suites' accepted reads produce (tests/sqlparse,
tests/pgproxy, tests/masking, psql's describe commands and the drivers' type lookups), each
then checked by hand against what PostgreSQL 15 runs for it. What a node calls is checked
elsewhere: functions by name against `functions.ALLOWED`, operators by symbol, qualified names
and field selections, overloads and casts against the target's names (`disguise`).
"""

from __future__ import annotations

from .functions import WRITE_HINT

# (family, why its kinds are harmless in a read, the kinds).
FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("query", "the shape of a SELECT: what it reads, joins, groups, orders and returns", """
        SelectStmt ResTarget RangeVar RangeSubselect JoinExpr CommonTableExpr SortBy
        WindowDef GroupingSet GroupingFunc List A_Star"""),
    ("sampling", "TABLESAMPLE's method is a built-in, or an extension's C handler (a SQL"
        " function cannot return tsm_handler)", "RangeTableSample"),
    ("values", "a constant or a parameter", "A_Const String Integer Float Boolean BitString"
        " ParamRef"),
    ("references", "a column, a field, a subscript or a whole row; a qualified name or field"
        " that may be a call is proven by `disguise`", "ColumnRef A_Indirection A_Indices"),
    ("calls", "an operator or a function call: checked against the allow-lists", """
        A_Expr FuncCall NamedArgExpr SubLink"""),
    ("logic", "PostgreSQL's own AND/OR/NOT, CASE, COALESCE, GREATEST/LEAST, IS [NOT] NULL and"
        " IS [NOT] TRUE, with no function of their own", """
        BoolExpr CaseExpr CaseWhen CoalesceExpr MinMaxExpr NullTest BooleanTest"""),
    ("constructors", "builds an array or a row from its elements", "A_ArrayExpr RowExpr"),
    ("types", "a cast or collation (casts the database made its own are refused by"
        " `disguise`)", "TypeCast TypeName CollateClause"),
    ("functions in FROM", "the rows of a call checked against the allow-list, its column"
        " definitions, or XMLTABLE's", """
        RangeFunction ColumnDef RangeTableFunc RangeTableFuncCol"""),
    ("keywords", "CURRENT_DATE, LOCALTIME and kin: built-ins read by keyword",
        "SQLValueFunction"),
    ("xml", "PostgreSQL's XML constructors, predicates and serialization", """
        XmlExpr XmlSerialize"""),
)  # fmt: skip

READ_KINDS: dict[str, str] = {
    kind: f"{family}: {why}" for family, why, kinds in FAMILIES for kind in kinds.split()
}
"""Each node kind a read may contain, and why it is harmless."""

_PLANNED_ONLY = """
    InsertStmt UpdateStmt DeleteStmt MergeStmt MergeWhenClause OnConflictClause InferClause
    IndexElem MultiAssignRef SetToDefault ExecuteStmt CreateTableAsStmt"""
PLANNED_KINDS: dict[str, str] = {
    **READ_KINDS,
    **dict.fromkeys(
        _PLANNED_ONLY.split(), "plain EXPLAIN only plans the statement: nothing is written"
    ),
}
"""What a plain EXPLAIN may plan: a write's nodes too, since planning writes nothing (but
it does run the immutable calls it folds, so calls are checked all the same)."""


def kind_refusal(kind: str, allowed: dict[str, str]) -> str | None:
    """Why a node of this kind is refused; None when it is on the list `allowed`."""
    if kind in allowed:
        return None
    if kind.startswith("Json") or kind == "MergeSupportFunc":
        return (f"{kind} is newer SQL syntax that PostgreSQL 15 reads as a call to a"
                " function that may be the database's own" + WRITE_HINT)  # fmt: skip
    return f"{kind} is not a kind of SQL the read guard knows to be harmless" + WRITE_HINT
