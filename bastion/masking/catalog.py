"""A snapshot of a target's catalog and every column's verdict (pure, once the rows are read)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bastion.masking.classify import Column, Verdict, classify
from bastion.masking.policy import MaskingPolicy

# System relations a masked session may read: the database's description of itself (what psql's
# \d, \dt, \df, \du and \l ask, and pgcli's, SQLAlchemy's and drivers' catalog queries), no
# stored values. Never statistics (pg_statistic, pg_stats, pg_stats_ext, pg_statistic_ext_data:
# their most common values and histograms are a column's data), other sessions
# (pg_stat_activity), other roles' and databases' settings (pg_db_role_setting; pg_roles'
# rolconfig holds them too, so it is masked: CATALOG_DATA below), connection secrets
# (pg_user_mapping, pg_subscription, pg_foreign_*) or data (pg_largeobject).
METADATA_RELATIONS: dict[str, tuple[str, ...]] = {
    "pg_catalog": (
        "pg_am", "pg_attrdef", "pg_attribute", "pg_auth_members", "pg_class", "pg_collation",
        "pg_constraint", "pg_database", "pg_depend", "pg_description", "pg_enum",
        "pg_extension", "pg_index", "pg_indexes", "pg_inherits", "pg_matviews", "pg_namespace",
        "pg_partitioned_table", "pg_policy", "pg_proc", "pg_publication",
        "pg_publication_namespace", "pg_publication_rel", "pg_range", "pg_roles",
        "pg_sequence", "pg_statistic_ext", "pg_tables", "pg_tablespace", "pg_trigger",
        "pg_type", "pg_views",
        # Operators, casts, languages, text search and rules: definitions (psql's \do, \dC,
        # \dL, \dF*, \dA*, \dd; pgAdmin's and DBeaver's trees), as the relations above.
        "pg_aggregate", "pg_amop", "pg_amproc", "pg_cast", "pg_conversion", "pg_default_acl",
        "pg_event_trigger", "pg_language", "pg_opclass", "pg_operator", "pg_opfamily",
        "pg_rewrite", "pg_ts_config", "pg_ts_config_map", "pg_ts_dict", "pg_ts_parser",
        "pg_ts_template",
        # The settings this session can see; current_setting() reads each of them already, and
        # the server hides the ones a role may not read from both (pgjdbc, psql's \dconfig).
        "pg_settings",
        # Comments on databases and roles, as shobj_description() reads them (pgAdmin).
        "pg_shdescription",
    ),
    "information_schema": (
        "columns", "key_column_usage", "referential_constraints", "schemata",
        "table_constraints", "tables", "views",
    ),
}  # fmt: skip
SYSTEM_SCHEMAS = frozenset(METADATA_RELATIONS)
# Columns of those relations that hold a table's values, a setting's value or a secret after
# all, masked like a sensitive column (projected masked, refused in any expression or
# predicate), each with why. Every other column of them describes the database: reloptions
# (pg_class), spcoptions (pg_tablespace) and dictinitoption (pg_ts_dict) take only the
# parameters PostgreSQL or the template knows, with checked values, and psql's \d reads
# reloptions in an expression; pg_database has no settings since they moved to
# pg_db_role_setting; pg_roles.rolpassword is always '********'; a function's body (prosrc) is
# code every role may read. Relations holding settings or secrets whole stay out of
# METADATA_RELATIONS (pg_db_role_setting, pg_authid, pg_shadow, pg_user, pg_user_mapping(s),
# pg_foreign_*, pg_subscription).
CATALOG_DATA: dict[tuple[str, str], dict[str, str]] = {
    ("pg_catalog", "pg_attribute"): {
        "attmissingval": "the value every row stored before ADD COLUMN ... DEFAULT has",
        "attoptions": "n_distinct overrides: a column's statistics, set by hand",
        "attfdwoptions": "a foreign table column's options, free text its wrapper reads",
    },
    ("pg_catalog", "pg_roles"): {
        "rolconfig": "a role's own settings (ALTER ROLE ... SET), which can hold a key",
    },
    ("pg_catalog", "pg_proc"): {
        "proconfig": "a function's SET clauses, which can hold a key",
    },
}

KINDS = {"r": "table", "v": "view", "m": "materialized view", "p": "partitioned table",
         "f": "foreign table"}  # fmt: skip


@dataclass(frozen=True)
class Attribute:
    attnum: int
    name: str
    type_oid: int
    type_name: str
    text_like: bool


@dataclass(frozen=True)
class Relation:
    relid: int
    schema: str
    name: str
    kind: str  # a pg_class relkind: r, v, m, p or f
    attributes: tuple[Attribute, ...]
    parents: tuple[int, ...] = ()
    definition: str | None = None  # views and materialized views


@dataclass(frozen=True)
class Catalog:
    """What the target holds, by relation OID."""

    relations: Mapping[int, Relation] = field(default_factory=dict)
    system_names: frozenset[str] = frozenset()  # every relation name in pg_catalog

    def describe(self, source: tuple[int, int]) -> str:
        """A column named for people: "column public.customers.email"."""
        relation = self.relations.get(source[0])
        if relation is None:
            return f"column {source[1]} of relation {source[0]}"
        names = {a.attnum: a.name for a in relation.attributes}
        return f"column {relation.schema}.{relation.name}.{names.get(source[1], source[1])}"

    def column_source(self, schema: str, relation: str, column: str) -> tuple[int, int] | None:
        """(relation OID, attnum) of a column the snapshot holds, or None."""
        for found in self.relations.values():
            if found.schema == schema and found.name == relation:
                for attribute in found.attributes:
                    if attribute.name == column:
                        return found.relid, attribute.attnum
        return None

    @classmethod
    def from_rows(
        cls,
        columns: Iterable[Mapping[str, Any]],
        inherits: Iterable[Mapping[str, Any]] = (),
        views: Iterable[Mapping[str, Any]] = (),
        system_names: Iterable[str] = (),
    ) -> Catalog:
        """Build the snapshot from the rows of bastion.audit.catalog's queries."""
        found: dict[int, dict[str, Any]] = {}
        for row in columns:
            relid = int(row["relid"])
            if relid not in found:
                found[relid] = {"relid": relid, "schema": row["schema"], "name": row["relation"],
                                "kind": row["kind"], "attributes": [], "parents": [],
                                "definition": None}  # fmt: skip
            text_like = row["text_like"] in (True, "t", "true")  # asyncpg, or the text protocol
            attribute = Attribute(int(row["attnum"]), row["column_name"], int(row["type_oid"]),
                                  row["type_name"], text_like)  # fmt: skip
            found[relid]["attributes"].append(attribute)
        for row in inherits:
            if int(row["child"]) in found:
                found[int(row["child"])]["parents"].append(int(row["parent"]))
        for row in views:
            if int(row["relid"]) in found:
                found[int(row["relid"])]["definition"] = row["definition"]
        relations = {}
        for relid, rel in found.items():
            rel["attributes"], rel["parents"] = tuple(rel["attributes"]), tuple(rel["parents"])
            relations[relid] = Relation(**rel)
        return cls(relations, frozenset(system_names))

    def ancestors(self, relid: int) -> list[Relation]:
        """The relation's parents, their parents and so on (inheritance and partitions)."""
        out: list[Relation] = []
        todo = list(self.relations[relid].parents) if relid in self.relations else []
        while todo:
            parent = self.relations.get(todo.pop(0))
            if parent is not None and parent not in out:
                out.append(parent)
                todo.extend(parent.parents)
        return out


