"""The functions a read grant may call: an allow-list of PostgreSQL built-ins, each with why.

A read grant's statement may call a function only when it is named here, unqualified or in
pg_catalog. Everything else is refused, built-in or not: functions that write (nextval, lo_*,
pg_notify), act on other sessions (pg_terminate_backend, advisory locks), change settings
(set_config, except as `set_config_refusal` allows), read the server's files (pg_read_file),
or run SQL text the proxy never sees (ts_rewrite's and ts_stat's query text, query_to_xml,
dblink), and any function a database defines for itself, which the proxy cannot inspect.

The table is grouped by family; the family's line says why its members are safe. A name is
checked, not a signature: every built-in overload of a listed name must be safe too (that is
why ts_rewrite, whose two-argument form runs a query, is not listed at all). A search_path that
puts another schema before pg_catalog is refused, and a name the database also defines outside
pg_catalog (an overload PostgreSQL may prefer) is refused by `disguise`, which also judges
`o.f` and `(x).f` as the calls they may be, and refuses operator symbols and casts the database
defined for itself.

Limits: code no parser sees (a view's body, an own type's implicit cast or operator class)
still runs the database's own function. Writes there stop at the upstream session's
default_transaction_read_only, and the door ends a session whose server reports it lifted.
A search_path set as a role's or database's default, or in the startup packet, is not seen here.
"""

from __future__ import annotations

from . import lexing
from .tree import const_value

WRITE_HINT = (
    "; for more, ask for a write grant (on the bastion's SSH door: request TARGET --mode write)"
)

