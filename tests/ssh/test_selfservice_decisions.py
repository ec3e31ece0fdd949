"""The SSH self-service commands an admin runs on others' requests, and the listing each side
sees: parsed by the SSH door, done by bastion/console/selfservice.py, printed by the door."""

from __future__ import annotations

from bastion.ssh import selfservice
from tests.harness import Bastion

REASON = "INC-4411 refund stuck"


def _run(bastion: Bastion, user: str, command: str) -> selfservice.Reply:
    """One command as the door runs it; a decision sends its person's own fresh code."""
    code = bastion.code(user) if selfservice.needs_code(command) else None
    return bastion.call(selfservice.run(bastion.core, user, command, code=code,
                                        source="127.0.0.1"))  # fmt: skip


def test_an_admin_approves_and_denies_others_requests_but_not_their_own(
    bastion: Bastion,
) -> None:
    bastion.add_user("ada", "admin", key=False)
    asked = _run(bastion, "alice", f'request web-1 --for 2h --reason "{REASON}"')
    assert asked.status == 0 and "waiting for 1 approval(s) from admins" in asked.out
    listed = _run(bastion, "ada", "requests")
    assert "pending, for you to decide:" in listed.out and f"-- {REASON}" in listed.out
    done = _run(bastion, "ada", "approve 1 --for 1h")
    assert done.status == 0 and "approved" in done.out, done
    again = _run(bastion, "alice", f'request web-1 --for 1h --reason "{REASON} again"')
    assert again.status == 0
    refused = _run(bastion, "ada", 'deny 2 --reason "use the grant you have"')
    assert refused.status == 0 and "denied" in refused.out, refused
    own = _run(bastion, "ada", f'request web-1 --for 1h --reason "{REASON} for me"')
    mine = own.out.split(":")[0].split()[-1]
    not_mine = _run(bastion, "ada", f"approve {mine}")
    assert not_mine.status != 0 and not_mine.err.startswith("bastion: ") and not not_mine.out
    assert [r.state for r in bastion.store.requests()][:2] == ["approved", "denied"]
