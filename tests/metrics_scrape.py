"""Scrape a running bastion's /metrics over HTTP and read it with prometheus_client's parser."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

DEADLINE = 30.0  # a safety net for values that move after the client returns, not a timing


@dataclass(frozen=True)
class Scrape:
    """One scrape: its text, and every sample by name and labels."""

    text: str
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]
    families: frozenset[str]

    def value(self, name: str, **labels: str) -> float:
        """A sample's value (0 when the series is absent: a counter that never moved)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def has(self, name: str, **labels: str) -> bool:
        return (name, frozenset(labels.items())) in self.samples

    def names(self) -> set[str]:
        """Every sample name (counters' _total, histograms' _bucket, ...) and family name."""
        return {name for name, _ in self.samples} | set(self.families)


def fetch(url: str, token: str | None = None) -> tuple[int, str]:
    """GET url: (status, body text)."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - loopback http
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(url: str, token: str | None = None) -> Scrape:
    status, text = fetch(url, token)
    assert status == 200, (status, text)
    return parse(text)


def parse(text: str) -> Scrape:
    """The text format, read by prometheus_client's own parser."""
    samples = {}
    families = set()
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(text, samples, frozenset(families))


def until(url: str, check: Callable[[Scrape], bool], what: str, token: str | None = None) -> Scrape:
    """Scrape until `check` holds (values a door writes just after the client returns)."""
    end = time.monotonic() + DEADLINE
    while True:
        found = scrape(url, token)
        if check(found):
            return found
        assert time.monotonic() < end, f"{what}: not seen within {DEADLINE}s"
        time.sleep(0.05)
