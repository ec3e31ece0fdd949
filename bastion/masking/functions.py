"""The built-in functions a masked session may call: what is allowed and why, by family (pure).

Masked mode starts from the read grant's table (bastion.sqlparse.functions.FAMILIES, every
name a PostgreSQL 15 built-in that writes nothing) and takes the families below whole, each
for the reason beside it. The lineage analysis already refuses a sensitive column as any
function's argument, so what a function computes from its arguments cannot reveal a masked
value; what is left to fear is a function that reads something no argument names: a table's
rows by name, statistics, other sessions, the server's files, settings or internals. Those
members are held back in WITHHELD, each with why. A family not taken here stays refused.
"""

from __future__ import annotations

from bastion.sqlparse.functions import FAMILIES

_ARGUMENTS = "computes only from its arguments, which the lineage checks are clean"

TAKEN: dict[str, str] = {
    "math": _ARGUMENTS,
    "random": "draws from this session's own generator",
    "string": _ARGUMENTS,
    "pattern": _ARGUMENTS,
    "date and time": _ARGUMENTS + ", or reads the clock",
    "json": _ARGUMENTS + " (a whole row as an argument is checked like its columns)",
    "array": _ARGUMENTS,
    "range": _ARGUMENTS,
    "network and uuid": _ARGUMENTS,
    "text search": _ARGUMENTS,
    "xml": _ARGUMENTS,
    "conditional and misc": _ARGUMENTS,
    "aggregate": "folds rows the query reads, and the lineage checks what it folds",
    "window": "ranks or looks across rows the query reads, and the lineage checks them",
    "set-returning": _ARGUMENTS,
    "waiting": "waits; statement_timeout bounds it, and a sensitive column may not steer it",
    "session info": "reads this session's own state",
    "privileges": "answers whether a role holds a privilege (drivers and tools ask)",
    "catalog info": "describes the database's objects, never their rows (psql's \\d, drivers)",
    "sizes and statistics": "reads how big an object is, or how often it was read or written"
    " (counters, never values)",
}
"""The read grant's families a masked session may call, and why each is safe here."""

_OTHERS = "reveals other sessions"
_INTERNALS = "reveals the server's internals"
_FILES = "reveals the server's files"
_STATISTICS = "reads statistics, which hold values of sensitive columns too"

WITHHELD: dict[str, str] = {
    "table_to_xml": "reads a table's rows by name, sensitive columns included",
    "pg_get_functiondef": "prints a function's SET clauses, which can hold a setting's value"
    " (pg_proc.proconfig is masked for the same reason)",
    "table_to_xml_and_xmlschema": "reads a table's rows by name, sensitive columns included",
    "pg_mcv_list_items": _STATISTICS,
    "pg_stat_get_activity": _OTHERS + " and their SQL",
    "pg_stat_get_backend_idset": _OTHERS,
    "pg_stat_get_progress_info": _OTHERS,
    "pg_blocking_pids": _OTHERS,
    "pg_safe_snapshot_blocking_pids": _OTHERS,
    "pg_lock_status": _OTHERS,
    "pg_prepared_xact": _OTHERS,
    "pg_current_snapshot": _OTHERS + " (their transaction ids)",
    "txid_current_snapshot": _OTHERS + " (their transaction ids)",
    "pg_last_committed_xact": _OTHERS,
    "pg_xact_status": _OTHERS,
    "txid_status": _OTHERS,
    "pg_get_multixact_members": _OTHERS,
    "pg_stat_get_wal": _INTERNALS,
    "pg_stat_get_archiver": _INTERNALS,
    "pg_conf_load_time": _INTERNALS,
    "pg_postmaster_start_time": _INTERNALS,
    "inet_server_addr": _INTERNALS + " (the target's address behind the bastion)",
    "inet_server_port": _INTERNALS + " (the target's port behind the bastion)",
    "pg_show_all_settings": "reveals every server setting, paths and file names included",
    "pg_relation_filepath": _FILES,
    "pg_relation_filenode": _FILES,
    "pg_filenode_relation": _FILES,
    "pg_tablespace_location": _FILES,
    "pg_available_extensions": _FILES + " (its extension directory)",
    "pg_available_extension_versions": _FILES + " (its extension directory)",
    "pg_extension_update_paths": _FILES + " (its extension directory)",
}
"""Members of the taken families a masked session still may not call, and why."""


def _allowed() -> dict[str, str]:
    found: dict[str, str] = {}
    for family, _, names in FAMILIES:
        if family in TAKEN:
            for name in names.split():
                if name not in WITHHELD:
                    found.setdefault(name, f"{family}: {TAKEN[family]}")
    return found


MASKED_ALLOWED: dict[str, str] = _allowed()
"""Each function (by its unqualified name, a pg_catalog built-in) a masked session may call,
and why."""


def refusal(names: list[str]) -> str | None:
    """Why a masked session may not call the function named `names`, or None."""
    name = names[-1] if names else ""
    if names[:-1] not in ([], ["pg_catalog"]) or name not in MASKED_ALLOWED:
        dotted = ".".join(names)
        why = WITHHELD.get(name)
        return f"function {dotted} is not allowed in masked mode" + (f" (it {why})" if why else "")
    return None
