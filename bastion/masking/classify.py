"""Which columns are sensitive: explicit rules from the config, then names that say so (pure)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

# Built-in categories, tried in order on the column's name (lower case, with the separators
# "_", "-" and " " and camelCase boundaries treated alike). Each names its default style.
_WORD = r"(?:^|_)"
_END = r"(?:_|$)"
CATEGORIES: tuple[tuple[str, str, re.Pattern[str]], ...] = tuple(
    (name, style, re.compile(pattern))
    for name, style, pattern in (
        ("secret", "full", rf"{_WORD}(password|passwd|pwd|secret|token|api_?key|apikey"
                           rf"|private_?key|access_?key|client_secret|otp|totp|pin){_END}"),
        ("card", "partial", rf"{_WORD}(card|cc|credit_?card|card_?number|cardnumber|pan"
                            rf"|cvv|cvc){_END}"),
        ("iban", "partial", rf"{_WORD}(iban|account_?(number|no|num)|acct_?(number|no|num)"
                            rf"|bank_?account|routing_?number|sort_?code|bic|swift){_END}"),
        ("national_id", "partial", rf"{_WORD}(ssn|social_?security(_?number)?|national_?id"
                                   rf"|nin|sin|tax_?id|tin|passport(_?number)?"
                                   rf"|id_?card(_?number)?|driver_?licen[cs]e){_END}"),
        ("email", "partial", rf"{_WORD}(e_?mail(_?address)?|mail_?address){_END}"),
        ("phone", "partial", rf"{_WORD}(phone|phone_?number|mobile|cell|tel|telephone|fax"
                             rf"|msisdn){_END}"),
        ("birth_date", "null", rf"{_WORD}(dob|date_?of_?birth|birth_?date|birthdate"
                               rf"|birthday){_END}"),
        ("ip_address", "hash", rf"{_WORD}(ip|ip_?addr(ess)?|client_?ip|remote_?addr"
                               rf"|inet){_END}"),
        ("address", "full", rf"{_WORD}(street|street_?address|address(_?line)?(_?\d)?"
                            rf"|addr|postcode|post_?code|zip|zip_?code|postal_?code){_END}"),
    )
)  # fmt: skip
STYLES = ("full", "partial", "hash", "null")


@dataclass(frozen=True)
class Column:
    """A column of the target's database, as the catalog names it."""

    schema: str
    table: str
    name: str

    @property
    def dotted(self) -> str:
        return f"{self.schema}.{self.table}.{self.name}"


@dataclass(frozen=True)
class Verdict:
    """Sensitive or clean, the category and style, and the rule that decided it."""

    sensitive: bool
    rule: str
    category: str | None = None
    style: str | None = None


@dataclass(frozen=True)
class Rules:
    """A target's explicit rules: `sensitive` and `clean` patterns ("schema.table.column",
    "table.column" or "column", each part may use * and ?), and styles per pattern."""

    sensitive: tuple[str, ...] = ()
    clean: tuple[str, ...] = ()
    styles: tuple[tuple[str, str], ...] = ()


def check_pattern(pattern: str) -> str:
    """A rule pattern, checked: one to three dotted parts, none empty. Raises ValueError."""
    parts = pattern.split(".")
    if not 1 <= len(parts) <= 3 or any(not p for p in parts):
        raise ValueError(
            f"{pattern!r} is not a column pattern: use schema.table.column, table.column or"
            " column, with * or ? as wildcards"
        )
    return pattern


def _specificity(pattern: str) -> tuple[int, int]:
    """More named parts, then fewer wildcard characters, is more specific."""
    parts = pattern.split(".")
    named = sum(1 for p in parts if not any(c in p for c in "*?"))
    return named, -sum(p.count("*") + p.count("?") for p in parts)


def matches(pattern: str, column: Column) -> bool:
    """Case-insensitive match of a pattern against the column's last parts."""
    parts = pattern.lower().split(".")
    names = [column.schema.lower(), column.table.lower(), column.name.lower()][-len(parts) :]
    return all(fnmatchcase(name, part) for name, part in zip(names, parts, strict=True))


def _best(patterns: Sequence[str], column: Column) -> str | None:
    found = [p for p in patterns if matches(p, column)]
    return max(found, key=_specificity) if found else None


def words(name: str) -> str:
    """A column name as underscore-separated lower-case words: "cardNumber" -> "card_number"."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return re.sub(r"[\s\-_.]+", "_", spaced).strip("_").lower()


def by_name(name: str) -> tuple[str, str] | None:
    """(category, default style) when the name says the column is sensitive, else None."""
    plain = words(name)
    for category, style, pattern in CATEGORIES:
        if pattern.search(plain):
            return category, style
    return None


def classify(column: Column, rules: Rules) -> Verdict:
    """Explicit rules first (the most specific wins; on a tie, sensitive wins), then the name."""
    sensitive, clean = _best(rules.sensitive, column), _best(rules.clean, column)
    named = by_name(column.name)
    category = named[0] if named else "configured"
    if sensitive and (not clean or _specificity(sensitive) >= _specificity(clean)):
        style = style_for(column, rules) or (named[1] if named else "full")
        return Verdict(True, f"sensitive = {sensitive!r}", category, style)
    if clean:
        return Verdict(False, f"clean = {clean!r}")
    if named:
        return Verdict(True, f"name looks like {named[0]}", named[0],
                       style_for(column, rules) or named[1])  # fmt: skip
    return Verdict(False, "no rule, and the name says nothing")


def style_for(column: Column, rules: Rules) -> str | None:
    """The style a `styles` entry sets for this column (the most specific pattern wins)."""
    best = _best([p for p, _ in rules.styles], column)
    return dict(rules.styles)[best] if best else None
