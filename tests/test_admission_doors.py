"""Every door writes the same audit events for the same login outcome (real ssh and psql).

The SSH door is driven by OpenSSH's ssh (password, then the code by keyboard-interactive),
the PostgreSQL door by psql (password followed by the code), the web console's sign-in by
the core call it will make. Two people with the same password, one a door, go through the
same steps in the same order, so their lockout counts match too; each outcome's events are
compared by kind, severity, detail keys and wording, with the door, the address, the
person, the target and the ids put aside.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bastion.errors import Denied
from bastion.identity import totp
from tests.harness import Bastion
from tests.realpg import PgDatabase, run_psql
from tests.realssh import Askpass, Sshd
from tests.ssh.test_door_admin import wait_until

PASSWORD = "correct horse battery"
SSH_USER, PG_USER, WEB_USER = "sam", "pia", "wes"
TARGETS = {"ssh": ("web-1", "web-late"), "postgres": ("orders-prod", "orders-late")}
CONFIG = (
    "".join(
        f'\n[targets.{name}]\nallowed_hours = "Mon-Fri 08:00-20:00"\ntimezone = "UTC"\n'
        for name in ("web-late", "orders-late")
    )
    + "\n[targets.orders-prod.masking]\nenabled = false\n"
)
SUNDAY_NOON = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)  # inside no allowed hours
COMPARED = ("reason", "failures", "first_factor", "why", "state", "consecutive", "mode")
ONLY_RECORDED = {"recording", "recording_sha256", "recording_size"}  # a recorded session's


@pytest.fixture
def doors(tmp_path: Path, sshd: Sshd, pg: PgDatabase) -> Iterator[Bastion]:
    b = Bastion(tmp_path / "bastion", CONFIG, postgres=True)
    b.clock.set(SUNDAY_NOON)
    for user in (SSH_USER, PG_USER, WEB_USER):
        b.add_user(user, key=False, password=PASSWORD)
    for name in TARGETS["ssh"]:
        b.add_target(name, sshd)
    for name in TARGETS["postgres"]:
        b.add_pg_target(name, pg)
    b.start()
    try:
        yield b
    finally:
        b.stop()


def ssh_login(b: Bastion, tmp: Path, target: str, password: str, code: str, *,
              command: str = "true") -> int:  # fmt: skip
    """OpenSSH's ssh as SSH_USER with a password and one code. The door would take up to
    three codes on one connection (psql sends one a connection): asked for a second, the
    person gives up, and the client ends, as a person's Ctrl-C would."""
    ssh = b.openssh(SSH_USER, tmp / "ssh")
    argv = ssh.ssh_argv(command, login=f"{SSH_USER}+{target}",
                        flags=["-o", "NumberOfPasswordPrompts=1"])  # fmt: skip
    codes = [code]
    procs: list[subprocess.Popen[bytes]] = []

    def answer(prompt: str) -> str | None:
        if "Verification code" in prompt:
            if codes:
                return codes.pop()
            procs[0].terminate()
            return None
        return password if "password" in prompt.lower() else None

    with Askpass(answer) as askpass:
        env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"} | askpass.env()
        quiet = subprocess.DEVNULL
        proc = subprocess.Popen(argv, stdin=quiet, stdout=quiet, stderr=quiet, env=env,
                                start_new_session=True)  # fmt: skip
        procs.append(proc)
        return proc.wait(60)


def psql_login(b: Bastion, target: str, password: str, code: str,
               sql: str = "SELECT 1") -> Any:  # fmt: skip
    via = PgDatabase("127.0.0.1", b.pg_port, target, PG_USER, password + code)
    return run_psql({**via.params(), "sslmode": "require"}, "-c", sql)  # one try, in TLS


def fresh_code(b: Bastion, user: str) -> str:
    b.clock.advance(totp.PERIOD)
    return totp.code_for_step(b.seeds[user], totp.step_at(b.clock.now()))


def codes_now(b: Bastion) -> dict[str, str]:
    """A fresh code for each person, all at one moment (the doors then see the same time)."""
    b.clock.advance(totp.PERIOD)
    step = totp.step_at(b.clock.now())
    return {user: totp.code_for_step(b.seeds[user], step) for user in (SSH_USER, PG_USER, WEB_USER)}


