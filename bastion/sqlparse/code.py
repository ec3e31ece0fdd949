"""Code inside statement text: string literals PostgreSQL runs as SQL or PL/pgSQL (pure).

The query log redacts literals, but a literal that is code is what ran: a DO block, a function
or procedure body, the query text given to query_to_xml, ts_rewrite, ts_stat or dblink, the
string a PL/pgSQL EXECUTE runs. `code_literals` finds each one in a parsed statement and gives
its replacement: the code itself, parsed, with only its own literals redacted (by the caller's
`inner` function, so code inside code is treated the same way).

Code that cannot be parsed for redaction (another language, a PL/pgSQL EXECUTE of a string
built at run time, a query given as a parameter) raises KeptWhole: the statement is then
logged as it is, flagged with the reason, rather than with its code hidden.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from pglast import parser

from .tree import Node, string_list, unwrap

MAX_DEPTH = 8
"""Code inside code inside code...: deeper than this is logged whole."""

Inner = Callable[[str, int], str]
"""Redacts SQL text found at a nesting depth (raises KeptWhole when it cannot)."""


class KeptWhole(Exception):
    """The statement's code cannot be redacted safely; the message says why."""


def _first(args: list[Any]) -> list[int]:
    return [0] if args else []


def _second_of_two(args: list[Any]) -> list[int]:
    return [1] if len(args) == 2 else []


def _last_text(args: list[Any]) -> list[int]:
    """dblink's query is its last argument that is not the fail_on_error flag."""
    for index in range(len(args) - 1, -1, -1):
        if not _is_boolean(args[index]):
            return [index]
    return []


def _crosstab(args: list[Any]) -> list[int]:
    """crosstab(source_sql [, category_sql | column count])."""
    if len(args) == 2 and not _is_integer(args[1]):
        return [0, 1]
    return _first(args)


def _cron(args: list[Any]) -> list[int]:
    """pg_cron: schedule([job,] schedule, command) and schedule_in_database(job, sched, cmd, db)."""
    return [2] if len(args) >= 3 else ([1] if len(args) == 2 else [])


# Functions that run a query given to them as text, and which arguments hold it.
SQL_TEXT_FUNCTIONS: dict[str, Callable[[list[Any]], list[int]]] = {
    "query_to_xml": _first,
    "query_to_xmlschema": _first,
    "query_to_xml_and_xmlschema": _first,
    "ts_stat": _first,
    "ts_rewrite": _second_of_two,
    "dblink": _last_text,
    "dblink_exec": _last_text,
    "dblink_open": _last_text,
    "dblink_send_query": _last_text,
    "crosstab": _crosstab,
    "crosstab2": _first,
    "crosstab3": _first,
    "crosstab4": _first,
    "pg_background_launch": _first,
    "replicate_ddl_command": _first,
    "schedule": _cron,  # cron.schedule only
    "schedule_in_database": _cron,  # cron.schedule_in_database only
}
_CRON_ONLY = frozenset({"schedule", "schedule_in_database"})
# Settings whose value is a shell command or a library the server will run or load.
COMMAND_SETTINGS = frozenset({
    "archive_command", "archive_cleanup_command", "restore_command", "recovery_end_command",
    "ssl_passphrase_command", "shared_preload_libraries", "session_preload_libraries",
    "local_preload_libraries", "dynamic_library_path",
})  # fmt: skip
_HINTS = ("function", "procedure", "program", "u&", "_command", "librar", "query_to_xml",
          "ts_stat", "ts_rewrite", "dblink", "crosstab", "pg_background", "replicate_ddl",
          "schedule")  # fmt: skip
_DO_OR_LOAD = re.compile(r"\b(?:do|load)\b")


def may_hold_code(sql: str) -> bool:
    """Whether `sql` may hold code: without one of these words (any case) it holds none.

    A cheap first test (substring checks, 1-2 µs), so that texts with no code skip the parse.
    """
    lowered = sql.lower()
    if any(word in lowered for word in _HINTS):
        return True
    return ("do" in lowered or "load" in lowered) and _DO_OR_LOAD.search(lowered) is not None


# PL/pgSQL statements that run a string as SQL, and the field holding the string's expression.
_DYNAMIC = {"PLpgSQL_stmt_dynexecute": "query", "PLpgSQL_stmt_dynfors": "query",
            "PLpgSQL_stmt_open": "dynquery", "PLpgSQL_stmt_return_query": "dynquery"}  # fmt: skip
_STRINGS = frozenset({"SCONST", "USCONST"})


