"""Fixtures for recording tests: secrets boxes with fresh random keys."""

from __future__ import annotations

import os

import pytest

from bastion.identity.sealing import SecretBox


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(os.urandom(32))


@pytest.fixture
def other_box() -> SecretBox:
    return SecretBox(os.urandom(32))
