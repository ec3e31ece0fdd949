"""Fixtures for the SSH door's tests: a bastion with alice granted web-1 on the test sshd."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Bastion
from tests.realssh import Sshd


@pytest.fixture
def bastion(tmp_path: Path, sshd: Sshd) -> Iterator[Bastion]:
    """alice (engineer, with a key) may reach web-1 (the test sshd, host key pinned)."""
    b = Bastion.with_alice(tmp_path / "bastion", sshd)
    b.start()
    try:
        yield b
    finally:
        b.stop()