# (family, why its members are safe, the names). Every name is a PostgreSQL 15 built-in.
FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("math", "computes a number from its arguments alone", """
        abs cbrt ceil ceiling degrees div exp factorial floor gcd lcm ln log log10 min_scale
        mod pi power radians round scale sign sqrt trim_scale trunc width_bucket
        acos acosd acosh asin asind asinh atan atan2 atan2d atand atanh cos cosd cosh cot
        cotd sin sind sinh tan tand tanh
        numeric int2 int4 int8 float4 float8 to_number"""),
    ("random", "draws from this session's generator; stores nothing",
        "random gen_random_uuid"),
    ("string", "computes text from its arguments alone", """
        ascii bit_length btrim char_length character_length chr concat concat_ws convert
        convert_from convert_to decode encode format initcap left length lower lpad ltrim md5
        normalize is_normalized octet_length overlay position quote_ident quote_literal
        quote_nullable repeat replace reverse right rpad rtrim split_part starts_with
        string_to_array string_to_table strpos substr substring to_ascii to_hex translate
         unistr upper text textlen textcat sha224 sha256 sha384 sha512
        like_escape similar_escape similar_to_escape get_byte get_bit set_byte set_bit
        bit_count"""),
    ("pattern", "matches text against a pattern given as an argument", """
        regexp_count regexp_instr regexp_like regexp_match regexp_matches regexp_replace
        regexp_split_to_array regexp_split_to_table regexp_substr textlike textnlike
        texticlike texticnlike textregexeq textregexne"""),
    ("date and time", "reads the clock or computes a date from its arguments", """
        age clock_timestamp date_bin
        date_part date_trunc extract isfinite justify_days justify_hours
        justify_interval make_date make_interval make_time
        make_timestamp make_timestamptz now statement_timestamp timeofday timezone
        to_char to_date to_timestamp transaction_timestamp overlaps date time timetz
        timestamp timestamptz interval"""),
    ("json", "builds or reads JSON values given as arguments", """
        array_to_json json_agg json_array_element json_array_element_text
        json_array_elements json_array_elements_text json_array_length json_build_array
        json_build_object json_each json_each_text json_extract_path json_extract_path_text
        json_object json_object_agg
         json_object_keys json_populate_record
        json_populate_recordset json_strip_nulls json_to_record json_to_recordset
        json_typeof jsonb_agg jsonb_array_element
        jsonb_array_element_text jsonb_array_elements jsonb_array_elements_text
        jsonb_array_length jsonb_build_array jsonb_build_object jsonb_concat jsonb_contained
        jsonb_contains jsonb_delete jsonb_delete_path jsonb_each jsonb_each_text
        jsonb_exists jsonb_exists_all jsonb_exists_any jsonb_extract_path
        jsonb_extract_path_text jsonb_insert jsonb_object jsonb_object_agg
        jsonb_object_field jsonb_object_field_text jsonb_object_keys jsonb_path_exists
        jsonb_path_exists_tz jsonb_path_match jsonb_path_match_tz jsonb_path_query
        jsonb_path_query_array jsonb_path_query_array_tz jsonb_path_query_first
        jsonb_path_query_first_tz jsonb_path_query_tz jsonb_populate_record
        jsonb_populate_recordset jsonb_pretty jsonb_set jsonb_set_lax jsonb_strip_nulls
        jsonb_to_record jsonb_to_recordset jsonb_typeof row_to_json to_json to_jsonb"""),
    ("array", "builds or reads arrays given as arguments", """
        array_append array_cat array_dims array_fill array_length array_lower array_ndims
        array_position array_positions array_prepend array_remove array_replace
            array_to_string array_upper
        cardinality generate_subscripts trim_array unnest"""),
    ("range", "builds or reads ranges given as arguments", """
        daterange int4range int8range numrange tsrange tstzrange datemultirange
        int4multirange int8multirange nummultirange tsmultirange tstzmultirange isempty
        lower_inc lower_inf upper_inc upper_inf range_merge multirange range_agg
        range_intersect_agg"""),
    ("network and uuid", "computes on addresses or ids given as arguments", """
        abbrev broadcast family host hostmask inet_merge inet_same_family masklen netmask
        network set_masklen macaddr8_set7bit trunc"""),
    ("text search", "parses or matches documents given as arguments (not ts_rewrite or"
        " ts_stat, which run a query given as text)", """
        array_to_tsvector get_current_ts_config json_to_tsvector jsonb_to_tsvector
        numnode phraseto_tsquery plainto_tsquery querytree setweight strip to_tsquery
        to_tsvector ts_debug ts_delete ts_filter ts_headline ts_lexize ts_parse ts_rank
        ts_rank_cd ts_token_type tsquery_phrase tsvector_to_array websearch_to_tsquery"""),
    ("xml", "builds or reads XML values given as arguments (not query_to_xml or"
        " cursor_to_xml, which run a query)", """
        xml xml_is_well_formed xml_is_well_formed_content xml_is_well_formed_document
        xmlagg xmlcomment xmlexists xpath xpath_exists
        table_to_xml table_to_xml_and_xmlschema table_to_xmlschema"""),
    ("conditional and misc", "compares or describes the values given as arguments", """
            num_nulls num_nonnulls pg_typeof pg_column_size
        pg_column_compression pg_collation_for enum_first enum_last
        enum_range"""),
    ("aggregate", "folds the rows the query reads", """
         array_agg avg bit_and bit_or bit_xor bool_and bool_or count every max
        min string_agg sum corr covar_pop covar_samp regr_avgx regr_avgy regr_count
        regr_intercept regr_r2 regr_slope regr_sxx regr_sxy regr_syy stddev stddev_pop
        stddev_samp variance var_pop var_samp mode percentile_cont percentile_disc xmlagg"""),
    ("window", "ranks or looks across the rows the query reads", """
        row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value
        last_value nth_value"""),
    ("set-returning", "generates rows from its arguments", "generate_series"),
    ("session info", "reads this session's own state", """
        current_database current_query current_schema
        current_schemas current_user session_user current_setting
        pg_backend_pid inet_client_addr inet_client_port inet_server_addr inet_server_port
        pg_conf_load_time pg_postmaster_start_time pg_trigger_depth version
        pg_listening_channels pg_my_temp_schema pg_is_other_temp_schema pg_jit_available
        pg_current_xact_id_if_assigned txid_current_if_assigned pg_current_snapshot
        txid_current_snapshot pg_snapshot_xmin pg_snapshot_xmax pg_snapshot_xip
        pg_visible_in_snapshot txid_snapshot_xmin txid_snapshot_xmax txid_snapshot_xip
        txid_visible_in_snapshot pg_xact_status txid_status pg_is_in_recovery
        pg_is_wal_replay_paused pg_client_encoding getdatabaseencoding pg_char_to_encoding
        pg_encoding_to_char currval lastval
        pg_notification_queue_usage pg_blocking_pids pg_safe_snapshot_blocking_pids
        pg_last_committed_xact pg_get_wal_replay_pause_state pg_trigger_depth"""),
    ("privileges", "answers whether a role holds a privilege", """
        has_any_column_privilege has_column_privilege has_database_privilege
        has_foreign_data_wrapper_privilege has_function_privilege has_language_privilege
        has_parameter_privilege has_schema_privilege has_sequence_privilege
        has_server_privilege has_table_privilege has_tablespace_privilege
        has_type_privilege pg_has_role row_security_active aclexplode acldefault
        makeaclitem aclcontains"""),
    ("catalog info", "describes catalog objects (psql's \\d, drivers' type lookups)", """
        col_description obj_description shobj_description format_type pg_describe_object
        pg_identify_object pg_identify_object_as_address pg_get_object_address
        pg_get_constraintdef pg_get_expr pg_get_functiondef pg_get_function_arguments
        pg_get_function_identity_arguments pg_get_function_result pg_get_function_sqlbody
        pg_get_function_arg_default pg_get_indexdef pg_get_keywords pg_get_partkeydef
        pg_get_partition_constraintdef pg_get_ruledef pg_get_serial_sequence
        pg_get_statisticsobjdef pg_get_statisticsobjdef_columns
        pg_get_statisticsobjdef_expressions pg_get_triggerdef pg_get_userbyid
        pg_get_viewdef pg_get_replica_identity_index pg_get_catalog_foreign_keys
        pg_get_publication_tables pg_options_to_table pg_settings_get_flags
        pg_index_column_has_property pg_index_has_property pg_indexam_has_property
        pg_partition_ancestors pg_partition_root pg_partition_tree
        pg_relation_is_publishable pg_relation_is_updatable pg_column_is_updatable
        pg_sequence_parameters pg_sequence_last_value pg_tablespace_location
        pg_tablespace_databases pg_filenode_relation pg_relation_filenode
        pg_relation_filepath pg_collation_is_visible pg_conversion_is_visible
        pg_function_is_visible pg_opclass_is_visible pg_operator_is_visible
        pg_opfamily_is_visible pg_statistics_obj_is_visible pg_table_is_visible
        pg_ts_config_is_visible pg_ts_dict_is_visible pg_ts_parser_is_visible
        pg_ts_template_is_visible pg_type_is_visible oidvectortypes pg_available_extensions
        pg_available_extension_versions pg_extension_update_paths pg_timezone_abbrevs
        pg_timezone_names pg_show_all_settings pg_get_multixact_members pg_lock_status
        pg_prepared_statement pg_cursor pg_prepared_xact pg_mcv_list_items
        to_regclass to_regcollation to_regnamespace to_regoper to_regoperator to_regproc
        to_regprocedure to_regrole to_regtype"""),
    ("sizes and statistics", "reads sizes and activity counters", """
        pg_database_size pg_indexes_size pg_relation_size pg_size_bytes pg_size_pretty
        pg_table_size pg_tablespace_size pg_total_relation_size
        pg_stat_get_activity pg_stat_get_backend_idset pg_stat_get_numscans
        pg_stat_get_live_tuples pg_stat_get_dead_tuples pg_stat_get_tuples_returned
        pg_stat_get_tuples_fetched pg_stat_get_tuples_inserted pg_stat_get_tuples_updated
        pg_stat_get_tuples_deleted pg_stat_get_blocks_fetched pg_stat_get_blocks_hit
        pg_stat_get_last_vacuum_time pg_stat_get_last_autovacuum_time
        pg_stat_get_last_analyze_time pg_stat_get_last_autoanalyze_time
        pg_stat_get_progress_info pg_stat_get_wal pg_stat_get_archiver"""),
    ("waiting", "waits; holds nothing but the statement's own snapshot",
        "pg_sleep pg_sleep_for pg_sleep_until"),
    ("large objects, read", "reads a large object's bytes without opening it for writing",
        "lo_get"),
)  # fmt: skip

