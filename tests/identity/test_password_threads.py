"""Password checks through the core: argon2 runs in threads of its own, never the store's."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.harness import Bastion

PASSWORD = "correct horse battery"


def test_a_password_check_does_not_hold_up_the_store(tmp_path: Path) -> None:
    """While a guess is being hashed, other store calls go ahead (a guessing client once
    stalled every store call for the length of an argon2 verify)."""
    b = Bastion(tmp_path / "bastion")
    b.add_user("bob", key=False, password=PASSWORD)

    async def race() -> tuple[bool, bool]:
        check = asyncio.ensure_future(b.core.check_password("bob", "a wrong guess!", "test"))
        lookup = asyncio.ensure_future(b.core.run(b.store.find_user, "bob"))
        done, _ = await asyncio.wait({check, lookup}, return_when=asyncio.FIRST_COMPLETED)
        first_was_lookup = lookup in done and check not in done
        return first_was_lookup, await check

    try:
        first_was_lookup, ok = asyncio.run(race())
        assert first_was_lookup and not ok
        assert asyncio.run(b.core.check_password("bob", PASSWORD, "test"))
        assert b.store.user("bob").failed_attempts == 1  # the wrong guess counted
    finally:
        b.release()
