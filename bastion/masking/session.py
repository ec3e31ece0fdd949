"""One database session's masking: which statements may run, and how each result is masked
(pure: the door hands in SQL text, RowDescription fields and DataRow bytes).

A result column is shown in clear only when both the statement's lineage and the column's
origin in the RowDescription say it is clean; a count that does not match masks everything.
Every other column whose type may hold free text is scanned by the content detectors, unless
a `clean` rule declares the column it comes from clean.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from pglast.parser import ParseError

from bastion.masking.catalog import Catalog, catalog_data, verdicts
from bastion.masking.copyplan import plan_copy
from bastion.masking.copyrows import CopyFormat
from bastion.masking.freetext import Scan, family
from bastion.masking.lineage import Analyzer, Col, Refused, Source, statements
from bastion.masking.policy import MaskingPolicy
from bastion.masking.rows import RowError, mask_run
from bastion.masking.scanguard import Budget
from bastion.masking.settings import set_refusal, show_refusal
from bastion.masking.subject import SubjectRows, column_at
from bastion.masking.values import TEXT_LIKE, Masker, masker
from bastion.pgwire import Field
from bastion.sqlparse.tree import Node, def_elems, unwrap

# Statements that read nothing and change nothing a check relies on: SHOW, transaction control,
# and what connection pools send when they hand a connection back (DISCARD, DEALLOCATE).
HARMLESS = frozenset({"VariableShowStmt", "TransactionStmt", "DiscardStmt", "DeallocateStmt"})
PLAN_CACHE = 2048
MAX_STATEMENTS = 1000  # statements in one simple Query; each is planned and tracked
_ONE = "a prepared statement holds one statement: send one statement at a time"
_LENGTH = struct.Struct("!i")


@dataclass(frozen=True)
class Plan:
    """What a statement returns: its analysed columns, or None for SHOW, SET, BEGIN, EXPLAIN."""

    columns: tuple[Col, ...] | None
    copy: CopyFormat | None = None  # a COPY TO STDOUT: how its CopyData rows are written
    setting_params: frozenset[int] = frozenset()  # $n passed to current_setting as a name


@dataclass
class ResultMask:
    """How one result's DataRows are masked, and what the audit trail says about it."""

    maskers: dict[int, Masker]
    masked: list[str]  # the masked columns' names, for the query log
    # Per scanned column, how often each detector fired (counts only, never values).
    detected: dict[str, dict[str, int]] = field(default_factory=dict)
    subjects: list[SubjectRows] = field(default_factory=list)  # set by the session's Flow
    budget: Budget = field(default_factory=Budget)  # the checks the scanned columns may cost
    _by_formats: dict[tuple[int, ...], dict[int, Masker]] = field(default_factory=dict)

    def for_formats(self, formats: tuple[int, ...]) -> dict[int, Masker]:
        """The maskers for rows in these result formats (a Bind's: none, one for all, or one
        per column): a scanned column reads binary values in their own layout."""
        if not any(formats):
            return self.maskers
        found = self._by_formats.get(formats)
        if found is None:
            found = {index: mask.in_format(_binary(formats, index)) if isinstance(mask, Scan)
                     else mask for index, mask in self.maskers.items()}  # fmt: skip
            self._by_formats[formats] = found
        return found

    def fired(self) -> dict[str, dict[str, int]]:
        """The columns where a detector fired, with its counts."""
        return {name: dict(counts) for name, counts in self.detected.items() if counts}

    def snapshot(self) -> ResultMask:
        """A copy for the query log, its counts fixed as they are now."""
        return replace(self, detected=self.fired(), _by_formats={})

    def restart(self) -> None:
        """Counts start again for a new statement using this (cached) mask."""
        for counts in self.detected.values():
            counts.clear()
        self.budget.restart()


def _binary(formats: tuple[int, ...], index: int) -> bool:
    if len(formats) == 1:
        return formats[0] == 1
    return index < len(formats) and formats[index] == 1