ALLOWED: dict[str, str] = {
    name: f"{family}: {why}" for family, why, names in FAMILIES for name in names.split()
}
"""Each allowed function's name (unqualified) and why it is safe under a read grant. Masked
mode's allow-list (bastion.masking.lineage.SAFE_FUNCTIONS) is stricter: a test holds it to
a subset of this one."""

# Settings set_config may change under a read grant: any but these (the same rule as SET).
GUARDED_SETTINGS = frozenset(
    {"default_transaction_read_only", "transaction_read_only", "role", "session_authorization"}
)


# Why some well-known functions are not on the list: not used to decide, only to explain.
_SETTINGS = "can change settings, including default_transaction_read_only"
_LARGE_OBJECTS = "changes large objects"
_RUNS_SQL = "runs SQL text that cannot be checked"
_REMOTE = "runs SQL over another connection"
_WAL = "writes to the write-ahead log"
_SLOTS = "changes replication state"
_FILES = "reads the database server's files"

_WHY_NOT: dict[str, str] = {
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
    "ts_rewrite": "runs the SQL text of its two-argument form, which cannot be checked",
    "cursor_to_xml": "runs a cursor's query",
    "cursor_to_xmlschema": "runs a cursor's query",
    "txid_current": "assigns a transaction id, a write",
    "pg_current_xact_id": "assigns a transaction id, a write",
    "pg_read_file": _FILES,
    "pg_read_binary_file": _FILES,
    "pg_ls_dir": _FILES,
    "pg_stat_file": _FILES,
    "query_to_xmlschema": _RUNS_SQL,
    "query_to_xml_and_xmlschema": _RUNS_SQL,
    "ts_stat": _RUNS_SQL,
}