@dataclass(frozen=True)
class ColumnVerdict:
    relation: Relation
    attribute: Attribute
    verdict: Verdict


def column_verdict(catalog: Catalog, relation: Relation, attribute: Attribute,
                   policy: MaskingPolicy) -> Verdict:  # fmt: skip
    """A column's verdict; a partition or child is sensitive where any ancestor's column of
    the same name is (a rule written for the parent covers what is stored in its children)."""
    own = classify(Column(relation.schema, relation.name, attribute.name), policy.rules)
    if own.sensitive:
        return own
    for parent in catalog.ancestors(relation.relid):
        inherited = classify(Column(parent.schema, parent.name, attribute.name), policy.rules)
        if inherited.sensitive:
            return Verdict(True, f"{inherited.rule} (on {parent.schema}.{parent.name})",
                           inherited.category, inherited.style)  # fmt: skip
    return own


def verdicts(catalog: Catalog, policy: MaskingPolicy) -> list[ColumnVerdict]:
    """Every column of the target with its verdict, by schema, relation and position (the
    system relations a masked session may read describe the database and are never masked)."""
    out = []
    ours = [r for r in catalog.relations.values() if r.schema not in SYSTEM_SCHEMAS]
    for relation in sorted(ours, key=lambda r: (r.schema, r.name)):
        for attribute in relation.attributes:
            verdict = column_verdict(catalog, relation, attribute, policy)
            out.append(ColumnVerdict(relation, attribute, verdict))
    return out


def catalog_data(catalog: Catalog) -> list[tuple[int, int]]:
    """(relation OID, attnum) of the CATALOG_DATA columns in the snapshot."""
    found = []
    for relation in catalog.relations.values():
        data = CATALOG_DATA.get((relation.schema, relation.name), {})
        found += [(relation.relid, a.attnum) for a in relation.attributes if a.name in data]
    return found


def sensitive_sources(catalog: Catalog, policy: MaskingPolicy) -> frozenset[tuple[int, int]]:
    """(relation OID, attnum) of every sensitive column: what lineage checks sources against."""
    return frozenset(
        (found.relation.relid, found.attribute.attnum)
        for found in verdicts(catalog, policy)
        if found.verdict.sensitive
    )
