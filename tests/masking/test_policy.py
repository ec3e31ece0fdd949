"""Which columns are sensitive (rules, then names) and how their values are masked."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.config import load_config
from bastion.errors import ConfigError
from bastion.masking.classify import Column, Rules, by_name, check_pattern, classify, words
from bastion.masking.detect import DEFAULT
from bastion.masking.policy import MaskingConfigError, MaskingPolicy, parse_masking
from bastion.masking.values import (
    full,
    keyed_hash,
    masker,
    null,
    partial,
    week_of,
)

KEY = b"k" * 32


@pytest.mark.parametrize(
    ("name", "category"),
    [
        ("email", "email"), ("customer_email", "email"), ("EmailAddress", "email"),
        ("ssn", "national_id"), ("national_id", "national_id"), ("passport_number", "national_id"),
        ("phone", "phone"), ("mobile", "phone"), ("phoneNumber", "phone"),
        ("card_number", "card"), ("pan", "card"), ("creditCard", "card"),
        ("iban", "iban"), ("account_number", "iban"), ("bank_account", "iban"),
        ("password", "secret"), ("password_hash", "secret"), ("api_key", "secret"),
        ("refresh_token", "secret"), ("client_secret", "secret"),
        ("date_of_birth", "birth_date"), ("dob", "birth_date"), ("birthdate", "birth_date"),
        ("street_address", "address"), ("address_line_1", "address"), ("zip", "address"),
        ("ip_address", "ip_address"), ("client_ip", "ip_address"),
    ],
)  # fmt: skip
def test_names_that_say_sensitive(name: str, category: str) -> None:
    found = by_name(name)
    assert found is not None and found[0] == category


PLAIN = [
    "id",
    "name",
    "created_at",
    "status",
    "total_cents",
    "shipping",
    "description",
    "zipper_size",
    "tips",
    "company",
]


@pytest.mark.parametrize("name", PLAIN)
def test_names_that_say_nothing(name: str) -> None:
    assert by_name(name) is None


def test_words_split_camel_case_and_separators() -> None:
    assert words("cardNumber") == "card_number"
    assert words("Street-Address 2") == "street_address_2"


def test_rules_most_specific_wins_and_ties_go_to_sensitive() -> None:
    email = Column("public", "newsletter", "email")
    note = Column("public", "orders", "note")
    rules = Rules(sensitive=("*.note", "public.orders.note"), clean=("public.newsletter.email",))
    verdict = classify(email, rules)
    assert not verdict.sensitive and verdict.rule == "clean = 'public.newsletter.email'"
    assert classify(Column("public", "customers", "email"), rules).sensitive  # by name
    found = classify(note, rules)
    assert found.sensitive and found.rule == "sensitive = 'public.orders.note'"
    assert (found.category, found.style) == ("configured", "full")
    tie = Rules(sensitive=("orders.note",), clean=("orders.note",))
    assert classify(note, tie).sensitive
    wider_clean = Rules(sensitive=("public.orders.note",), clean=("*.note",))
    assert classify(note, wider_clean).sensitive


def test_patterns_are_checked_and_matched_case_insensitively() -> None:
    with pytest.raises(ValueError, match="not a column pattern"):
        check_pattern("a.b.c.d")
    with pytest.raises(ValueError, match="not a column pattern"):
        check_pattern("public..email")
    rules = Rules(sensitive=("Public.Customers.NOTE",))
    assert classify(Column("public", "customers", "note"), rules).sensitive


def test_styles_come_from_the_rules_or_the_category() -> None:
    rules = Rules(styles=(("*.email", "hash"), ("customers.email", "null")))
    assert classify(Column("public", "customers", "email"), rules).style == "null"
    assert classify(Column("public", "orders", "email"), rules).style == "hash"
    assert classify(Column("public", "orders", "card_number"), Rules()).style == "partial"
    assert classify(Column("public", "users", "password"), Rules()).style == "full"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"john@example.com", b"j***@example.com"),
        (b"a@b.io", b"a@b.io"),
        (b"4111 1111 1111 1111", b"**** **** **** 1111"),
        (b"123-45-6789", b"***-**-6789"),
        (b"+1 555-123-4567", b"+* ***-***-4567"),
        (b"DE89370400440532013000", b"******************3000"),
        (b"secret words", b"****"),
        (b"ab", b"**"),
        (b"", b""),
        (b"\xff\xfe", b"**"),
    ],
)  # fmt: skip
def test_partial_shows_a_little_and_never_grows(value: bytes, expected: bytes) -> None:
    assert partial(value) == expected
    assert len(partial(value)) <= len(value)


def test_full_is_stars_no_longer_than_the_value() -> None:
    assert full(b"123-45-6789") == b"****" and full(b"ab") == b"**" and full(b"") == b""


def test_keyed_hash_is_stable_within_a_week_and_needs_the_key() -> None:
    week = week_of(datetime(2026, 11, 22, tzinfo=UTC))
    assert week == "2026-W47"
    same = keyed_hash(KEY, week)
    assert same(b"john@example.com") == same(b"john@example.com") != same(b"jane@example.com")
    assert same(b"john@example.com") != keyed_hash(KEY, "2026-W48")(b"john@example.com")
    assert same(b"john@example.com") != keyed_hash(b"x" * 32, week)(b"john@example.com")
    assert len(same(b"john@example.com")) == 16 and len(same(b"abc")) == 3


def test_non_text_types_are_null_and_text_types_keep_the_style() -> None:
    week = "2026-W47"
    assert masker("partial", 23, KEY, week) is null  # int4
    assert masker("full", 1082, KEY, week) is null  # date
    assert masker("partial", 25, KEY, week) is partial  # text
    assert masker("full", 1043, KEY, week) is full  # varchar
    assert masker("null", 25, KEY, week) is null
    assert masker("full", 99999, KEY, week, text_like=True) is full  # citext, by its name


MASKING = """
[targets.orders-prod.masking]
sensitive = ["public.orders.note", "*.card_number"]
clean = ["public.newsletter.email"]
styles = { "*.email" = "hash" }
subject_keys = ["customers.id", "public.orders.customer_id"]
"""


def test_a_targets_masking_table_loads(tmp_path: Path) -> None:
    path = tmp_path / "bastion.toml"
    path.write_text(MASKING, encoding="utf-8")
    policy = load_config(path).target_policy("orders-prod").masking
    assert policy.enabled and policy.rules.sensitive == ("public.orders.note", "*.card_number")
    assert policy.rules.styles == (("*.email", "hash"),)
    assert policy.subject_keys == ("customers.id", "public.orders.customer_id")
    assert load_config(path).target_policy("other").masking == MaskingPolicy()


@pytest.mark.parametrize(
    ("table", "where", "problem"),
    [
        ('sensitive = "email"', "targets.db.masking.sensitive", "must be a list"),
        ('clean = ["a.b.c.d"]', "targets.db.masking.clean", "not a column pattern"),
        ('styles = { "*.email" = "blur" }', "targets.db.masking.styles", "'blur' is not a style"),
        ('subject_keys = ["id"]', "targets.db.masking.subject_keys", "table.column"),
        ('subject_keys = ["*.id"]', "targets.db.masking.subject_keys", "table.column"),
        ("enabled = 1", "targets.db.masking.enabled", "true or false"),
        ("colour = 1", "targets.db.masking.colour", "unknown key"),
    ],
)  # fmt: skip
def test_mistakes_in_a_masking_table_name_the_key(
    tmp_path: Path, table: str, where: str, problem: str
) -> None:
    path = tmp_path / "bastion.toml"
    path.write_text(f"[targets.db.masking]\n{table}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key == where and problem in caught.value.problem


@given(st.binary(max_size=64))
def test_no_style_ever_makes_a_value_longer(value: bytes) -> None:
    for mask in (full, partial, keyed_hash(KEY, "2026-W47")):
        assert len(mask(value)) <= len(value)


@given(st.text(alphabet="0123456789- +()", min_size=6, max_size=30))
def test_partial_keeps_at_most_the_last_four_digits(value: str) -> None:
    out = partial(value.encode()).decode()
    shown = [c for c in out if c.isdigit()]
    if sum(c.isdigit() for c in value) >= 6:
        assert len(shown) == 4 and shown == [c for c in value if c.isdigit()][-4:]


def test_detectors_and_phone_regions_are_checked() -> None:
    policy = parse_masking({"detectors": ["email", "de.idnr"], "phone_regions": ["nl", "BE"]})
    assert policy.detectors.kinds == ("email", "de.idnr")
    assert policy.detectors.regions == ("NL", "BE")
    assert parse_masking({}).detectors.kinds == DEFAULT
    for raw, key in (({"detectors": ["email", "passport"]}, "detectors"),
                     ({"detectors": "email"}, "detectors"),
                     ({"phone_regions": ["XX"]}, "phone_regions")):  # fmt: skip
        with pytest.raises(MaskingConfigError) as caught:
            parse_masking(raw)
        assert caught.value.key == key