_WHY_NOT_PREFIXES: tuple[tuple[str, str], ...] = (
    ("dblink", _REMOTE),
    ("pg_stat_reset", "resets statistics"),
    ("pg_create_", _SLOTS),
    ("pg_replication_origin_", _SLOTS),
    ("pg_advisory_", "takes a lock that other sessions wait on"),
    ("pg_try_advisory_", "takes a lock that other sessions wait on"),
    ("lo_", _LARGE_OBJECTS),
)


def function_refusal(names: list[str]) -> str | None:
    """Why a read grant may not call the function named `names` (qualified or not); or None."""
    if not names:
        return "a function call without a name cannot be checked" + WRITE_HINT
    name, schema = names[-1], names[:-1]
    dotted = ".".join(names)
    if schema not in ([], ["pg_catalog"]):
        return f"function {dotted}() is not a built-in known to be read-only" + WRITE_HINT
    if name in ALLOWED:
        return None
    why = _WHY_NOT.get(name)
    if why is None:
        why = next((why for prefix, why in _WHY_NOT_PREFIXES if name.startswith(prefix)), None)
    because = "" if why is None else f" ({dotted}() {why})"
    return f"function {dotted}() is not on the read grant's allow-list{because}" + WRITE_HINT


# The operator symbols PostgreSQL 15 defines in pg_catalog. An operator is a function call in
# disguise, so one the database defined under a new symbol is refused like its function.
_OPERATOR_SYMBOLS = """
    !! !~ !~* !~~ !~~* # ## #- #> #>> % & && &< &<| &> * *< *<= *<> *= *> *>= + - -> ->>
    -|- / < <-> << <<= <<| <= <> <@ <^ = > >= >> >>= >^ ? ?# ?& ?- ?-| ?| ?|| @ @-@ @> @? @@
    @@@ ^ ^@ | |&> |/ |>> || ||/ ~ ~* ~<=~ ~<~ ~= ~>=~ ~>~ ~~ ~~*"""
BUILTIN_OPERATORS = frozenset(_OPERATOR_SYMBOLS.split())
_KEYWORD_OPERATORS = frozenset({"AEXPR_BETWEEN", "AEXPR_NOT_BETWEEN", "AEXPR_BETWEEN_SYM",
                                "AEXPR_NOT_BETWEEN_SYM"})  # fmt: skip


def operator_refusal(names: list[str], kind: object) -> str | None:
    """Why a read grant may not use the operator `names` (maybe OPERATOR(schema.op)); or None.

    BETWEEN and its kin are keywords the server turns into the built-in comparisons.
    """
    if kind in _KEYWORD_OPERATORS:
        return None
    dotted = ".".join(names)
    if names and names[:-1] in ([], ["pg_catalog"]) and names[-1] in BUILTIN_OPERATORS:
        return None
    return f"operator {dotted or '?'} is not a built-in operator known to be read-only" + WRITE_HINT


def set_config_refusal(args: object) -> str | None:
    """set_config(name, value, is_local) is SET by another name: allowed for a setting named
    by a constant, unless it is one SET may not change either (asyncpg turns jit off this way
    while it reads the catalog's types)."""
    items = args if isinstance(args, list) else []
    name = _constant(items[0]) if items else None
    if not isinstance(name, str):
        return "set_config() with a setting that is not a constant cannot be checked" + WRITE_HINT
    lowered = name.strip().lower()
    if lowered in GUARDED_SETTINGS:
        return f"set_config() of {lowered} would lift the read-only guard" + WRITE_HINT
    if lowered not in lexing.PINNED and lowered != "search_path":
        return None
    value = _constant(items[1]) if len(items) > 1 else None
    if not isinstance(value, str):
        return f"set_config() of {lowered} to a value that is not a constant" + WRITE_HINT
    if lowered == "search_path":
        return search_path_refusal([value])
    return lexing.refusal(lowered, value)


def search_path_refusal(values: list[str]) -> str | None:
    """A search_path must keep pg_catalog first, or leave it out (then it is searched first):
    otherwise a function of the database's own could stand in for an allowed built-in."""
    entries = [part.strip() for value in values for part in value.split(",") if part.strip()]
    names = [e[1:-1] if e.startswith('"') and e.endswith('"') else e.lower() for e in entries]
    if "pg_catalog" in names and names[0] != "pg_catalog":
        return "a search_path with pg_catalog after another schema is not allowed" + WRITE_HINT
    return None