@dataclass
class Masking:
    catalog: Catalog
    policy: MaskingPolicy
    key: bytes
    week: str
    search_path: tuple[str, ...] = ("public",)
    _plans: OrderedDict[str, tuple[Plan, ...] | Refused] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self.styles: dict[Source, str] = {}
        for found in verdicts(self.catalog, self.policy):
            if found.verdict.sensitive:
                source = (found.relation.relid, found.attribute.attnum)
                self.styles[source] = found.verdict.style or "full"
        for source in catalog_data(self.catalog):
            self.styles[source] = "full"
        # Columns a `clean` rule declares clean: the detectors never scan them.
        self.clean: frozenset[Source] = frozenset(
            (found.relation.relid, found.attribute.attnum)
            for found in verdicts(self.catalog, self.policy)
            if not found.verdict.sensitive and found.verdict.rule.startswith("clean = ")
        )
        # Types whose text and binary forms are the plain string (citext too), by type OID.
        self.text_types = TEXT_LIKE | {a.type_oid for r in self.catalog.relations.values()
                                       for a in r.attributes if a.text_like}  # fmt: skip
        self.analyzer = Analyzer(self.catalog, self.styles.__contains__, self.search_path)
        # Every column the snapshot knows: an origin outside it (a column added since, a new
        # table) is unproven, so masked.
        self.known: frozenset[Source] = frozenset(
            (r.relid, a.attnum) for r in self.catalog.relations.values() for a in r.attributes
        )

    # -- statements -------------------------------------------------------------------

    def plan(self, sql: str) -> Plan:
        """The plan for a Parse's one statement; Refused (with the reason) when it may not run."""
        try:
            found = self.plans(sql)
        except Refused:
            if _several(sql):
                raise Refused(_ONE) from None
            raise
        if len(found) != 1:
            raise Refused(_ONE)
        return found[0]

    def plans(self, sql: str) -> tuple[Plan, ...]:
        """A plan per statement of a simple Query's text, in order (one for text with none:
        the server answers it with EmptyQueryResponse); Refused when any may not run, for
        then none of them does."""
        cached = self._plans.get(sql)
        if cached is None:
            try:
                cached = self._analyse_all(sql)
            except Refused as exc:
                cached = exc
            except ParseError:
                cached = Refused("the statement cannot be parsed, so it cannot be checked")
            except (ValueError, LookupError, TypeError, RecursionError):
                # A tree shape the analysis does not know: nothing unproven runs.
                cached = Refused("the statement cannot be analysed, so it cannot be checked")
            self._plans[sql] = cached
            if len(self._plans) > PLAN_CACHE:
                self._plans.popitem(last=False)
        else:
            self._plans.move_to_end(sql)
        if isinstance(cached, Refused):
            raise cached
        return cached

    def _analyse_all(self, sql: str) -> tuple[Plan, ...]:
        found = statements(sql)
        if len(found) > MAX_STATEMENTS:
            raise Refused(f"more than {MAX_STATEMENTS} statements in one query are not allowed"
                          " in masked mode")  # fmt: skip
        if not found:
            return (Plan(None),)  # an empty query: drivers ping with it (JDBC's isValid)
        return tuple(self._analyse(name, node) for name, node in found)

    def _analyse(self, name: str, node: Node) -> Plan:
        if name == "SelectStmt":
            self.analyzer.setting_params.clear()
            selected = tuple(self.analyzer.select(node, None))
            return Plan(selected, setting_params=frozenset(self.analyzer.setting_params))
        if name == "VariableShowStmt":
            why = show_refusal(node)
            if why is not None:
                raise Refused(why)
        if name in HARMLESS:
            return Plan(None)
        if name == "CopyStmt":  # TO STDOUT only: planned as the SELECT it runs
            columns, copy = plan_copy(node, self.analyzer)
            return Plan(tuple(columns), copy)
        if name == "VariableSetStmt":
            why = set_refusal(node)
            if why is not None:
                raise Refused(why)
            return Plan(None)
        if name == "ExplainStmt":
            options = [opt for opt, _ in def_elems(node.get("options"))]
            if "analyze" in options:
                raise Refused("EXPLAIN ANALYZE is not allowed in masked mode")
            inner, fields = unwrap(node["query"])
            if inner != "SelectStmt":
                raise Refused(f"EXPLAIN of {inner} is not allowed in masked mode")
            self.analyzer.select(fields, None)
            return Plan(None)
        raise Refused(f"{name.removesuffix('Stmt')} statements are not allowed in masked mode")

    # -- results ----------------------------------------------------------------------

    def result(self, plan: Plan | None, fields: Sequence[Field]) -> ResultMask:
        """The maskers for a result with these columns, run under `plan` (None: not known)."""
        columns = plan.columns if plan is not None else None
        matched = columns is not None and len(columns) == len(fields)
        out = ResultMask({}, [])
        for index, f in enumerate(fields):
            col = columns[index] if matched and columns is not None else None
            sources = set(col.sources) if col is not None else set()
            origin = (f.table_oid, f.column)
            hidden = sorted(s for s in sources | {origin} if s in self.styles)
            unknown = f.table_oid != 0 and origin not in self.known
            if hidden or unknown or (columns is not None and not matched):
                style = self.styles[hidden[0]] if len(hidden) == 1 else "full"
                if style == "hash" and col is not None and col.mixed:
                    style = "full"  # a chosen value's hash would match the real one's
                out.maskers[index] = masker(style, f.type_oid, self.key, self.week,
                                            text_like=f.type_oid in self.text_types)  # fmt: skip
                out.masked.append(f.name)
            elif self._scanned(f, col):
                counts = out.detected.setdefault(f.name, {})
                out.maskers[index] = Scan(self.policy.detectors, f.type_oid, self.text_types,
                                          counts, budget=out.budget)  # fmt: skip
        return out

    def _scanned(self, f: Field, col: Col | None) -> bool:
        """Whether a column nothing masks goes through the detectors: its type may hold free
        text, and it is not a bare reference to columns a `clean` rule declares clean."""
        if family(f.type_oid, self.text_types) is None:
            return False
        if (f.table_oid, f.column) not in self.clean:
            return True
        return col is not None and not (col.bare and col.sources <= self.clean)


