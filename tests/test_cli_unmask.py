"""`bastion unmask ...` as real processes: consent on record, a reviewer confirms it, and the
grant is listed, active, then revoked."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bastion.errors import Exit
from tests import test_cli
from tests.test_cli import REASON, Bastion, assert_error
from tests.test_cli_requests import People, people

pristine = test_cli.pristine
bst = test_cli.bst
__all__ = ["people"]


@pytest.fixture
def consented(people: People, tmp_path: Path) -> tuple[People, int, Path]:
    # The template's orders-prod names public.customers.id as a subject key.
    document = tmp_path / "consent.pdf"
    document.write_bytes(b"%PDF-1.4 the customer agrees")
    made = people.bst.json("unmask", "request", "alice", "orders-prod", "--columns",
                           "customers.email,payments", "--subject", "customers.id=4711",
                           "--reason", REASON, "--consent", "SUP-1234", "--consent-file",
                           str(document), "--as", "bob", input=people.code("bob"))  # fmt: skip
    assert made["requested_by"] == "bob"
    return people, made["id"], document


@pytest.mark.both_stores  # the store on SQLite and on PostgreSQL
def test_a_reviewer_confirms_consent_and_the_grant_goes_live(
    consented: tuple[People, int, Path],
) -> None:
    people, grant_id, document = consented
    bst: Bastion = people.bst
    [pending] = bst.json("unmask", "list", "--state", "pending")
    assert pending["consent_sha256"] == hashlib.sha256(document.read_bytes()).hexdigest()
    assert pending["columns"] == ["customers.email", "payments"]
    refused = bst.run("unmask", "approve", str(grant_id), "--as", "alice", "--consent-confirmed",
                      input=people.code("alice"))  # fmt: skip
    assert_error(refused, Exit.DENIED, "only admins and reviewers")
    unconfirmed = bst.run("unmask", "approve", str(grant_id), "--as", "dave",
                          input=people.code("dave"))  # fmt: skip
    assert_error(unconfirmed, Exit.USAGE, "--consent-confirmed")
    done = bst.json("unmask", "approve", str(grant_id), "--as", "dave", "--consent-confirmed",
                    "--for", "30m", input=people.code("dave"))  # fmt: skip
    assert done["state"] == "active" and done["decided_by"] == "dave"
    assert [g["id"] for g in bst.json("unmask", "list", "--state", "active")] == [grant_id]
    assert bst.json("unmask", "revoke", str(grant_id))["state"] == "revoked"
    kinds = [k for k in bst.kinds() if k.startswith("unmask.")]
    assert kinds == ["unmask.requested", "unmask.approved", "unmask.revoked"]


def test_a_subject_key_must_be_configured(people: People) -> None:
    result = people.bst.run("unmask", "request", "alice", "orders-prod", "--columns",
                            "customers.email", "--subject", "payments.id=1", "--reason",
                            REASON, "--consent", "SUP-1", "--as", "bob",
                            input=people.code("bob"))  # fmt: skip
    assert_error(result, Exit.USAGE, "not a subject key of orders-prod")


@pytest.mark.both_stores  # the store on SQLite and on PostgreSQL
def test_the_filer_may_not_confirm_consent_for_their_own_request(
    consented: tuple[People, int, Path],
) -> None:
    """bob filed it, proven with his code; bob can't confirm the consent or approve it, an OS
    account can't file at all, and an engineer can't file for someone else."""
    people, grant_id, _ = consented
    bst: Bastion = people.bst
    own = bst.run("unmask", "approve", str(grant_id), "--as", "bob", "--consent-confirmed",
                  input=people.code("bob"))  # fmt: skip
    assert_error(own, Exit.DENIED, "someone else must approve")
    assert bst.json("unmask", "list", "--state", "pending")[0]["id"] == grant_id
    args = ["unmask", "request", "dave", "orders-prod", "--columns", "customers.email",
            "--subject", "customers.id=1", "--reason", REASON, "--consent", "SUP-9"]  # fmt: skip
    assert_error(bst.run(*args), Exit.USAGE, "--as")
    engineer = bst.run(*args, "--as", "alice", input=people.code("alice"))
    assert_error(engineer, Exit.DENIED, "only admins and reviewers file")
    done = bst.json("unmask", "approve", str(grant_id), "--as", "carol", "--consent-confirmed",
                    input=people.code("carol"))  # fmt: skip
    assert done["state"] == "active" and done["decided_by"] == "carol"
