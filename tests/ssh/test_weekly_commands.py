"""What an insider runs through the real SSH door without typing it at a prompt reaches the
weekly review: an exec's command line, a script sent to a shell, a multi-line exec, a pasted
block, an editor's shell escape; and input the command log could not read is named."""

from __future__ import annotations

import os
from pathlib import Path

from bastion.reports.gather import gather
from bastion.reports.model import Finding, Verification
from bastion.reports.week import week_of, zone
from tests.harness import Bastion
from tests.realssh import Sshd
from tests.ssh.test_door_sessions import closed_sessions


def review(b: Bastion) -> dict[str, list[Finding]]:
    """This week's findings, as the weekly review would make them now."""
    now = b.clock.now()
    tz = b.config.reports.timezone
    week = week_of(now.astimezone(zone(tz)).date(), tz)
    report = gather(b.store, b.config, week, now=now, verification=Verification("intact", 0))
    found: dict[str, list[Finding]] = {}
    for finding in report.findings:
        found.setdefault(finding.rule, []).append(finding)
    return found


def _victim(sshd: Sshd, name: str) -> Path:
    """A directory the target's login may remove."""
    victim = sshd.files_dir / name
    (victim / "sub").mkdir(parents=True)
    owner = sshd.files_dir.stat()
    for path in (victim, victim / "sub"):
        os.chown(path, owner.st_uid, owner.st_gid)
    return victim


def _destroyed(found: dict[str, list[Finding]]) -> list[str]:
    return [e.text for f in found.get("destructive_command", []) for e in f.evidence]


def test_an_exec_and_a_script_on_stdin_are_judged(
    bastion: Bastion, sshd: Sshd, tmp_path: Path
) -> None:
    ssh = bastion.openssh("alice", tmp_path / "client")
    one, two = _victim(sshd, "one"), _victim(sshd, "two")
    ssh.run_ssh(f"rm -rf {one}", login="alice+web-1", answers=bastion.answers("alice"))
    ssh.run_ssh("bash", login="alice+web-1", answers=bastion.answers("alice"),
                input=f"echo start\nrm -rf {two}\n".encode())  # fmt: skip
    closed_sessions(bastion, 2)
    assert not one.exists() and not two.exists()
    destroyed = _destroyed(review(bastion))
    assert f"rm -rf {one}" in destroyed and f"rm -rf {two}" in destroyed


def test_a_multi_line_exec_is_judged_line_by_line(
    bastion: Bastion, sshd: Sshd, tmp_path: Path
) -> None:
    ssh = bastion.openssh("alice", tmp_path / "client")
    victim = _victim(sshd, "three")
    ssh.run_ssh(f"true\nrm -rf {victim}", login="alice+web-1",
                answers=bastion.answers("alice"))  # fmt: skip
    closed_sessions(bastion)
    assert not victim.exists()
    assert f"true\nrm -rf {victim}" in _destroyed(review(bastion))


def test_a_script_piped_into_a_shell_the_log_does_not_read_is_named(
    bastion: Bastion, sshd: Sshd, tmp_path: Path
) -> None:
    """`ssh host 'tee copy | sh' < script`: the script runs, the log holds only the exec."""
    ssh = bastion.openssh("alice", tmp_path / "client")
    victim = _victim(sshd, "four")
    script = f"echo hidden\nrm -rf {victim}\n".encode()
    ssh.run_ssh(f"tee {sshd.files_dir}/copy.sh | sh", login="alice+web-1",
                answers=bastion.answers("alice"), input=script)  # fmt: skip
    [session] = closed_sessions(bastion)
    assert not victim.exists()
    found = review(bastion)
    assert f"rm -rf {victim}" not in _destroyed(found)  # not in the log: not judged ...
    [unread] = found["unparsed_input"]  # ... and the review says so
    [listed] = [e for e in unread.evidence if e.kind == "session"]
    assert listed.ref == session.id and f"{len(script)} bytes" in listed.text
    assert listed.replay == f"bastion replay {session.id}" and unread.subject == "alice"


def test_a_legacy_scp_upload_is_data_not_unread_commands(
    bastion: Bastion, sshd: Sshd, tmp_path: Path
) -> None:
    ssh = bastion.openssh("alice", tmp_path / "client")
    local = tmp_path / "up.bin"
    local.write_bytes(b"x" * 70000)
    result = ssh.run_scp("-O", str(local), ssh.remote(f"{sshd.files_dir}/up.bin"),
                         login="alice+web-1", answers=bastion.answers("alice"))  # fmt: skip
    assert result.returncode == 0, result.err
    closed_sessions(bastion)
    assert "unparsed_input" not in review(bastion)


def test_an_editors_shell_escape_is_judged_and_its_session_named(
    bastion: Bastion, sshd: Sshd, tmp_path: Path
) -> None:
    ssh = bastion.openssh("alice", tmp_path / "client")
    victim = _victim(sshd, "five")
    with ssh.tmux("vim -u NONE -N", login="alice+web-1", answers=bastion.answers("alice"),
                  flags=["-t"]) as tmux:  # fmt: skip
        tmux.wait_for("~")
        tmux.type_text(f":!rm -rf {victim}", enter=True)
        tmux.wait_for("Press ENTER")
        tmux.send_keys("Enter")
        tmux.type_text(":q!", enter=True)
        tmux.wait_exit()
    [session] = closed_sessions(bastion)
    assert not victim.exists()
    found = review(bastion)
    assert f":!rm -rf {victim}" in _destroyed(found)
    [unread] = found["unparsed_input"]
    assert session.id in {e.ref for e in unread.evidence} and "full-screen" in str(unread)


def test_a_destructive_line_in_a_pasted_block_is_judged(
    bastion: Bastion, sshd: Sshd, tmp_path: Path
) -> None:
    """However the shell takes a pasted block (line by line here; one command with newlines
    inside under readline's bracketed paste, judged line by line: tests/reports/
    test_sqlcheck.py), its destructive line is found."""
    ssh = bastion.openssh("alice", tmp_path / "client")
    victim = _victim(sshd, "six")
    with ssh.tmux(login="alice+web-1", answers=bastion.answers("alice")) as tmux:
        tmux.wait_for("$ ")
        tmux._tmux("set-buffer", f"echo pasted\nrm -rf {victim}\n")
        tmux._tmux("paste-buffer", "-p", "-t", tmux.target)
        tmux.wait_for("pasted\n")
        tmux.type_text("exit", enter=True)
        tmux.wait_exit()
    [session] = closed_sessions(bastion)
    assert not victim.exists()
    destroyed = _destroyed(review(bastion))
    assert any(f"rm -rf {victim}" in text for text in destroyed), [
        c.text for c in bastion.store.commands(session.id)
    ]
