"""The settings a masked session may change (SET, SET LOCAL, RESET, set_config), each with why
(pure).

Deny by default: a setting is changeable only when it is named here. Each one shapes how the
server formats this session's output, or limits the session's own time and memory; none
changes which rows or columns the session can read, which objects a name resolves to, or how
the server reads SQL text. So these stay refused: search_path (a schema of the database's own
could stand in for a table or a built-in), role and session_authorization (another role's
privileges), client_encoding and standard_conforming_strings (bastion.sqlparse.lexing: the
server would read a literal where the bastion read code), default_transaction_read_only and
transaction_read_only (the upstream read-only guard), row_security, and every custom setting
with a dot in its name (row-level security policies read them with current_setting, so they
can widen what a role sees).
"""

from __future__ import annotations

from collections.abc import Callable

from bastion.sqlparse.tree import Node, const_value, def_elems, string_list

_OUTPUT = "changes how this session's own output is formatted"
_LIMIT = "limits this session's own time or memory"
_PLAN = "changes how the server plans this session's queries, not what they read"

SETTABLE: dict[str, str] = {
    "application_name": "names the session in the server's activity view and logs",
    "datestyle": _OUTPUT,
    "intervalstyle": _OUTPUT,
    "timezone": _OUTPUT,
    "extra_float_digits": _OUTPUT,
    "bytea_output": _OUTPUT,
    "lc_monetary": _OUTPUT,
    "lc_numeric": _OUTPUT,
    "lc_time": _OUTPUT,
    "statement_timeout": _LIMIT,
    "lock_timeout": _LIMIT,
    "idle_in_transaction_session_timeout": _LIMIT,
    "idle_session_timeout": _LIMIT,
    "work_mem": _LIMIT,
    "jit": _PLAN + " (asyncpg turns it off around its type introspection)",
    "default_transaction_isolation": "how strictly this session's own transactions see others",
    "transaction_isolation": "how strictly this session's own transaction sees others",
}
"""Each changeable setting (lower case, as the server compares them) and why it is harmless."""

# SET TRANSACTION / SET SESSION CHARACTERISTICS AS TRANSACTION: the modes that may be set.
_TRANSACTION_MODES = frozenset({"transaction_isolation", "transaction_deferrable"})


class SettingRefused(Exception):
    """The setting may not be changed in masked mode; the message says why."""


def set_refusal(node: Node) -> str | None:
    """Why a SET, SET LOCAL or RESET statement (a VariableSetStmt) is refused, or None."""
    kind, name = node.get("kind", ""), str(node.get("name", ""))
    if kind == "VAR_RESET_ALL":
        return "RESET ALL is not allowed in masked mode: reset the settings one by one"
    if kind == "VAR_SET_MULTI":
        return _transaction_refusal(name, node.get("args"))
    if name.lower() not in SETTABLE:
        return f"SET {name} is not allowed in masked mode"
    return None


def _transaction_refusal(name: str, args: object) -> str | None:
    """SET TRANSACTION and SET SESSION CHARACTERISTICS: isolation and DEFERRABLE may be set;
    READ ONLY may be asked for, never READ WRITE (the upstream read-only guard)."""
    if name == "TRANSACTION SNAPSHOT":
        return None  # another transaction's snapshot of the same data: reads nothing more
    if name not in ("TRANSACTION", "SESSION CHARACTERISTICS"):
        return f"SET {name} is not allowed in masked mode"
    for mode, value in def_elems(args):
        if mode == "transaction_read_only" and _truthy(value):
            continue
        if mode not in _TRANSACTION_MODES:
            return "SET TRANSACTION READ WRITE is not allowed in masked mode"
    return None


def _truthy(value: object) -> bool:
    found = const_value(value)
    return found in (1, True, "on", "true")


def set_config_refusal(args: object) -> str | None:
    """Why a call set_config(name, value, is_local) is refused, or None.

    It is SET by another name: the name must be a constant naming a changeable setting, and
    the value and is_local constants or bind parameters (asyncpg restores jit with a $1; the
    query log keeps the parameters). Nothing else: a value computed from a column or a
    sub-select could carry data into a setting others can read (application_name)."""
    items = args if isinstance(args, list) else []
    name = _constant(items[0]) if items else None
    if not isinstance(name, str):
        return "set_config with a setting name that is not a constant is not allowed in masked mode"
    if name.lower() not in SETTABLE:
        return f"set_config of {name} is not allowed in masked mode"
    if len(items) != 3 or not all(_constant_or_parameter(item) for item in items[1:]):
        return (f"set_config of {name} is allowed in masked mode only with a constant value"
                " (or a bind parameter)")  # fmt: skip
    return None


# Casts a constant may carry: to built-in types only (a cast to a type the database defined
# runs the database's own functions, which could turn 'jit' into 'search_path').
_CASTS = frozenset({"text", "varchar", "bool", "int4", "int8", "integer"})


def _uncast(node: object) -> object:
    """The node inside casts to built-in types; None for a cast to any other type."""
    while isinstance(node, dict) and "TypeCast" in node:
        cast = node["TypeCast"]
        names = string_list(cast.get("typeName", {}).get("names"))
        if len(names) not in (1, 2) or names[:-1] not in ([], ["pg_catalog"]):
            return None
        if names[-1] not in _CASTS:
            return None
        node = cast.get("arg")
    return node


def _constant(node: object) -> str | int | bool | None:
    """A constant's value, through casts such as 'jit'::text; None if it is not one."""
    return const_value(_uncast(node))


def _constant_or_parameter(node: object) -> bool:
    inner = _uncast(node)
    return isinstance(inner, dict) and ("A_Const" in inner or "ParamRef" in inner)


CUSTOM_HIDDEN = (
    "a custom setting (a name with a dot) is not shown in masked mode: ALTER DATABASE or ALTER"
    " ROLE ... SET can give every session one that holds a key"
)


def show_refusal(node: Node) -> str | None:
    """SHOW of a custom setting: refused (SHOW ALL lists no custom setting)."""
    name = str(node.get("name", ""))
    return CUSTOM_HIDDEN if "." in name else None


def setting_param(args: object, sources: Callable[[object], set[tuple[int, int]]],
                  listed: tuple[int, int] | None) -> tuple[int | None, str | None]:  # fmt: skip
    """Check current_setting's name: a constant without a dot, a parameter (its number is
    returned, to be checked at Bind), or pg_settings.name (`listed`; it lists no custom
    setting). Returns (the parameter's number, the refusal)."""
    if not isinstance(args, list) or not args:
        return None, None
    constant, param = setting_name(args[0])
    if constant is not None and "." in constant:
        return None, CUSTOM_HIDDEN
    if constant is not None or param is not None:
        return param, None
    column = _uncast(args[0])
    found = sources(column) if isinstance(column, dict) and "ColumnRef" in column else set()
    if not found or listed is None or found != {listed}:
        return None, ("current_setting takes a setting's name as a constant, a parameter or"
                      " pg_settings.name in masked mode")  # fmt: skip
    return None, None


def setting_name(arg: object) -> tuple[str | None, int | None]:
    """current_setting's first argument, under any casts: (the constant name, None), (None,
    the parameter's number), or (None, None) for anything else."""
    arg = _uncast(arg)
    if isinstance(arg, dict) and "ParamRef" in arg:
        return None, int(arg["ParamRef"].get("number", 0))
    value = const_value(arg)
    return (value, None) if isinstance(value, str) else (None, None)
