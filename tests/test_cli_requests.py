"""`bastion group`, `request`, `requests list`, `approve`, `deny` and `break-glass`, run as real
processes on a bastion made by `bastion init`; deciders prove who they are with a TOTP code."""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest

from bastion.access.requests import Requests
from bastion.audit import ChainKey, Store
from bastion.clock import SystemClock
from bastion.config import load_config
from bastion.errors import Denied, Exit
from bastion.identity.sealing import SecretBox
from tests import test_cli
from tests.test_cli import PG_PASSWORD, REASON, Bastion, assert_error, totp_secret

pristine = test_cli.pristine  # the CLI tests' fixtures: one `bastion init`, copied per test
bst = test_cli.bst


class People:
    """alice (engineer), bob and carol (admins), dave (reviewer), and their TOTP secrets."""

    def __init__(self, bst: Bastion) -> None:
        self.bst = bst
        self.secrets: dict[str, str] = {}
        for name, role in (("alice", "engineer"), ("bob", "admin"), ("carol", "admin"),
                           ("dave", "reviewer")):  # fmt: skip
            out = bst.add_user(name, "--no-qr", role=role)
            self.secrets[name] = totp_secret(out["otpauth_uri"])
        self.used: dict[str, int] = {}

    def code(self, name: str) -> str:
        """A code not used yet: the current step, then the next (skew allows one step)."""
        step = self.used.get(name, -1) + 1
        self.used[name] = step
        totp = pyotp.TOTP(self.secrets[name])
        return totp.at(totp.timecode(SystemClock().now()) * 30 + 30 * step) + "\n"


@pytest.fixture
def people(bst: Bastion) -> People:
    found = People(bst)
    bst.json("target", "add-postgres", "orders-prod", "--host", "127.0.0.1", "--database",
             "orders", "--user", "svc", "--password-stdin", input=PG_PASSWORD + "\n")  # fmt: skip
    bst.json("target", "add-postgres", "reports", "--host", "127.0.0.1", "--database",
             "reports", "--user", "svc", "--password-stdin", input=PG_PASSWORD + "\n")  # fmt: skip
    return found


def test_a_request_approved_by_another_admin_opens_access(people: People) -> None:
    bst = people.bst
    made = bst.json("request", "alice", "reports", "--for", "2h", "--reason", REASON, "--as",
                    "carol", input=people.code("carol"))  # fmt: skip
    assert made["state"] == "pending" and made["approvals_needed"] == 1
    [pending] = bst.json("requests", "list", "--state", "pending")
    assert pending["id"] == made["id"] and pending["requested_by"] == "carol"
    refused = bst.run("approve", str(made["id"]), "--as", "bob", input="000000\n")
    assert_error(refused, Exit.DENIED, "code")
    assert bst.json("requests", "list")[0]["state"] == "pending"
    done = bst.json("approve", str(made["id"]), "--as", "bob", "--for", "1h",
                    input=people.code("bob"))  # fmt: skip
    assert done["state"] == "approved" and done["approvers"] == ["bob"]
    [grant] = bst.json("grants", "list", "--user", "alice")
    assert grant["request_id"] == made["id"] and grant["granted_by"] == "bob"
    assert bst.run("access", "check", "alice", "reports").returncode == 0
    kinds = bst.kinds()
    filed, approved = kinds.index("request.created"), kinds.index("request.approved")
    assert kinds[filed - 1] == "auth.totp_ok" and "auth.totp_ok" in kinds[filed:approved]


def test_self_approval_and_engineers_are_refused(people: People) -> None:
    bst = people.bst
    own = bst.json("request", "bob", "reports", "--for", "1h", "--reason", REASON, "--as", "bob",
                   input=people.code("bob"))  # fmt: skip
    result = bst.run("approve", str(own["id"]), "--as", "bob", input=people.code("bob"))
    assert_error(result, Exit.DENIED, "another admin must approve")
    result = bst.run("approve", str(own["id"]), "--as", "alice", input=people.code("alice"))
    assert_error(result, Exit.DENIED, "only admins may approve")
    denied = bst.json("deny", str(own["id"]), "--as", "carol", "--reason", "not this week",
                      input=people.code("carol"))  # fmt: skip
    assert denied["state"] == "denied" and denied["decision_reason"] == "not this week"
    again = bst.run("approve", str(own["id"]), "--as", "carol", input=people.code("carol"))
    assert_error(again, Exit.CONFLICT, "denied, not pending")


def test_a_target_needing_two_approvals_takes_no_direct_grant(people: People) -> None:
    bst = people.bst  # the template's orders-prod needs two approvals
    result = bst.run("grant", "alice", "orders-prod", "--for", "1h", "--reason", REASON)
    assert_error(result, Exit.DENIED, "needs 2 approvals")
    made = bst.json("request", "alice", "orders-prod", "--for", "1h", "--reason", REASON,
                    "--as", "alice", input=people.code("alice"))  # fmt: skip
    first = bst.json("approve", str(made["id"]), "--as", "bob", input=people.code("bob"))
    assert first["state"] == "pending" and first["approvers"] == ["bob"]
    done = bst.json("approve", str(made["id"]), "--as", "carol", input=people.code("carol"))
    assert done["state"] == "approved" and done["approvers"] == ["bob", "carol"]


