"""Fixtures the export tests share: a real webhook receiver (tests/export/receivers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.export.receivers import Hook


@pytest.fixture
def hook() -> Iterator[Hook]:
    """A webhook receiver on a free loopback port, closed at the end."""
    server = Hook()
    try:
        yield server
    finally:
        server.close()