def shape(b: Bastion, since: int, user: str, door: str) -> list[tuple[Any, ...]]:
    """The events written since `since` in a door-blind form: kind, severity, who and what
    (as roles), detail keys, and the wording of the detail values that must agree."""
    found = []
    for event in b.store.events():
        # statements are the database's; the daily flags (report.flagged) are the bastion's
        # own, written whenever its scheduler looks at the day, not by a door
        if event.seq <= since or event.kind.split(".")[0] in {"query", "queries", "report"}:
            continue
        detail = json.loads(event.detail) if event.detail else {}
        keys = tuple(sorted(set(detail) - ONLY_RECORDED))
        values = tuple((k, blind(json.dumps(detail[k]), user)) for k in COMPARED if k in detail)
        found.append((event.kind, event.severity, role(event.actor, user, door),
                      role(event.subject, user, door), keys, values))  # fmt: skip
    return found


def blind(text: str, user: str) -> str:
    """Wording with the person and the targets named by their roles."""
    for targets in TARGETS.values():
        for index, name in sorted(enumerate(targets), key=lambda t: -len(t[1])):
            text = text.replace(name, f"TARGET{index}")
    return text.replace(user, "PERSON")


def role(name: str, user: str, door: str) -> str:
    if name == user:
        return "PERSON"
    if name.startswith(f"{door}:"):
        return "DOOR:ADDRESS"
    for targets in TARGETS.values():
        if name in targets:
            return f"TARGET{targets.index(name)}"
    return name


def head(b: Bastion) -> int:
    events = b.store.events()
    return events[-1].seq if events else 0


def both(b: Bastion, at_ssh: Callable[[], object], at_pg: Callable[[], object],
         until: str) -> tuple[list[Any], list[Any]]:  # fmt: skip
    """Run one outcome at each door; wait for its last event (`until`) to be written."""
    shapes = []
    for door, user, run in (("ssh", SSH_USER, at_ssh), ("postgres", PG_USER, at_pg)):
        since = head(b)
        run()
        wait_until(lambda since=since: any(e.seq > since and e.kind == until
                                           for e in b.store.events()))  # fmt: skip
        shapes.append(shape(b, since, user, door))
    return shapes[0], shapes[1]


def test_wrong_password_is_the_same_event_at_every_door(doors: Bastion, tmp_path: Path) -> None:
    ssh, pg = both(
        doors,
        lambda: ssh_login(doors, tmp_path, "web-1", "wrong password!", "000000"),
        lambda: psql_login(doors, "orders-prod", "wrong password!", "000000"),
        "auth.failed",
    )
    assert ssh == pg
    assert [e[0] for e in ssh] == ["auth.password_failed", "auth.failed"]
    assert ("reason", '"wrong password"') in ssh[-1][5]
    since = head(doors)
    with pytest.raises(Denied):
        doors.call(doors.core.sign_in("web", "127.0.0.1", WEB_USER, "wrong password!", "0"))
    assert shape(doors, since, WEB_USER, "web") == pg


def test_wrong_and_reused_codes_are_the_same_events_at_every_door(
    doors: Bastion, tmp_path: Path
) -> None:
    ssh, pg = both(
        doors,
        lambda: ssh_login(doors, tmp_path, "web-1", PASSWORD, "000000"),
        lambda: psql_login(doors, "orders-prod", PASSWORD, "000000"),
        "auth.failed",
    )
    assert ssh == pg
    assert [e[0] for e in ssh] == ["auth.totp_failed", "auth.failed"]
    assert ("reason", '"wrong verification code"') in ssh[-1][5]
    spent = codes_now(doors)
    for user, code in spent.items():  # each used once already, outside any door
        assert doors.core.identity.check_totp(user, code, "test").result.value == "accepted"
    ssh, pg = both(
        doors,
        lambda: ssh_login(doors, tmp_path, "web-1", PASSWORD, spent[SSH_USER]),
        lambda: psql_login(doors, "orders-prod", PASSWORD, spent[PG_USER]),
        "auth.failed",
    )
    assert ssh == pg
    assert ("reason", '"that code was used already"') in ssh[-1][5]
    since = head(doors)
    with pytest.raises(Denied, match="used already"):
        doors.call(doors.core.sign_in("web", "127.0.0.1", WEB_USER, PASSWORD, spent[WEB_USER]))
    assert shape(doors, since, WEB_USER, "web") == pg