def _several(sql: str) -> bool:
    try:
        return len(statements(sql)) > 1
    except ParseError:
        return False


def mask_data_rows(raw: bytes | memoryview, mask: ResultMask,
                   subjects: Sequence[tuple[SubjectRows, bytes]] = (),
                   shown: dict[int, int] | None = None,
                   formats: tuple[int, ...] = ()) -> bytes:  # fmt: skip
    """A run of whole DataRow messages ('D', length, body) with their masked columns rewritten,
    the rows being in the result `formats` of their Bind (none: all text).

    In a row whose key column holds a live grant's subject (the key's bytes as the server
    sends them in this result), that grant's columns stay in clear; `shown` counts such rows
    per grant."""
    maskers = mask.for_formats(formats)
    if not subjects:
        return mask_run(raw, maskers)  # a view of the read is masked where it lies
    data = raw if isinstance(raw, bytes) else bytes(raw)
    out: list[bytes] = []
    pos, total = 0, len(data)
    while pos < total:
        if pos + 5 > total:
            raise RowError("a DataRow ends inside its length")
        (length,) = _LENGTH.unpack_from(data, pos + 1)
        end = pos + 1 + length
        if length < 6 or end > total:
            raise RowError("DataRow length does not fit its run")
        row_maskers = _for_subject(data[pos + 5 : end], maskers, subjects, shown)
        out.append(mask_run(data[pos:end], row_maskers))  # checks the row as it masks it
        pos = end
    return b"".join(out)


def _for_subject(body: bytes, maskers: dict[int, Masker],
                 subjects: Sequence[tuple[SubjectRows, bytes]],
                 shown: dict[int, int] | None) -> dict[int, Masker]:  # fmt: skip
    clear: set[int] = set()
    for rows, wanted in subjects:
        try:
            key = column_at(body, rows.key_index)
        except struct.error:
            raise RowError("DataRow ends inside a column's length") from None
        if key is not None and key == wanted:
            clear |= rows.clear
            if shown is not None:
                shown[rows.subject.grant_id] = shown.get(rows.subject.grant_id, 0) + 1
    if not clear:
        return maskers
    return {i: m for i, m in maskers.items() if i not in clear}