def test_the_filer_is_a_proven_person_who_may_not_approve(people: People) -> None:
    """One admin at the terminal can't file for an engineer and approve it too: the filer is
    the person proven with --as, not the OS account, and that person can't decide on it."""
    bst = people.bst
    unproven = bst.run("request", "alice", "reports", "--for", "1h", "--reason", REASON)
    assert_error(unproven, Exit.USAGE, "--as")
    wrong = bst.run("request", "alice", "reports", "--for", "1h", "--reason", REASON, "--as",
                    "bob", input="000000\n")  # fmt: skip
    assert_error(wrong, Exit.DENIED, "code")
    made = bst.json("request", "alice", "reports", "--for", "1h", "--reason", REASON, "--as",
                    "bob", input=people.code("bob"))  # fmt: skip
    assert made["requested_by"] == "bob"
    own = bst.run("approve", str(made["id"]), "--as", "bob", input=people.code("bob"))
    assert_error(own, Exit.DENIED, "another admin must approve")
    assert bst.json("requests", "list")[0]["state"] == "pending"
    assert bst.run("access", "check", "alice", "reports").returncode == Exit.DENIED
    done = bst.json("approve", str(made["id"]), "--as", "carol", input=people.code("carol"))
    assert done["state"] == "approved" and done["approvers"] == ["carol"]


def test_only_admins_file_for_someone_else_and_unproven_filers_are_refused(
    people: People,
) -> None:
    bst = people.bst
    other = bst.run("request", "dave", "reports", "--for", "1h", "--reason", REASON, "--as",
                    "alice", input=people.code("alice"))  # fmt: skip
    assert_error(other, Exit.DENIED, "only admins file requests for someone else")
    # A request an older bastion filed as the OS account can't be decided: nobody proved it.
    store = Store.open(bst.db, SystemClock())
    rules = Requests(store, load_config(bst.config), SystemClock())
    with pytest.raises(Denied, match="active bastion user"):
        rules.request(user="alice", target="reports", duration=timedelta(hours=1),
                      reason=REASON, requested_by="cli:root")  # fmt: skip
    store.close()


def test_groups_and_grants_to_groups(people: People) -> None:
    bst = people.bst
    assert bst.json("group", "add", "oncall")["members"] == []
    members = bst.json("group", "members", "oncall", "--add", "alice", "--add", "dave")
    assert members["members"] == ["alice", "dave"]
    grant = bst.json("grant", "group:oncall", "reports", "--for", "1h", "--reason", REASON)
    assert grant["holder"] == "group:oncall"
    assert [g["holder"] for g in bst.json("grants", "list")] == ["group:oncall"]
    [mine] = bst.json("grants", "list", "--user", "alice")
    assert mine["user"] == "alice" and mine["group"] == "oncall"
    assert bst.run("access", "check", "alice", "reports").returncode == 0
    bst.json("group", "members", "oncall", "--remove", "alice")
    assert bst.run("access", "check", "alice", "reports").returncode == Exit.DENIED
    assert [g["name"] for g in bst.json("group", "list")] == ["oncall"]
    assert_error(bst.run("group", "add", "oncall"), Exit.CONFLICT, "exists already")


def test_break_glass_is_listed_until_a_reviewer_acknowledges_it(people: People) -> None:
    bst = people.bst
    key = ChainKey.of(SecretBox.load(bst.home / "secrets.key", environ={}))
    store = Store.open(bst.db, SystemClock(), key)
    rules = Requests(store, load_config(bst.config), SystemClock())
    opened = rules.break_glass(user="alice", target="orders-prod", reason=REASON,
                               duration=timedelta(minutes=20))  # fmt: skip
    store.close()
    [listed] = bst.json("break-glass", "list", "--unacknowledged")
    assert listed["id"] == opened.id and listed["break_glass"] is True
    result = bst.run("break-glass", "ack", str(opened.id), "--as", "alice",
                     input=people.code("alice"))  # fmt: skip
    assert_error(result, Exit.DENIED, "only reviewers and admins")
    done = bst.json("break-glass", "ack", str(opened.id), "--as", "dave", "--note",
                    "read the recording; fine", input=people.code("dave"))  # fmt: skip
    assert done["acknowledged_by"] == "dave"
    assert bst.json("break-glass", "list", "--unacknowledged") == []
    assert "breakglass.acknowledged" in bst.kinds()


def test_one_person_decisions_can_be_bound_to_a_proven_person(people: People) -> None:
    """grant, revoke (and user disable, sessions kill, unmask revoke) record the OS account
    unless --as names a bastion user, whose TOTP code is then required."""
    bst = people.bst
    made = bst.json("grant", "alice", "reports", "--for", "1h", "--reason", REASON, "--as", "bob",
                    input=people.code("bob"))  # fmt: skip
    assert made["granted_by"] == "bob"
    wrong = bst.run("revoke", str(made["id"]), "--as", "carol", input="000000\n")
    assert_error(wrong, Exit.DENIED, "code")
    assert bst.run("access", "check", "alice", "reports").returncode == 0
    done = bst.json("revoke", str(made["id"]), "--as", "carol", input=people.code("carol"))
    assert done["revoked_by"] == "carol"
    plain = bst.json("grant", "alice", "reports", "--for", "1h", "--reason", REASON)
    assert plain["granted_by"].startswith("cli:")
