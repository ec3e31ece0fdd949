"""Commands on the bastion itself over the SSH door: `ssh alice@bastion access`."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from bastion.ssh import selfservice
from tests.harness import Bastion


def test_access_lists_grants_now_and_to_come(bastion: Bastion, tmp_path: Path) -> None:
    later = bastion.clock.now() + timedelta(days=1)
    bastion.core.access.grant(user="alice", target="web-1", duration=timedelta(hours=1),
                              reason="tomorrow's maintenance", actor="admin", starts_at=later,
                              ticket_ref="CHG-118")  # fmt: skip
    ssh = bastion.openssh("alice", tmp_path / "client")
    result = ssh.run_ssh("access", login="alice", answers=bastion.answers("alice"))
    assert result.returncode == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == "grants for alice:"
    assert "web-1" in lines[1] and " now until " in lines[1] and "testing the doors" in lines[1]
    assert "from " in lines[2] and "(tomorrow's maintenance) [CHG-118]" in lines[2]
    assert bastion.store.sessions() == []  # nothing was opened on a target


def test_access_without_grants_says_how_to_get_one(bastion: Bastion, tmp_path: Path) -> None:
    for grant in bastion.store.grants(user="alice"):
        bastion.core.access.revoke(grant.id, "admin")
    ssh = bastion.openssh("alice", tmp_path / "client")
    result = ssh.run_ssh("access", login="alice", answers=bastion.answers("alice"))
    assert result.returncode == 0
    assert "alice has no grants now or to come" in result.out


def test_which_exec_requests_are_bastion_commands() -> None:
    assert selfservice.is_command("access") and selfservice.is_command("  access --json")
    assert not selfservice.is_command("uptime") and not selfservice.is_command(None)
    assert not selfservice.is_command("")
    # anything else still asks for a target: test_no_target_without_a_terminal_says_how_to_name_one