def code_literals(sql: str, tree: dict[str, Any], depth: int, inner: Inner) -> dict[int, str]:
    """For each code literal in `sql` (parsed as `tree`), its start (in characters) and the text
    to log in its place. Raises KeptWhole."""
    if depth > MAX_DEPTH:
        raise KeptWhole("its code is nested too deeply to redact")
    data = sql.encode("utf-8", "surrogatepass")
    found: dict[int, str] = {}
    for raw in tree["stmts"]:
        start = raw.get("stmt_location", 0)
        length = raw.get("stmt_len", 0) or len(data) - start
        statement = data[start : start + length].decode("utf-8", "surrogatepass")
        name, node = unwrap(raw["stmt"])
        body = _body(name, node, statement, depth, inner)
        if body is not None:
            found[_chars(data, body[0])] = dollar_quoted(body[1])
        for location, text in _text_arguments(node, depth, inner):
            found[_chars(data, location)] = dollar_quoted(text)
    return found


def _body(
    name: str, node: Node, statement: str, depth: int, inner: Inner
) -> tuple[int, str] | None:
    """A DO block's or a function's body: (its byte location, its redacted text), or None."""
    if name == "CopyStmt" and node.get("is_program"):
        raise KeptWhole("COPY ... PROGRAM runs a shell command on the database server")
    if name == "LoadStmt":
        raise KeptWhole("LOAD loads a library into the database server")
    if name not in ("DoStmt", "CreateFunctionStmt"):
        return None
    elems = node.get("args" if name == "DoStmt" else "options") or []
    options = {e["DefElem"]["defname"]: e["DefElem"] for e in elems if "DefElem" in e}
    what = "DO" if name == "DoStmt" else "its function body"
    language_elem = options.get("language")
    default = "plpgsql" if name == "DoStmt" else "sql"
    language = str(language_elem["arg"]["String"]["sval"]) if language_elem else default
    body_elem = options.get("as")
    if body_elem is None:
        return None  # BEGIN ATOMIC or RETURN: the body is part of the statement's own tree
    arg = body_elem["arg"]
    texts = [str(arg["String"]["sval"])] if "String" in arg else string_list(arg["List"]["items"])
    if len(texts) != 1:
        raise KeptWhole(f"{what} in language {language} is not code that can be parsed")
    if language.lower() == "plpgsql":
        return body_elem["arg_location"], plpgsql(statement, texts[0], depth, inner)
    if language.lower() == "sql" and name != "DoStmt":
        return body_elem["arg_location"], inner(texts[0], depth + 1)
    raise KeptWhole(f"{what} in language {language} cannot be parsed for redaction")


def _text_arguments(node: Node, depth: int, inner: Inner) -> list[tuple[int, str]]:
    """Each query text given to a function that runs it: (byte location, redacted text)."""
    found = []
    stack: list[Any] = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
            continue
        if not isinstance(item, dict):
            continue
        call = item.get("FuncCall") if len(item) == 1 else None
        if isinstance(call, dict):
            found.extend(_call_texts(call, depth, inner))
        name = item.get("name")
        if str(item.get("kind", "")).startswith("VAR_") and name in COMMAND_SETTINGS:
            raise KeptWhole(f"it sets {name}, a command or library the server runs")
        stack.extend(item.values())
    return found


def _call_texts(call: Node, depth: int, inner: Inner) -> list[tuple[int, str]]:
    names = [n.lower() for n in string_list(call.get("funcname"))]
    name = names[-1] if names else ""
    which = SQL_TEXT_FUNCTIONS.get(name)
    if which is None or (name in _CRON_ONLY and names[:-1] != ["cron"]):
        return []
    args = call.get("args") or []
    if any(isinstance(arg, dict) and "NamedArgExpr" in arg for arg in args):
        raise KeptWhole(f"{name}() is called with named arguments")
    found = []
    for index in which(args):
        const = _string_constant(args[index])
        if const is None:
            raise KeptWhole(f"{name}() runs SQL text that is not written in the statement")
        value, location = const
        found.append((location, inner(value, depth + 1)))
    return found


def plpgsql(statement: str, body: str, depth: int, inner: Inner) -> str:
    """A PL/pgSQL body with its literals redacted, each string it EXECUTEs kept as redacted
    SQL. Raises KeptWhole for a body that does not parse or runs SQL built at run time."""
    try:
        functions = json.loads(parser.parse_plpgsql_json(statement))
    except Exception:  # the server would refuse it too; show it as it is
        raise KeptWhole("its PL/pgSQL body does not parse") from None
    dynamic = _dynamic_queries(functions)
    if any(not _is_one_string(query) for query in dynamic):
        raise KeptWhole("its PL/pgSQL runs SQL built at run time (EXECUTE of an expression)")
    tokens = parser.scan(body)
    replacements: dict[int, str] = {}
    previous = ""
    for token in tokens:
        _check_body_token(body, token, previous)
        if token.name in _STRINGS and previous == "EXECUTE":
            value = _literal_value(body[token.start : token.end + 1])
            replacements[token.start] = single_quoted(inner(value, depth + 1))
        if token.name not in ("SQL_COMMENT", "C_COMMENT"):
            previous = token.name
    if len(replacements) != len(dynamic):
        raise KeptWhole("its PL/pgSQL EXECUTE statements could not be matched to the text")
    return scrub(body, tokens, replacements)


