"""Command tags ("SELECT", "CREATE TABLE", "SET") for parse-tree nodes, for logs and reasons."""

from __future__ import annotations

import re
from collections.abc import Callable

from .tree import Node

_FIXED: dict[str, str] = {
    "SelectStmt": "SELECT",
    "InsertStmt": "INSERT",
    "UpdateStmt": "UPDATE",
    "DeleteStmt": "DELETE",
    "MergeStmt": "MERGE",
    "DeclareCursorStmt": "DECLARE CURSOR",
    "ClosePortalStmt": "CLOSE CURSOR",
    "VariableShowStmt": "SHOW",
    "LockStmt": "LOCK TABLE",
    "CheckPointStmt": "CHECKPOINT",
    "CreateStmt": "CREATE TABLE",
    "IndexStmt": "CREATE INDEX",
    "ViewStmt": "CREATE VIEW",
    "RuleStmt": "CREATE RULE",
    "CreatedbStmt": "CREATE DATABASE",
    "DropdbStmt": "DROP DATABASE",
    "CreateSeqStmt": "CREATE SEQUENCE",
    "AlterSeqStmt": "ALTER SEQUENCE",
    "CreateTrigStmt": "CREATE TRIGGER",
    "CreateEventTrigStmt": "CREATE EVENT TRIGGER",
    "AlterEventTrigStmt": "ALTER EVENT TRIGGER",
    "CreatePLangStmt": "CREATE LANGUAGE",
    "CreateFdwStmt": "CREATE FOREIGN DATA WRAPPER",
    "AlterFdwStmt": "ALTER FOREIGN DATA WRAPPER",
    "CreateForeignServerStmt": "CREATE SERVER",
    "AlterForeignServerStmt": "ALTER SERVER",
    "CreateAmStmt": "CREATE ACCESS METHOD",
    "CreateStatsStmt": "CREATE STATISTICS",
    "AlterStatsStmt": "ALTER STATISTICS",
    "CompositeTypeStmt": "CREATE TYPE",
    "CreateEnumStmt": "CREATE TYPE",
    "CreateRangeStmt": "CREATE TYPE",
    "CreateOpClassStmt": "CREATE OPERATOR CLASS",
    "CreateOpFamilyStmt": "CREATE OPERATOR FAMILY",
    "AlterOpFamilyStmt": "ALTER OPERATOR FAMILY",
    "AlterRoleSetStmt": "ALTER ROLE",
    "AlterDatabaseSetStmt": "ALTER DATABASE",
    "SecLabelStmt": "SECURITY LABEL",
    "RefreshMatViewStmt": "REFRESH MATERIALIZED VIEW",
    "ConstraintsSetStmt": "SET CONSTRAINTS",
    "AlterTSConfigurationStmt": "ALTER TEXT SEARCH CONFIGURATION",
    "AlterTSDictionaryStmt": "ALTER TEXT SEARCH DICTIONARY",
}

_TRANSACTION: dict[str, str] = {
    "TRANS_STMT_BEGIN": "BEGIN",
    "TRANS_STMT_START": "START TRANSACTION",
    "TRANS_STMT_COMMIT": "COMMIT",
    "TRANS_STMT_ROLLBACK": "ROLLBACK",
    "TRANS_STMT_SAVEPOINT": "SAVEPOINT",
    "TRANS_STMT_RELEASE": "RELEASE",
    "TRANS_STMT_ROLLBACK_TO": "ROLLBACK TO SAVEPOINT",
    "TRANS_STMT_PREPARE": "PREPARE TRANSACTION",
    "TRANS_STMT_COMMIT_PREPARED": "COMMIT PREPARED",
    "TRANS_STMT_ROLLBACK_PREPARED": "ROLLBACK PREPARED",
}

_OBJECTS: dict[str, str] = {
    "MATVIEW": "MATERIALIZED VIEW",
    "FDW": "FOREIGN DATA WRAPPER",
    "FOREIGN SERVER": "SERVER",
    "TSCONFIGURATION": "TEXT SEARCH CONFIGURATION",
    "TSDICTIONARY": "TEXT SEARCH DICTIONARY",
    "TSPARSER": "TEXT SEARCH PARSER",
    "TSTEMPLATE": "TEXT SEARCH TEMPLATE",
    "OPCLASS": "OPERATOR CLASS",
    "OPFAMILY": "OPERATOR FAMILY",
    "STATISTIC EXT": "STATISTICS",
    "ACCESS METHOD": "ACCESS METHOD",
}

_WORD = re.compile(r"[A-Z][a-z]*|[a-z]+")


def object_words(objtype: object) -> str:
    """`OBJECT_MATVIEW` -> "MATERIALIZED VIEW", `OBJECT_TABLE` -> "TABLE"."""
    words = str(objtype or "").removeprefix("OBJECT_").replace("_", " ")
    return _OBJECTS.get(words, words)


def _with_object(verb: str, key: str) -> Callable[[Node], str]:
    def tag(node: Node) -> str:
        words = object_words(node.get(key))
        return f"{verb} {words}" if words else verb

    return tag


def _set_tag(node: Node) -> str:
    return "RESET" if node.get("kind") in ("VAR_RESET", "VAR_RESET_ALL") else "SET"


def _create_table_as(node: Node) -> str:
    words = object_words(node.get("objtype"))
    return "CREATE TABLE AS" if words == "TABLE" else f"CREATE {words}"


_DYNAMIC: dict[str, Callable[[Node], str]] = {
    "VariableSetStmt": _set_tag,
    "TransactionStmt": lambda node: _TRANSACTION.get(str(node.get("kind")), "TRANSACTION"),
    "FetchStmt": lambda node: "MOVE" if node.get("ismove") else "FETCH",
    "VacuumStmt": lambda node: "VACUUM" if node.get("is_vacuumcmd") else "ANALYZE",
    "DiscardStmt": lambda node: str(node.get("target", "DISCARD_ALL")).replace("_", " "),
    "GrantStmt": lambda node: "GRANT" if node.get("is_grant") else "REVOKE",
    "GrantRoleStmt": lambda node: "GRANT" if node.get("is_grant") else "REVOKE",
    "CreateFunctionStmt": lambda node: (
        "CREATE PROCEDURE" if node.get("is_procedure") else "CREATE FUNCTION"
    ),
    "CreateTableAsStmt": _create_table_as,
    "DropStmt": _with_object("DROP", "removeType"),
    "AlterTableStmt": _with_object("ALTER", "objtype"),
    "RenameStmt": _with_object("ALTER", "renameType"),
    "AlterObjectSchemaStmt": _with_object("ALTER", "objectType"),
    "AlterOwnerStmt": _with_object("ALTER", "objectType"),
    "AlterFunctionStmt": _with_object("ALTER", "objtype"),
    "DefineStmt": _with_object("CREATE", "kind"),
    "CommentStmt": lambda node: "COMMENT",
}


def command_tag(kind: str, node: Node) -> str:
    """The command tag for the node `kind` with fields `node`, e.g. "CREATE TABLE"."""
    dynamic = _DYNAMIC.get(kind)
    if dynamic is not None:
        return dynamic(node)
    fixed = _FIXED.get(kind)
    if fixed is not None:
        return fixed
    return " ".join(_WORD.findall(kind.removesuffix("Stmt"))).upper()