def _constant(node: object) -> str | int | bool | None:
    """A constant argument's value, through a cast such as 'jit'::text; None if not constant."""
    if isinstance(node, dict) and "TypeCast" in node:
        node = node["TypeCast"].get("arg")
    return const_value(node)


# --- Masked mode: the functions tools' catalog queries call (issue 14, the driver corpus) ---
# What psql's \d commands, pgcli's completion, SQLAlchemy's reflection, asyncpg's and psycopg's
# type lookups and JDBC/GUI metadata queries call besides bastion.masking.lineage.SAFE_FUNCTIONS
# (tests/masking/corpus holds the statements). Each takes OIDs, names or arrays given to it and
# describes the catalog; none reads a table's rows, another session, a file or a setting. A
# sensitive column is still refused as any function's argument (lineage's projection-only
# rule), so these only ever see clean values. Every name is also on ALLOWED above.
# Deliberately absent: pg_tablespace_location (a server path), pg_get_functiondef (it prints a
# function's SET clauses, pg_proc.proconfig, which masked mode masks), pg_mcv_list_items and
# pg_stat_get_* (statistics and activity), pg_read_file and kin (files), pg_get_wal_* (WAL).
# Which catalog relations a masked session reads is bastion.masking.catalog's list.
_MASKED_CATALOG_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("arrays", "reads an array given as argument (SQLAlchemy's key and index reflection)", """
        generate_subscripts array_remove array_position array_positions array_lower
        array_ndims array_dims cardinality array_to_string"""),
    ("name lookups", "turns a name given as argument into the catalog object's OID",
        """to_regtype to_regclass to_regproc to_regprocedure to_regnamespace to_regrole
        to_regoper to_regoperator to_regcollation"""),
    ("privileges", "answers from the catalog's ACLs whether a role holds a privilege", """
        has_table_privilege has_column_privilege has_any_column_privilege
        has_database_privilege has_schema_privilege has_function_privilege
        has_sequence_privilege has_type_privilege has_language_privilege
        has_tablespace_privilege has_foreign_data_wrapper_privilege has_server_privilege
        pg_has_role"""),
    ("definitions", "prints an object's definition from the catalog (a function's body is the"
        " text pg_proc.prosrc already shows every role; not pg_get_functiondef, which also"
        " prints the SET clauses masked in pg_proc.proconfig)", """
        pg_get_function_sqlbody pg_get_function_identity_arguments
        pg_get_function_arg_default pg_get_ruledef pg_get_serial_sequence pg_get_statisticsobjdef
        pg_get_statisticsobjdef_expressions pg_get_replica_identity_index
        pg_describe_object pg_identify_object pg_index_column_has_property
        pg_index_has_property pg_indexam_has_property pg_get_keywords pg_options_to_table
        oidvectortypes"""),
    ("visibility", "says whether an object is found on this session's search_path", """
        pg_opclass_is_visible pg_opfamily_is_visible pg_operator_is_visible
        pg_collation_is_visible pg_conversion_is_visible pg_ts_config_is_visible
        pg_ts_dict_is_visible pg_ts_parser_is_visible pg_ts_template_is_visible
        pg_statistics_obj_is_visible"""),
    ("sizes", "reads how large a database is on disk (psql's \\l+), as pg_table_size does",
        "pg_database_size"),
    ("session", "reads this session's own search path and temporary schema", """
        current_schemas pg_my_temp_schema pg_is_other_temp_schema pg_char_to_encoding"""),
    ("formatting", "builds text or JSON from its arguments (psql's \\dA, SQLAlchemy's"
        " index reflection; pgcli's casing query splits function source into words)",
        "format like_escape json_build_object regexp_split_to_table"),
)  # fmt: skip

MASKED_CATALOG_FUNCTIONS: dict[str, str] = {
    name: f"{family}: {why}"
    for family, why, names in _MASKED_CATALOG_FAMILIES
    for name in names.split()
}
"""Masked mode's allowed functions beyond SAFE_FUNCTIONS, each with why (catalog queries)."""

# information_schema's own helpers, called qualified (pgjdbc's getPrimaryKeys and
# getIndexInfo). They belong to the bootstrap superuser, so a database cannot replace them.
MASKED_INFORMATION_SCHEMA_FUNCTIONS: dict[str, str] = {
    "_pg_expandarray": "arrays: the elements of an array given as argument, with their places",
}
