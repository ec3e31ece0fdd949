"""Commands on the bastion itself over the SSH door: `ssh alice@bastion access`."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from bastion.identity import totp
from bastion.ssh import selfservice
from tests.harness import Bastion
from tests.realpg import PgDatabase


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


def test_requests_over_ssh_are_checked_and_refusals_are_one_line(
    bastion: Bastion, tmp_path: Path
) -> None:
    ssh = bastion.openssh("alice", tmp_path / "client")

    def run(command: str) -> tuple[int, str, str]:
        step = totp.step_at(bastion.clock.now()) + 2  # a decision's own code, after the login's
        code = f"{totp.code_for_step(bastion.seeds['alice'], step)}\n".encode()
        done = ssh.run_ssh(command, login="alice", answers=bastion.answers("alice"),
                           input=code if selfservice.needs_code(command) else None)  # fmt: skip
        return done.returncode, done.out, done.err

    status, out, _ = run("help")
    assert status == 0 and "break-glass TARGET" in out and "approve ID" in out
    status, _, err = run('request web-1 --for forever --reason "INC-4411 refund stuck"')
    assert status == 2 and err.startswith("bastion: request: argument --for: duration")
    assert err.count("\n") == 1
    status, _, err = run('request web-1 --for 2h --reason "INC-4411')
    assert status == 2 and "quotation" in err
    status, _, err = run('request web-1 --for 2h --reason "fix"')
    assert status == 2 and "at least 10 characters" in err
    status, out, _ = run('request web-1 --for 2h --reason "INC-4411 refund stuck"')
    assert status == 0 and "waiting for 1 approval(s)" in out
    status, _, err = run("cancel 99")
    assert status == 4 and "no request with id 99" in err
    status, out, _ = run("cancel 1")
    assert status == 0 and "request 1: alice -> web-1 read for 2h: cancelled" in out
    status, out, _ = run("requests")
    assert "cancelled" in out
    status, _, err = run("break-glass web-1 --reason 'INC-4412 site down'")
    assert status == 6 and "break-glass is not allowed on web-1" in err
    assert [e.kind for e in bastion.events() if e.kind.startswith("request.")] == [
        "request.created", "request.cancelled"]  # fmt: skip


def test_an_engineer_asks_for_unmasking_over_ssh(tmp_path: Path, pg: PgDatabase) -> None:
    b = Bastion(tmp_path / "bastion", '\n[targets.shop.masking]\nsubject_keys = ["customers.id"]\n')
    b.add_user("alice")
    b.add_pg_target("shop", pg)
    b.start()
    try:
        ssh = b.openssh("alice", tmp_path / "client")
        command = ("unmask shop --columns customers.email --subject customers.id=4711"
                   " --reason 'SUP-1234 card charged twice' --consent SUP-1234")  # fmt: skip
        done = ssh.run_ssh(command, login="alice", answers=b.answers("alice"))
        assert done.returncode == 0, done.err
        assert "unmask request 1: customers.email of shop for customers.id=4711" in done.out
        [grant] = b.store.unmasks(user="alice")
        assert (grant.state, grant.requested_by, grant.consent_ref) == ("pending", "alice",
                                                                        "SUP-1234")  # fmt: skip
    finally:
        b.stop()
