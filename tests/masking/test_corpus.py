"""The corpus of ordinary reads (tests/masking/corpus/*.toml: what psql, pgcli, SQLAlchemy,
pandas, the drivers and GUI tools send, and analytics and support queries over the shop), each
planned in masked mode over the catalog the door reads from a real PostgreSQL 15: at most 5%
may be refused, and the refused ones are printed with their reasons."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bastion.masking.lineage import Refused
from bastion.masking.policy import parse_masking
from bastion.masking.session import Masking
from bastion.pgproxy import upstream
from bastion.pgproxy.masked import SEARCH_PATH
from tests.masking.door import POLICY
from tests.realpg import PgDatabase

CORPUS = Path(__file__).parent / "corpus"
MOST_REFUSED = 0.05


@dataclass(frozen=True)
class Entry:
    file: str
    source: str
    sql: str


def corpus() -> list[Entry]:
    """Every statement of every corpus file, each with where it came from."""
    found = []
    for path in sorted(CORPUS.glob("*.toml")):
        for item in tomllib.loads(path.read_text())["statement"]:
            found.append(Entry(path.stem, str(item["source"]), str(item["sql"])))
    return found


async def shop_masking(shop: PgDatabase) -> Masking:
    """Masking as the door builds it for the shop: its catalog read by the door's own code."""
    up = await upstream.connect(shop.host, shop.port, user=shop.user, password=shop.password,
                                database=shop.database, params={})  # fmt: skip
    try:
        catalog = await upstream.read_catalog(up)
    finally:
        up.close()
    policy = parse_masking(tomllib.loads(POLICY)["targets"]["shop"]["masking"])
    return Masking(catalog, policy, b"k" * 32, "2026-W49", SEARCH_PATH)


@pytest.fixture
async def masking(shop: PgDatabase) -> Masking:
    return await shop_masking(shop)


def refusals(masking: Masking, entries: list[Entry]) -> Iterator[tuple[Entry, str]]:
    for entry in entries:
        try:
            masking.plan(entry.sql)
        except Refused as exc:
            yield entry, str(exc)


def test_the_corpus_is_large_and_says_where_each_statement_came_from() -> None:
    entries = corpus()
    assert len(entries) >= 150
    assert len({e.sql for e in entries}) == len(entries)  # no statement counted twice
    assert all(e.source.strip() for e in entries)


def test_at_most_5_percent_of_the_corpus_is_refused(masking: Masking) -> None:
    entries = corpus()
    refused = list(refusals(masking, entries))
    print(f"\nmasked-mode corpus: {len(refused)} of {len(entries)} refused"
          f" ({len(refused) / len(entries):.1%}); by file:")  # fmt: skip
    for name in sorted({e.file for e in entries}):
        total = sum(e.file == name for e in entries)
        print(f"  {name:12} {sum(e.file == name for e, _ in refused):3} of {total:3} refused")
    for entry, why in refused:
        first = " ".join(entry.sql.split())[:100]
        print(f"- [{entry.file}] {entry.source}: {first}\n    -> {why}")
    assert len(refused) / len(entries) <= MOST_REFUSED
