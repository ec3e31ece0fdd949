"""Fixtures for the reviewer's reads: a real store with real recordings, and the viewers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.access.viewing import Viewer
from bastion.audit.location import PgLocation
from tests.reviewing.world import World, build


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = build(tmp_path)
    yield w
    w.store.close()


@pytest.fixture
def pg_world(tmp_path: Path, pg_store_at: PgLocation) -> Iterator[World]:
    """The same world, its store kept on PostgreSQL."""
    w = build(tmp_path, new_at=pg_store_at)
    yield w
    w.store.close()


OPERATOR = Viewer.operator("cli:root")
RITA = Viewer.user("rita", "reviewer")
ALICE = Viewer.user("alice", "engineer")
BOB = Viewer.user("bob", "engineer")
