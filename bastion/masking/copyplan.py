"""COPY ... TO STDOUT in masked mode: the statement planned as the SELECT it runs, its options
read as PostgreSQL reads them, and the column types its rows carry (pure).

Only COPY (SELECT ...) TO STDOUT and COPY table [(columns)] TO STDOUT run (psql's \\copy ...
to 'file' is the latter on the wire); COPY FROM, COPY TO a server file and PROGRAM are
refused. There is no RowDescription for COPY, so a column's type comes from the catalog when
it is a bare table column, and is taken as text otherwise (masked or scanned as text).
"""

from __future__ import annotations

from collections.abc import Sequence

from bastion.masking.catalog import Catalog
from bastion.masking.copyrows import CopyFormat
from bastion.masking.lineage import Analyzer, Col, Refused
from bastion.pgwire import Field
from bastion.sqlparse.lexing import ENCODINGS
from bastion.sqlparse.tree import Node, unwrap

TEXT = 25  # the type an expression's column is taken to have
KINDS = ("text", "csv", "binary")
# The options COPY TO accepts, each read below; any other is refused (FORCE_NOT_NULL,
# FORCE_NULL and FREEZE belong to COPY FROM).
OPTIONS = frozenset({"format", "header", "delimiter", "null", "quote", "escape", "force_quote",
                     "encoding"})  # fmt: skip
# Text format: a byte COPY always writes escaped, so a NULL string holding it unescaped can
# never be a value's text (and a value can never pass for NULL).
_ALWAYS_ESCAPED = frozenset(b"\\\b\f\n\r\t\v")
_TRUE = ("true", "on", "1")
_FALSE = ("false", "off", "0")

ONLY_STDOUT = (
    "only COPY ... TO STDOUT is allowed in masked mode (psql's \\copy ... to 'file' is that);"
    " COPY FROM, COPY TO a server file and COPY ... PROGRAM are not"
)


def plan_copy(node: Node, analyzer: Analyzer) -> tuple[list[Col], CopyFormat]:
    """The output columns of a CopyStmt's rows and how they are written; Refused otherwise."""
    if node.get("is_from") or node.get("is_program") or node.get("filename"):
        raise Refused(ONLY_STDOUT)
    if node.get("whereClause"):
        raise Refused(ONLY_STDOUT)
    fmt = copy_format(node.get("options") or [])
    if node.get("query") is not None:
        name, select = unwrap(node["query"])
        if name != "SelectStmt":
            raise Refused(f"COPY ({name.removesuffix('Stmt')} ...) is not allowed in masked mode")
        return analyzer.select(select, None), fmt
    relation = node.get("relation")
    if not isinstance(relation, dict):
        raise Refused("a COPY without a query or a table cannot be checked")
    return analyzer.select(_as_select(relation, node.get("attlist") or []), None), fmt


def _as_select(relation: Node, attlist: list[Node]) -> Node:
    """COPY table [(columns)] TO reads those columns of ONLY that table, as a query of them would
    (COPY reads no children): the tree PostgreSQL's grammar gives that query."""
    names = [_string(item) for item in attlist]
    fields: list[Node] = [{"String": {"sval": n}} for n in names] or [{"A_Star": {}}]
    targets = [{"ResTarget": {"val": {"ColumnRef": {"fields": [f], "location": i}},
                              "location": i}} for i, f in enumerate(fields)]  # fmt: skip
    table: Node = {"relname": str(relation["relname"]), "relpersistence": "p",
                   "location": len(fields)}  # fmt: skip
    if relation.get("schemaname"):
        table["schemaname"] = str(relation["schemaname"])
    return {"targetList": targets, "fromClause": [{"RangeVar": table}],
            "limitOption": "LIMIT_OPTION_DEFAULT", "op": "SETOP_NONE"}  # fmt: skip


def _string(item: object) -> str:
    if isinstance(item, dict) and "String" in item:
        return str(item["String"].get("sval", ""))
    raise Refused("a COPY option or column the masking does not read")


def copy_format(options: list[Node]) -> CopyFormat:
    """The options of a COPY TO, read and checked as PostgreSQL does (Refused otherwise)."""
    given: dict[str, object] = {}
    for item in options:
        elem = item.get("DefElem") if isinstance(item, dict) else None
        if not isinstance(elem, dict):
            raise Refused("a COPY option the masking does not read")
        name = str(elem.get("defname", "")).lower()
        if name not in OPTIONS:
            raise Refused(f"the COPY option {name.upper()} is not allowed in masked mode")
        if name in given:
            raise Refused(f"the COPY option {name.upper()} is given twice")
        given[name] = elem.get("arg")
    kind = _word(given.pop("format", None), "text")
    if kind not in KINDS:
        raise Refused(f"COPY format {kind!r} is not allowed in masked mode")
    _check_encoding(given.pop("encoding", None))
    given.pop("force_quote", None)  # quotes more values; the parser reads quoted ones anyway
    header = _header(given.pop("header")) if "header" in given else False
    if kind == "binary":
        if given:
            raise Refused("the binary COPY format takes no DELIMITER, NULL, QUOTE or ESCAPE")
        return CopyFormat("binary", header=header)
    return _textual(kind, header, given)


