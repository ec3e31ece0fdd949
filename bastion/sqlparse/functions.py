"""Built-in functions that write or act on other sessions, refused in a read-only query."""

from __future__ import annotations

_SETTINGS = "can change settings, including default_transaction_read_only"
_LARGE_OBJECTS = "changes large objects"
_RUNS_SQL = "runs SQL text that cannot be checked"
_REMOTE = "runs SQL over another connection"
_WAL = "writes to the write-ahead log"
_SLOTS = "changes replication state"

_REFUSED: dict[str, str] = {
    "set_config": _SETTINGS,
    "nextval": "advances a sequence",
    "setval": "changes a sequence",
    "pg_terminate_backend": "ends another session",
    "pg_cancel_backend": "cancels another session's query",
    "pg_notify": "sends a message to other sessions",
    "lo_import": "reads a server file into a large object",
    "lo_export": "writes a server file",
    "lo_unlink": _LARGE_OBJECTS,
    "lo_create": _LARGE_OBJECTS,
    "lo_creat": _LARGE_OBJECTS,
    "lo_put": _LARGE_OBJECTS,
    "lo_from_bytea": _LARGE_OBJECTS,
    "lo_truncate": _LARGE_OBJECTS,
    "lo_truncate64": _LARGE_OBJECTS,
    "lowrite": _LARGE_OBJECTS,
    "pg_reload_conf": "reloads the server configuration",
    "pg_rotate_logfile": "rotates the server log",
    "pg_switch_wal": _WAL,
    "pg_create_restore_point": _WAL,
    "pg_logical_emit_message": _WAL,
    "pg_promote": "promotes a standby server",
    "pg_backup_start": "starts a server backup",
    "pg_backup_stop": "stops a server backup",
    "pg_start_backup": "starts a server backup",
    "pg_stop_backup": "stops a server backup",
    "pg_wal_replay_pause": "pauses recovery",
    "pg_wal_replay_resume": "resumes recovery",
    "pg_import_system_collations": "creates collations",
    "pg_file_write": "writes a server file",
    "pg_file_rename": "renames a server file",
    "pg_file_unlink": "removes a server file",
    "pg_file_sync": "syncs a server file",
    "pg_drop_replication_slot": _SLOTS,
    "pg_replication_slot_advance": _SLOTS,
    "pg_copy_physical_replication_slot": _SLOTS,
    "pg_copy_logical_replication_slot": _SLOTS,
    "query_to_xml": _RUNS_SQL,
    "query_to_xmlschema": _RUNS_SQL,
    "query_to_xml_and_xmlschema": _RUNS_SQL,
    "ts_stat": _RUNS_SQL,
}

_REFUSED_PREFIXES: tuple[tuple[str, str], ...] = (
    ("dblink", _REMOTE),
    ("pg_stat_reset", "resets statistics"),
    ("pg_create_", _SLOTS),
    ("pg_replication_origin_", _SLOTS),
)


def function_refusal(name: str) -> str | None:
    """Why calling the function `name` (unqualified) is refused under a read grant; or None."""
    why = _REFUSED.get(name)
    if why is None:
        why = next((why for prefix, why in _REFUSED_PREFIXES if name.startswith(prefix)), None)
    return None if why is None else f"{name}() {why}"
