"""A SQLite store that retention pruned is copied to PostgreSQL (`bastion store copy`): the copy
starts from the same checkpoint and `audit verify` proves it there."""

from __future__ import annotations

import json
import shutil

from bastion.audit.location import PgLocation
from tests.test_retention import History, history

__all__ = ["history"]


def test_a_pruned_store_is_copied_and_verifies_from_its_checkpoint(
    history: History, pg_store_at: PgLocation
) -> None:
    bst = history.bst
    assert bst.store.path is not None  # the source is the SQLite file
    history.cli("hold", "add", "--user", "carol", "--reason", "litigation 42")
    assert history.cli("retention", "run")[0] == 0
    point = bst.store.checkpoint()
    assert point is not None
    assert pg_store_at.password_file is not None
    secret = bst.home / "store.password"
    shutil.copy2(pg_store_at.password_file, secret)
    code, said = history.cli("store", "copy", "--to", pg_store_at.url, "--password-file",
                             str(secret), "--json")  # fmt: skip
    assert code == 0, said
    copied = json.loads(said)
    assert copied["tables"]["chain_checkpoints"] == 1 and copied["tables"]["legal_holds"] == 1