def _check_body_token(body: str, token: parser.Token, previous: str) -> None:
    """Code in code that the body's own pass would hide: refuse to redact it."""
    if token.name == "UIDENT":
        raise KeptWhole("its PL/pgSQL uses a U&-escaped name")
    if token.name in ("PROGRAM", "LOAD"):
        raise KeptWhole(f"its PL/pgSQL runs {token.name}")
    if token.name in _STRINGS and previous in ("AS", "DO"):
        raise KeptWhole("its PL/pgSQL defines code of its own")
    if token.name == "IDENT":
        word = body[token.start : token.end + 1].strip('"').lower()
        if word in SQL_TEXT_FUNCTIONS:
            raise KeptWhole(f"its PL/pgSQL calls {word}(), which runs SQL text")


def _dynamic_queries(value: object) -> list[str]:
    """The expression text of every EXECUTE in a parsed PL/pgSQL function."""
    found = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            for key, child in item.items():
                field = _DYNAMIC.get(key)
                if field is not None and isinstance(child, dict) and field in child:
                    found.append(str(child[field]["PLpgSQL_expr"].get("query", "")))
                stack.append(child)
    return found


def scrub(text: str, tokens: list[parser.Token], replacements: dict[int, str]) -> str:
    """Replace constant tokens (by `replacements` where they start, else by the next `$n`) and
    comment tokens (by an empty comment). Raises KeptWhole when a replacement finds no token."""
    number = max((_param_number(text, token) for token in tokens), default=0)
    pieces = []
    position = 0
    used = 0
    for token in tokens:
        if token.start in replacements and token.name in _CONSTANTS:
            replacement = replacements[token.start]
            used += 1
        elif token.name in _CONSTANTS:
            number += 1
            replacement = f"${number}"
        elif token.name in _COMMENTS:
            replacement = COMMENT_PLACEHOLDER
        else:
            continue
        pieces.append(text[position : token.start])
        pieces.append(replacement)
        position = token.end + 1
    if used != len(replacements):
        raise KeptWhole("its code could not be located in the text")
    pieces.append(text[position:])
    return "".join(pieces)


_CONSTANTS = frozenset(
    {"SCONST", "USCONST", "BCONST", "XCONST", "ICONST", "FCONST", "TRUE_P", "FALSE_P"}
)
_COMMENTS = frozenset({"SQL_COMMENT", "C_COMMENT"})
COMMENT_PLACEHOLDER = "/* */"
"""What a comment becomes: comments are free text and may quote customer data."""


def _param_number(text: str, token: parser.Token) -> int:
    if token.name != "PARAM":
        return 0
    digits = text[token.start + 1 : token.end + 1]
    return int(digits) if digits.isdigit() else 0


def dollar_quoted(text: str) -> str:
    """`text` between dollar quotes whose tag it does not contain."""
    tag, number = "", 0
    while (text + f"${tag}$").find(f"${tag}$") != len(text):
        number += 1
        tag = f"q{number}"
    return f"${tag}${text}${tag}$"


def single_quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _literal_value(token_text: str) -> str:
    """The value of a string constant token, as PostgreSQL reads it (E'' escapes and all)."""
    tree = json.loads(parser.parse_sql_json("SELECT " + token_text))
    target = tree["stmts"][0]["stmt"]["SelectStmt"]["targetList"][0]["ResTarget"]["val"]
    const = _string_constant(target)
    if const is None:
        raise KeptWhole("its PL/pgSQL EXECUTE string could not be read")
    return const[0]


def _string_constant(node: object) -> tuple[str, int] | None:
    """A string constant's (value, byte location), through a cast; None for anything else."""
    if isinstance(node, dict) and "TypeCast" in node:
        node = node["TypeCast"].get("arg")
    if not isinstance(node, dict) or "A_Const" not in node:
        return None
    const = node["A_Const"]
    if "sval" not in const or "location" not in const:
        return None
    return str(const["sval"].get("sval", "")), int(const["location"])


def _is_boolean(node: object) -> bool:
    return isinstance(node, dict) and "boolval" in node.get("A_Const", {})


def _is_integer(node: object) -> bool:
    return isinstance(node, dict) and "ival" in node.get("A_Const", {})


def _is_one_string(expression: str) -> bool:
    tokens = [t for t in parser.scan(expression) if t.name not in _COMMENTS]
    return len(tokens) == 1 and tokens[0].name in _STRINGS


def _chars(data: bytes, location: int) -> int:
    """A parse tree's byte location as a character position in the text."""
    return len(data[:location].decode("utf-8", "surrogatepass"))