def test_a_locked_account_is_the_same_event_at_every_door(doors: Bastion,
                                                          tmp_path: Path) -> None:  # fmt: skip
    for user in (SSH_USER, PG_USER, WEB_USER):
        for _ in range(doors.config.lockout.max_failures):
            doors.core.identity.password_failed(user, "test")
        assert doors.store.user(user).locked_until is not None
    ssh, pg = both(
        doors,
        lambda: ssh_login(doors, tmp_path, "web-1", PASSWORD, fresh_code(doors, SSH_USER)),
        lambda: psql_login(doors, "orders-prod", PASSWORD, fresh_code(doors, PG_USER)),
        "auth.failed",
    )
    assert ssh == pg
    assert [e[0] for e in ssh] == ["auth.password_failed", "auth.failed"]
    since = head(doors)
    with pytest.raises(Denied):
        code = fresh_code(doors, WEB_USER)
        doors.call(doors.core.sign_in("web", "127.0.0.1", WEB_USER, PASSWORD, code))
    assert shape(doors, since, WEB_USER, "web") == pg


def test_no_grant_and_outside_hours_are_the_same_refusal_at_both_doors(
    doors: Bastion, tmp_path: Path
) -> None:
    ssh, pg = both(
        doors,
        lambda: ssh_login(doors, tmp_path, "web-1", PASSWORD, fresh_code(doors, SSH_USER)),
        lambda: psql_login(doors, "orders-prod", PASSWORD, fresh_code(doors, PG_USER)),
        "access.denied",
    )
    assert ssh == pg
    assert [e[0] for e in ssh] == ["auth.totp_ok", "access.denied"]
    doors.grant(SSH_USER, "web-late")
    doors.grant(PG_USER, "orders-late")
    code = codes_now(doors)
    ssh, pg = both(
        doors,
        lambda: ssh_login(doors, tmp_path, "web-late", PASSWORD, code[SSH_USER]),
        lambda: psql_login(doors, "orders-late", PASSWORD, code[PG_USER]),
        "access.denied",
    )
    assert ssh == pg
    reason = dict(ssh[-1][5])["reason"]
    assert "Mon-Fri 08:00-20:00" in reason and "it is Sun 12:" in reason


def test_a_session_opened_then_ended_is_the_same_at_both_doors(
    doors: Bastion, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Killed as soon as its row is open (the SSH door may still be reaching the target):
    the same events, and the session is closed once, with no error left behind."""
    caplog.set_level(logging.WARNING, logger="asyncio")
    doors.grant(SSH_USER, "web-1")
    doors.grant(PG_USER, "orders-prod")

    def killed(login: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            client = threading.Thread(target=login, daemon=True)
            client.start()
            wait_until(lambda: doors.store.sessions(open_only=True), timeout=30)
            [session] = doors.store.sessions(open_only=True)
            doors.store.request_kill(session.id, "admin", "testing the end")
            client.join(30)

        return run

    code = codes_now(doors)

    def ssh_client() -> object:
        return ssh_login(doors, tmp_path, "web-1", PASSWORD, code[SSH_USER], command="sleep 30")

    def pg_client() -> object:
        return psql_login(doors, "orders-prod", PASSWORD, code[PG_USER], "SELECT pg_sleep(30)")

    ssh, pg = both(
        doors,
        killed(ssh_client),
        killed(pg_client),
        "session.closed",
    )
    assert ssh == pg
    kinds = [e[0] for e in ssh]
    assert kinds == ["auth.totp_ok", "session.opened", "session.kill_requested", "session.closed"]
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
    assert dict(ssh[-1][5]) == {"reason": '"session ended by admin: testing the end"',
                                "state": '"killed"'}  # fmt: skip


def test_a_target_of_the_other_kind_is_refused_alike_at_both_doors(
    doors: Bastion, tmp_path: Path
) -> None:
    """A grant on a database does not open it at the SSH door, nor an SSH host at the
    PostgreSQL door: both refuse it as no target of theirs, and both audit the refusal
    (psql is still told only that the login failed, as for an unknown target)."""
    doors.grant(SSH_USER, "orders-prod")
    doors.grant(PG_USER, "web-1")
    code = codes_now(doors)
    ssh, pg = both(
        doors,
        lambda: ssh_login(doors, tmp_path, "orders-prod", PASSWORD, code[SSH_USER]),
        lambda: psql_login(doors, "web-1", PASSWORD, code[PG_USER]),
        "access.denied",
    )
    assert [e[0] for e in ssh] == [e[0] for e in pg] == ["auth.totp_ok", "access.denied"]
    assert dict(ssh[-1][5])["reason"] == "\"no ssh target named 'TARGET0'\""
    assert dict(pg[-1][5])["reason"] == "\"no postgres target named 'TARGET0'\""
    assert not doors.store.sessions()
