"""A password typed into the user-name field never reaches the audit trail, at any door.

Real OpenSSH ssh and psql, and the web console's sign-in core call, each given a password as
the login name: the trail names it by a keyed digest (`unknown:` and 12 hex digits), the same
digest at every door for the same text, so the weekly review's bursts of failed logins still
group it; an existing user's failure keeps their name."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from bastion.errors import Denied
from bastion.reports.facts import collect
from bastion.reports.findings_access import failed_logins
from bastion.reports.week import week_of
from tests.harness import Bastion
from tests.realpg import PgDatabase, run_psql
from tests.realssh import Askpass
from tests.ssh.test_door_admin import wait_until
from tests.test_admission_doors import PG_USER, WEB_USER, doors  # noqa: F401 (fixture)

TYPED = "Tr0ub4dor-x9Zq.secret"  # someone's password, typed where the name goes
DIGEST = re.compile(r"^unknown:[0-9a-f]{12}$")


def _trail(b: Bastion) -> str:
    return "\n".join(json.dumps([e.actor, e.subject, e.detail]) for e in b.store.events())


def _failed_subjects(b: Bastion, since: int) -> list[tuple[str, str]]:
    return [(e.kind, e.subject) for e in b.store.events() if e.seq > since
            and e.kind in ("auth.failed", "auth.password_failed")]  # fmt: skip


def _head(b: Bastion) -> int:
    last = b.store.last_events(1)
    return last[0].seq if last else 0


def _ssh_as(b: Bastion, tmp: Path, name: str) -> None:
    """OpenSSH's ssh with `name` as the login name, and one wrong password."""
    ssh = b.openssh(PG_USER, tmp / "ssh")
    argv = ssh.ssh_argv("true", login=name, flags=["-o", "NumberOfPasswordPrompts=1",
                                                   "-o", "PubkeyAuthentication=no"])  # fmt: skip

    def answer(prompt: str) -> str | None:
        return "not-the-password" if "password" in prompt.lower() else None

    with Askpass(answer) as askpass:
        env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"} | askpass.env()
        quiet = subprocess.DEVNULL
        done = subprocess.run(argv, stdin=quiet, stdout=quiet, stderr=quiet, env=env,
                              timeout=60, check=False)  # fmt: skip
    assert done.returncode != 0


def _psql_as(b: Bastion, name: str) -> None:
    via = PgDatabase("127.0.0.1", b.pg_port, "orders-prod", name, "not-the-password123456")
    assert run_psql({**via.params(), "sslmode": "require"}, "-c", "SELECT 1").returncode != 0


def _web_as(b: Bastion, name: str) -> None:
    with pytest.raises(Denied):
        b.call(b.core.sign_in("web", "127.0.0.1", name, "not-the-password", "123456"))


def _wait_for(b: Bastion, since: int, kinds: int) -> list[tuple[str, str]]:
    wait_until(lambda: len(_failed_subjects(b, since)) >= kinds)
    return _failed_subjects(b, since)


def test_a_password_typed_as_the_name_is_chained_as_one_keyed_digest_at_every_door(
    doors: Bastion,  # noqa: F811
    tmp_path: Path,
) -> None:
    b = doors
    seen = {}
    attempts: dict[str, Callable[[], None]] = {
        "ssh": lambda: _ssh_as(b, tmp_path, TYPED), "postgres": lambda: _psql_as(b, TYPED),
        "web": lambda: _web_as(b, TYPED)}  # fmt: skip
    for door, attempt in attempts.items():
        since = _head(b)
        attempt()
        found = _wait_for(b, since, 2)  # auth.password_failed, then auth.failed
        assert {kind for kind, _ in found} == {"auth.password_failed", "auth.failed"}, door
        subjects = {subject for _, subject in found}
        assert len(subjects) == 1 and DIGEST.match(next(iter(subjects))), (door, found)
        seen[door] = subjects.pop()
    assert seen["ssh"] == seen["postgres"] == seen["web"]  # one name, one digest
    assert TYPED not in _trail(b) and TYPED.lower() not in _trail(b).lower()
    since = _head(b)
    _psql_as(b, PG_USER)  # an existing person keeps their name
    assert {s for _, s in _wait_for(b, since, 2)} == {PG_USER}
    since = _head(b)
    _web_as(b, "someone-else")
    other = {s for _, s in _wait_for(b, since, 2)}
    assert len(other) == 1 and other != {seen["web"]} and DIGEST.match(other.pop())


def test_bursts_of_an_unknown_name_are_still_found_and_grouped(
    doors: Bastion,  # noqa: F811
) -> None:
    b = doors
    for _ in range(5):
        _web_as(b, TYPED)
        b.clock.advance(timedelta(minutes=1))
    _web_as(b, WEB_USER)
    now = b.clock.now()
    facts = collect(b.store, week_of(now.date(), "UTC"), now)
    bursts = [f for f in failed_logins(facts, b.config) if f.rule == "failed_login_burst"]
    assert len(bursts) == 1 and DIGEST.match(bursts[0].subject or ""), bursts
    assert TYPED not in bursts[0].title
