"""The read-only policy: which parsed statements a `read` grant lets through, and why not.

Fail closed: a statement is allowed only when a rule here knows it to be read-only; every
other statement is refused with a short reason naming what it would change.

This classifier is the first and clearer layer, not the only one. For a `read` grant the
proxy also runs the upstream session with `default_transaction_read_only = on`, and that
setting is the backstop for writes no parser can see: a query calling a user-defined function
that writes, an operator or cast backed by one, or a trigger. PostgreSQL refuses those itself
with SQLSTATE 25006. That is why the rules below also guard the setting (SET, RESET ALL,
DISCARD ALL, READ WRITE transactions, set_config) as carefully as the writes themselves, and
why a query may call only the functions and operators on the allow-list in `functions`: a
function that runs SQL text (ts_rewrite, ts_stat, query_to_xml) could lift the setting from
inside a statement that looks like a read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import lexing
from .functions import (
    function_refusal,
    operator_refusal,
    search_path_refusal,
    set_config_refusal,
)
from .nodes import PLANNED_KINDS, READ_KINDS, kind_refusal
from .tags import command_tag
from .tree import Node, const_value, def_elems, string_list, truth, unwrap

GUARD = "would lift the read-only guard"
_GUARD_SETTINGS = frozenset({"default_transaction_read_only", "transaction_read_only"})
_IDENTITY_SETTINGS = {"role": "ROLE", "session_authorization": "SESSION AUTHORIZATION"}
_MULTI_SETTINGS = {
    "transaction": "SET TRANSACTION",
    "session characteristics": "SET SESSION CHARACTERISTICS AS TRANSACTION",
}
_DATA = frozenset(
    {
        "InsertStmt",
        "UpdateStmt",
        "DeleteStmt",
        "MergeStmt",
        "TruncateStmt",
        "RefreshMatViewStmt",
    }
)
_DATA_MODIFYING = frozenset({"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"})
_ROLES = frozenset(
    {
        "CreateRoleStmt",
        "AlterRoleStmt",
        "AlterRoleSetStmt",
        "DropRoleStmt",
        "GrantStmt",
        "GrantRoleStmt",
        "ReassignOwnedStmt",
        "DropOwnedStmt",
        "AlterDefaultPrivilegesStmt",
    }
)
_SCHEMA = frozenset(
    {
        "IndexStmt",
        "ViewStmt",
        "RuleStmt",
        "CompositeTypeStmt",
        "RenameStmt",
        "CommentStmt",
        "SecLabelStmt",
        "ImportForeignSchemaStmt",
    }
)
_SCHEMA_PREFIXES = ("Create", "Alter", "Drop", "Define")
_SPECIAL: dict[str, str] = {
    "DoStmt": "DO runs code that can write",
    "CallStmt": "CALL runs a procedure that can write",
    "VacuumStmt": "{tag} is a maintenance command that writes",
    "ClusterStmt": "CLUSTER rewrites a table",
    "ReindexStmt": "REINDEX rebuilds indexes",
    "CheckPointStmt": "CHECKPOINT is a server maintenance command",
    "LoadStmt": "LOAD loads a library into the server",
    "LockStmt": "LOCK TABLE takes locks that can block writers",
    "NotifyStmt": "NOTIFY sends a message to other sessions",
    "AlterSystemStmt": "ALTER SYSTEM changes the server configuration",
    "ExecuteStmt": "EXECUTE of a prepared statement cannot be checked; use the extended protocol",
}
_LOCKS = {
    "LCS_FORUPDATE": "FOR UPDATE",
    "LCS_FORNOKEYUPDATE": "FOR NO KEY UPDATE",
    "LCS_FORSHARE": "FOR SHARE",
    "LCS_FORKEYSHARE": "FOR KEY SHARE",
}


def refusal(kind: str, node: Node) -> str | None:
    """Why the statement `kind` (fields `node`) is refused under a read grant; None if allowed."""
    rule = _RULES.get(kind)
    if rule is not None:
        return rule(node)
    return _generic_refusal(kind, node)


def depends_on_values(node: Node) -> bool:
    """Whether a query's verdict reads a constant's value (set_config's setting name), so that
    it may not stand for other texts of the same shape."""
    stack: list[Any] = [node]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            call = item.get("FuncCall") if len(item) == 1 else None
            if type(call) is dict and string_list(call.get("funcname"))[-1:] == ["set_config"]:
                return True
            stack.extend(item.values())
        elif type(item) is list:
            stack.extend(item)
    return False


def _generic_refusal(kind: str, node: Node) -> str:
    tag = command_tag(kind, node)
    special = _SPECIAL.get(kind)
    if special is not None:
        return special.format(tag=tag)
    if kind in _DATA:
        return f"{tag} changes data"
    if kind in _ROLES:
        return f"{tag} changes roles or privileges"
    if kind in _SCHEMA or kind.startswith(_SCHEMA_PREFIXES):
        return f"{tag} changes the schema"
    return f"{tag} is not known to be read-only"


def _inner(node: Node, key: str) -> str | None:
    """The refusal for a statement nested under `key` (a cursor's, PREPARE's or COPY's query)."""
    nested = node.get(key)
    if not isinstance(nested, dict):
        return f"the nested {key} could not be read"
    return refusal(*unwrap(nested))


def _select(node: Node) -> str | None:
    """SELECT, VALUES and TABLE: no INTO, no row locks, no data-modifying WITH, no bad calls,
    and only node kinds on the allow-list (`nodes.READ_KINDS`)."""
    return _walk_refusal(node, READ_KINDS)


def _walk_refusal(node: Node, kinds: dict[str, str]) -> str | None:
    """Every nested node is visited (subqueries, CTEs, set operations, FROM functions), with a
    stack rather than recursion, since a query can nest deeper than Python's recursion limit.
    A node's own fields are checked before its children, so a SELECT's INTO or FOR UPDATE is
    named before anything inside it."""
    planned = kinds is PLANNED_KINDS
    stack: list[Any] = [node]
    while stack:
        item = stack.pop()
        children = item
        if type(item) is dict:
            operator = item.get("A_Expr") if len(item) == 1 else None
            if type(operator) is dict:
                reason = operator_refusal(string_list(operator.get("name")), operator.get("kind"))
                if reason is not None:
                    return reason
            reason = _select_node_refusal(item, kinds, planned)
            if reason is not None:
                return reason
            children = item.values()
        for child in children:
            if type(child) is dict or type(child) is list:
                stack.append(child)
    return None


def _node_kind_refusal(name: str, kinds: dict[str, str], planned: bool) -> str | None:
    """A node's own kind: a data-modifying WITH query, or a kind not on the allow-list."""
    if name in _DATA_MODIFYING and not planned:
        return f"a data-modifying WITH query ({command_tag(name, {})}) changes data"
    return kind_refusal(name, kinds)


def _select_node_refusal(fields: Node, kinds: dict[str, str], planned: bool) -> str | None:
    if len(fields) == 1:
        ((name, value),) = fields.items()
        # A node is {Kind: {fields}}, its kind CamelCase; a one-field dict of fields is not.
        if type(value) is dict and name[:1].isupper():
            reason = _node_kind_refusal(name, kinds, planned)
            if reason is not None:
                return reason
    if "funcname" in fields:
        reason = _call_refusal(fields)
        if reason is not None:
            return reason
    reason = _operator_fields_refusal(fields)
    if reason is not None or planned:
        return reason
    if fields.get("intoClause"):
        return "SELECT INTO creates a table"
    if "lockingClause" in fields:
        return f"SELECT {_lock_words(fields['lockingClause'])} locks rows"
    return None


def _operator_fields_refusal(fields: Node) -> str | None:
    for key in ("operName", "useOp"):  # x = ANY (SELECT ...); ORDER BY x USING op
        if key in fields:
            reason = operator_refusal(string_list(fields[key]), "AEXPR_OP")
            if reason is not None:
                return reason
    return None


def _call_refusal(fields: Node) -> str | None:
    """A function call: on the allow-list, or set_config of an ordinary setting."""
    names = string_list(fields["funcname"])
    if names and names[-1] == "set_config" and names[:-1] in ([], ["pg_catalog"]):
        return set_config_refusal(fields.get("args"))
    return function_refusal(names)


def _lock_words(clauses: object) -> str:
    if isinstance(clauses, list) and clauses and isinstance(clauses[0], dict):
        strength = clauses[0].get("LockingClause", {}).get("strength")
        return _LOCKS.get(str(strength), "FOR UPDATE")
    return "FOR UPDATE"


def _explain(node: Node) -> str | None:
    """EXPLAIN only plans; EXPLAIN ANALYZE runs the statement, so it must be allowed itself."""
    analyze = any(
        name == "analyze" and (arg is None or truth(const_value(arg)) is not False)
        for name, arg in def_elems(node.get("options"))
    )
    if not analyze:
        # Planning runs the immutable calls it folds (and EXECUTE's parameters): the calls
        # are checked, though a write is only planned.
        nested = node.get("query")
        if not isinstance(nested, dict):
            return "the nested query could not be read"
        reason = _walk_refusal(nested, PLANNED_KINDS)
        return None if reason is None else f"EXPLAIN plans the statement: {reason}"
    reason = _inner(node, "query")
    return None if reason is None else f"EXPLAIN ANALYZE runs the statement: {reason}"


def _copy(node: Node) -> str | None:
    """COPY ... TO STDOUT of a table or an allowed query; never FROM, never a server file."""
    if node.get("is_from"):
        return "COPY FROM writes data"
    if node.get("is_program"):
        return "COPY TO PROGRAM runs a program on the database server"
    if node.get("filename"):
        return "COPY TO a file writes on the database server"
    if "query" in node:
        return _inner(node, "query")
    return None


def _lexing_set(name: str, kind: object, args: object) -> str | None:
    """client_encoding and standard_conforming_strings may only be set to what they must be."""
    values = [const_value(a) for a in args] if isinstance(args, list) else []
    if kind != "VAR_SET_VALUE" or len(values) != 1 or not isinstance(values[0], str | bool):
        return f"{name} may only be set to a constant through the bastion"
    value = values[0] if isinstance(values[0], str) else ("on" if values[0] else "off")
    return lexing.refusal(name, value)


def _variable_set(node: Node) -> str | None:
    """SET and RESET of ordinary settings; not the read-only guard, identity, or RESET ALL."""
    kind = node.get("kind")
    verb = "RESET" if kind in ("VAR_RESET", "VAR_RESET_ALL") else "SET"
    if kind == "VAR_RESET_ALL":
        return f"RESET ALL {GUARD}"
    name = str(node.get("name", "")).lower()
    if kind == "VAR_SET_MULTI":
        return _set_multi(name, node)
    if name in _GUARD_SETTINGS:
        args = node.get("args")
        strengthens = (
            kind == "VAR_SET_VALUE"
            and isinstance(args, list)
            and len(args) == 1
            and truth(const_value(args[0])) is True
        )
        return None if strengthens else f"{verb} {name} {GUARD}"
    if name in _IDENTITY_SETTINGS:
        return f"{verb} {_IDENTITY_SETTINGS[name]} changes the session's identity"
    return _value_refusal(name, kind, node.get("args"))


def _value_refusal(name: str, kind: object, args: object) -> str | None:
    """Settings whose value matters: search_path and the settings that change lexing."""
    if name in lexing.PINNED:
        return _lexing_set(name, kind, args)
    if name == "search_path" and kind == "VAR_SET_VALUE":
        values = [const_value(a) for a in args] if isinstance(args, list) else []
        return search_path_refusal([v for v in values if isinstance(v, str)])
    return None


def _set_multi(name: str, node: Node) -> str | None:
    """SET TRANSACTION / SESSION CHARACTERISTICS: allowed unless READ WRITE."""
    if name == "transaction snapshot":
        return None
    words = _MULTI_SETTINGS.get(name)
    if words is None:
        return f"SET {name.upper()} is not known to be read-only"
    return f"{words} READ WRITE {GUARD}" if _read_write(node.get("args")) else None


def _read_write(options: object) -> bool:
    """Whether transaction options ask for READ WRITE (or anything but clearly READ ONLY)."""
    return any(
        name == "transaction_read_only" and truth(const_value(arg)) is not True
        for name, arg in def_elems(options)
    )


def _transaction(node: Node) -> str | None:
    """BEGIN/COMMIT/ROLLBACK/SAVEPOINT; not READ WRITE, not two-phase commit commands."""
    tag = command_tag("TransactionStmt", node)
    if node.get("kind") in (
        "TRANS_STMT_PREPARE",
        "TRANS_STMT_COMMIT_PREPARED",
        "TRANS_STMT_ROLLBACK_PREPARED",
    ):
        return f"{tag} acts on a two-phase transaction"
    if _read_write(node.get("options")):
        return f"{tag} READ WRITE {GUARD}"
    return None


def _discard(node: Node) -> str | None:
    """DISCARD ALL resets every setting, the read-only guard included; other forms are fine."""
    if node.get("target", "DISCARD_ALL") == "DISCARD_ALL":
        return f"DISCARD ALL {GUARD}"
    return None


def _allow(node: Node) -> str | None:
    return None


_RULES: dict[str, Callable[[Node], str | None]] = {
    "SelectStmt": _select,
    "ExplainStmt": _explain,
    "CopyStmt": _copy,
    "VariableSetStmt": _variable_set,
    "VariableShowStmt": _allow,
    "TransactionStmt": _transaction,
    "DeclareCursorStmt": lambda node: _inner(node, "query"),
    "PrepareStmt": lambda node: _inner(node, "query"),
    "FetchStmt": _allow,
    "ClosePortalStmt": _allow,
    "DeallocateStmt": _allow,
    "DiscardStmt": _discard,
    "ListenStmt": _allow,
    "UnlistenStmt": _allow,
}
