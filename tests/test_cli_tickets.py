"""`bastion ticket ... --reusable`, `ticket list` and `ticket revoke` as real processes: minted
after the person's own code, printed once, never stored or listed or logged again."""

from __future__ import annotations

import json

from bastion.errors import Exit
from tests import test_cli
from tests.test_cli import REASON, Bastion, assert_error, assert_ok
from tests.test_cli_requests import People, people

pristine = test_cli.pristine
bst = test_cli.bst
__all__ = ["people"]


def granted(people: People) -> Bastion:
    bst: Bastion = people.bst
    bst.json("grant", "alice", "reports", "--for", "2h", "--reason", REASON)
    return bst


def test_a_reusable_ticket_is_printed_once_and_never_again(people: People) -> None:
    bst = granted(people)
    minted = assert_ok(bst.run("ticket", "reports", "--user", "alice", "--reusable", "--for",
                               "24h", "--bind-address", "10.1.2.3/24",
                               input=people.code("alice")))  # fmt: skip
    token = minted.stdout.splitlines()[0]
    assert token.startswith("btr_") and len(token) == 4 + 43  # 256 bits, URL-safe
    assert "the grant's end" in minted.stdout and "10.1.2.0/24" in minted.stdout
    [listed] = bst.json("ticket", "list", "--user", "alice")
    assert listed["kind"] == "reusable" and listed["state"] == "live"
    assert listed["bind_address"] == "10.1.2.0/24"
    revoked = bst.json("ticket", "revoke", str(listed["id"]), "--reason", "done for today")
    assert revoked["state"] == "revoked" and revoked["sessions_ending"] == []
    assert bst.json("ticket", "list") == []
    [old] = bst.json("ticket", "list", "--all")
    assert old["state"] == "revoked"
    kinds = [e["kind"] for e in bst.events() if e["kind"].startswith("ticket.")]
    assert kinds == ["ticket.issued", "ticket.revoked"]
    everything_else = json.dumps(bst.events()) + json.dumps(bst.json("ticket", "list", "--all"))
    assert token not in everything_else and token[4:] not in everything_else
    assert token.encode() not in bst.raw_store() and token[4:].encode() not in bst.raw_store()
    assert token not in minted.stderr


def test_minting_needs_the_persons_own_code_and_a_grant(people: People) -> None:
    bst: Bastion = people.bst
    no_grant = bst.run("ticket", "reports", "--user", "alice", "--reusable",
                       input=people.code("alice"))  # fmt: skip
    assert_error(no_grant, Exit.DENIED, "no access to reports")
    granted(people)
    wrong = bst.run("ticket", "reports", "--user", "alice", "--reusable", input="000000\n")
    assert_error(wrong, Exit.DENIED, "wrong verification code")
    theirs = bst.run("ticket", "reports", "--user", "alice", "--reusable",
                     input=people.code("bob"))  # fmt: skip
    assert_error(theirs, Exit.DENIED, "wrong verification code")
    assert bst.json("ticket", "list", "--all") == []


def test_usage_mistakes_are_one_line(people: People) -> None:
    bst = granted(people)
    assert_error(bst.run("ticket", "reports"), Exit.USAGE, "--user")
    assert_error(bst.run("ticket", "reports", "--user", "alice", "--for", "1h"), Exit.USAGE,
                 "--reusable")  # fmt: skip
    assert_error(bst.run("ticket", "revoke"), Exit.USAGE, "ticket revoke ID")
    assert_error(bst.run("ticket", "revoke", "99"), Exit.NOT_FOUND, "no ticket 99")
    bad_bind = bst.run("ticket", "reports", "--user", "alice", "--reusable", "--bind-address",
                       "nowhere", input=people.code("alice"))  # fmt: skip
    assert_error(bad_bind, Exit.USAGE, "not an IP address")