def _textual(kind: str, header: bool, given: dict[str, object]) -> CopyFormat:
    csv = kind == "csv"
    delimiter = _byte(given, "delimiter", b"," if csv else b"\t")
    null = _bytes(given.get("null"), b"" if csv else b"\\N")
    quote = _byte(given, "quote", b'"')
    escape = _byte(given, "escape", quote)
    if not csv and ("quote" in given or "escape" in given):
        raise Refused("COPY QUOTE and ESCAPE belong to the csv format")
    if delimiter in (b"\n", b"\r") or (csv and delimiter == quote):
        raise Refused("that COPY DELIMITER cannot be read back safely")
    if not null.isascii() or b"\n" in null or b"\r" in null or delimiter in null:
        # ASCII: the same bytes in every allowed client encoding, as the server writes them.
        raise Refused("that COPY NULL string cannot be read back safely")
    if not csv and (delimiter in b"\\.abcdefghijklmnopqrstuvwxyz0123456789"):
        raise Refused("that COPY DELIMITER cannot be read back safely")
    if not csv and _producible(null, delimiter):
        # A value whose text equals the NULL string would pass for NULL unmasked, and
        # a NULL for a guessed value: an equality oracle on any column.
        raise Refused("in COPY's text format the NULL string must be one no value can be"
                      " written as (like the default \\N); use csv for another")  # fmt: skip
    return CopyFormat(kind, delimiter, null, quote, escape, header)


def _producible(null: bytes, delimiter: bytes) -> bool:
    """Whether some value's text-format form equals `null`."""
    pos = 0
    while pos < len(null):
        byte = null[pos]
        if byte == 0x5C:  # a backslash: only the escapes COPY writes are producible
            following = null[pos + 1 : pos + 2]
            if not following or (following != delimiter and following not in b"\\bfnrtv"):
                return False
            pos += 2
            continue
        if byte in _ALWAYS_ESCAPED or byte == delimiter[0]:
            return False
        pos += 1
    return True


def _word(arg: object, default: str) -> str:
    if arg is None:
        return default
    if isinstance(arg, dict) and "String" in arg:
        return str(arg["String"].get("sval", "")).lower()
    raise Refused("a COPY option value the masking does not read")


def _header(arg: object) -> bool:
    if arg is None:  # HEADER alone
        return True
    if isinstance(arg, dict) and "Boolean" in arg:
        return bool(arg["Boolean"].get("boolval", False))
    if isinstance(arg, dict) and "Integer" in arg:
        value = str(arg["Integer"].get("ival", 0))
    else:
        value = _word(arg, "")
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise Refused("COPY HEADER takes true or false in masked mode")


def _bytes(arg: object, default: bytes) -> bytes:
    if arg is None:
        return default
    if isinstance(arg, dict) and "String" in arg:
        return str(arg["String"].get("sval", "")).encode()
    raise Refused("a COPY option value the masking does not read")


def _byte(given: dict[str, object], name: str, default: bytes) -> bytes:
    value = _bytes(given.get(name), default)
    if len(value) != 1 or value[0] > 0x7F:
        raise Refused(f"COPY {name.upper()} must be a single one-byte character")
    return value


def _check_encoding(arg: object) -> None:
    if arg is None:
        return
    name = _word(arg, "").replace("-", "").replace("_", "")
    if name not in ENCODINGS:
        raise Refused(f"COPY ENCODING {name!r} is not allowed in masked mode: use UTF8")


def copy_fields(catalog: Catalog, columns: Sequence[Col], fmt: CopyFormat) -> list[Field]:
    """RowDescription-like fields for a COPY's columns: a bare table column's origin and type
    from the catalog, else no origin and text."""
    types = {(r.relid, a.attnum): a.type_oid
             for r in catalog.relations.values() for a in r.attributes}  # fmt: skip
    code = 1 if fmt.binary else 0
    fields = []
    for col in columns:
        origin, type_oid = (0, 0), TEXT
        if col.bare and len(col.sources) == 1:
            [source] = col.sources
            if source in types:
                origin, type_oid = source, types[source]
        fields.append(Field(col.name, origin[0], origin[1], type_oid, -1, -1, code))
    return fields
