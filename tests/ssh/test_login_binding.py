"""A login is one person: misbehaving asyncssh clients that change names and restart codes."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.ssh.login import parse_login
from tests.harness import Bastion
from tests.realssh import Sshd

PAT_PASSWORD = "pat's long password 1"


@dataclass(frozen=True)
class Step:
    """One authentication request: the login name it carries, its method and what it sends."""

    name: str
    method: str  # "key", "password" or "code"
    secret: str  # "eve" (eve's key), a password, or whose code ("alice", "wrong", ...)


class Scripted(asyncssh.SSHClient):
    """Sends each step as the server lets it, setting the login name before every request.

    asyncssh's client never changes its user name; this one rewrites it before each method,
    as a hostile client would. Steps that the server gives no chance to send are left over.
    """

    def __init__(self, steps: Sequence[Step], keys: dict[str, Any],
                 code: Callable[[str], str]) -> None:  # fmt: skip
        self.steps = list(steps)
        self.keys = keys
        self.code = code
        self.sent: list[Step] = []
        self.conn: Any = None
        self._code_step: Step | None = None
        self.prompts = 0
        self.offered: list[list[str]] = []  # the methods the server listed, at each request

    def connection_made(self, conn: Any) -> None:
        self.conn = conn

    def _take(self, method: str) -> Step | None:
        self.offered.append([m.decode() for m in self.conn._auth_methods])
        if not self.steps or self.steps[0].method != method:
            return None
        step = self.steps.pop(0)
        self.conn._username = step.name  # the hostile part: a new name for this request
        self.sent.append(step)
        return step

    def public_key_auth_requested(self) -> Any:
        step = self._take("key")
        return [self.keys[step.secret]] if step else None

    def password_auth_requested(self) -> str | None:
        step = self._take("password")
        return step.secret if step else None

    def kbdint_auth_requested(self) -> str | None:
        self._code_step = self._take("code")
        return "" if self._code_step else None

    def kbdint_challenge_received(
        self, name: str, instructions: str, lang: str, prompts: Sequence[tuple[str, bool]]
    ) -> list[str] | None:
        if not prompts:
            return []
        self.prompts += 1
        step, self._code_step = self._code_step, None
        if step is None and self.steps and self.steps[0].method == "code":
            step = self.steps.pop(0)  # asked again in the same round: no new name can be sent
            self.sent.append(step)
        return [self.code(step.secret)] if step else None


async def run_script(b: Bastion, steps: Sequence[Step]) -> tuple[bool, Scripted]:
    """Connect with the script; True when the bastion let the connection in."""
    keys = {"eve": asyncssh.read_private_key(b.keys["eve"])}

    def code(whose: str) -> str:
        return "000000" if whose == "wrong" else b.code(whose)

    client = Scripted(steps, keys, code)
    try:
        conn = await asyncssh.connect(
            "127.0.0.1", b.port, username=steps[0].name if steps else "eve",
            known_hosts=b.known_hosts(), client_factory=lambda: client, client_keys=[],
            agent_path=None, config=None, public_key_auth=True, password_auth=True,
            kbdint_auth=True, preferred_auth="publickey,password,keyboard-interactive",
        )  # fmt: skip
    except (asyncssh.Error, OSError):
        return False, client
    conn.close()
    await conn.wait_closed()
    return True, client


@pytest.fixture
def hostile(tmp_path: Path, sshd: Sshd) -> Any:
    """eve (key) attacks alice (key, granted web-1) and pat (password only, granted web-1)."""
    b = Bastion(tmp_path / "bastion", "[ssh]\nmax_failures_per_source = 10000\n")
    b.add_user("eve")
    b.add_user("alice")
    b.add_user("pat", key=False, password=PAT_PASSWORD)
    b.add_target("web-1", sshd)
    for user in ("eve", "alice", "pat"):
        b.grant(user, "web-1")
    b.start()
    try:
        yield b
    finally:
        b.stop()


def written(b: Bastion, kind: str) -> list[Any]:
    """The events of `kind`, once there is one (the door audits some after it has answered:
    waits at most 10 s, then returns what there is)."""
    deadline = time.monotonic() + 10
    while not b.events(kind) and time.monotonic() < deadline:
        time.sleep(0.02)
    return b.events(kind)


def opened_for(b: Bastion, user: str) -> bool:
    return any(e.kind == "auth.totp_ok" and e.subject == user for e in b.events())


def test_a_key_proven_for_one_name_does_not_log_in_another(hostile: Bastion) -> None:
    """eve proves her own key, then names alice and answers with alice's (stolen) code."""
    steps = [Step("eve+web-1", "key", "eve"), Step("alice+web-1", "code", "alice")]
    ok, client = hostile.call(run_script(hostile, steps))
    assert not ok
    assert client.prompts == 0  # alice's code was never even asked for
    assert not opened_for(hostile, "alice")
    changed = written(hostile, "auth.name_changed")  # audited after the connection is cut
    assert changed and changed[0].severity == "high"


def test_changing_only_the_target_part_also_ends_the_login(hostile: Bastion) -> None:
    steps = [Step("eve", "key", "eve"), Step("eve+web-1", "code", "eve")]
    ok, _ = hostile.call(run_script(hostile, steps))
    assert not ok
    assert not opened_for(hostile, "eve")


def test_a_password_proven_for_one_name_does_not_carry_over(hostile: Bastion) -> None:
    steps = [Step("pat+web-1", "password", PAT_PASSWORD), Step("alice+web-1", "code", "alice")]
    ok, _ = hostile.call(run_script(hostile, steps))
    assert not ok
    assert not opened_for(hostile, "alice") and not opened_for(hostile, "pat")


def test_the_honest_script_still_logs_in(hostile: Bastion) -> None:
    ok, _ = hostile.call(run_script(hostile, [Step("eve+web-1", "key", "eve"),
                                              Step("eve+web-1", "code", "eve")]))  # fmt: skip
    assert ok and opened_for(hostile, "eve")
    ok, _ = hostile.call(run_script(hostile, [Step("pat+web-1", "password", PAT_PASSWORD),
                                              Step("pat+web-1", "code", "pat")]))  # fmt: skip
    assert ok and opened_for(hostile, "pat")


def test_a_key_user_cannot_use_a_password_and_nobody_learns_who_has_one(
    hostile: Bastion,
) -> None:
    """Every name is offered the same methods; only password-only users may use one."""

    async def methods(name: str) -> list[str]:
        client = Scripted([], {}, lambda whose: "000000")
        with contextlib.suppress(asyncssh.PermissionDenied):
            await asyncssh.connect(
                "127.0.0.1", hostile.port, username=name, known_hosts=hostile.known_hosts(),
                client_factory=lambda: client, client_keys=[], agent_path=None, config=None,
                public_key_auth=True, password_auth=True, kbdint_auth=True,
            )  # fmt: skip
        return client.offered[0]

    offered = {name: hostile.call(methods(name)) for name in ("eve", "pat", "nobody-here")}
    assert len({tuple(v) for v in offered.values()}) == 1, offered
    steps = [Step("eve+web-1", "password", PAT_PASSWORD), Step("eve+web-1", "code", "eve")]
    ok, _ = hostile.call(run_script(hostile, steps))
    assert not ok and not opened_for(hostile, "eve")


def test_codes_per_connection_are_capped_when_keyboard_interactive_restarts(
    hostile: Bastion,
) -> None:
    """After its last code the connection ends; starting the method again gets nothing."""
    steps = [Step("eve+web-1", "key", "eve")] + [Step("eve+web-1", "code", "wrong")] * 12
    ok, client = hostile.call(run_script(hostile, steps))
    assert not ok
    assert client.prompts == 3
    failed = [e for e in hostile.events("auth.totp_failed") if e.subject == "eve"]
    assert len(failed) == 3


def test_a_blocked_source_stops_guessing_on_its_open_connection(tmp_path: Path, sshd: Sshd) -> None:
    b = Bastion(tmp_path / "bastion", "[ssh]\nmax_failures_per_source = 2\n")
    b.add_user("eve")
    b.start()
    try:
        steps = [Step("eve", "key", "eve")] + [Step("eve", "code", "wrong")] * 3
        ok, client = b.call(run_script(b, steps))
        assert not ok
        assert client.prompts == 2  # blocked after the second: no third code is asked
        assert len(b.events("auth.totp_failed")) == 2
        deadline = time.monotonic() + 10
        while not b.events("auth.source_blocked") and time.monotonic() < deadline:
            time.sleep(0.02)  # audited as the block happens, not awaited by the login
        assert b.events("auth.source_blocked")
    finally:
        b.stop()


# -- property: whatever the sequence, a login needs both factors of one person ----------

NAMES = ["eve", "eve+web-1", "alice+web-1", "pat+web-1", "alice", "ghost+web-1"]
PASSWORDS = st.sampled_from([PAT_PASSWORD, "not it at all 1"])
CODES = st.sampled_from(["eve", "alice", "pat", "wrong"])
STEPS = st.one_of(
    st.builds(Step, st.sampled_from(NAMES), st.just("key"), st.just("eve")),
    st.builds(Step, st.sampled_from(NAMES), st.just("password"), PASSWORDS),
    st.builds(Step, st.sampled_from(NAMES), st.just("code"), CODES),
)
FIRST_FACTOR = {"eve": Step("", "key", "eve"), "pat": Step("", "password", PAT_PASSWORD)}


def both_factors_of_one_person(sent: Sequence[Step]) -> bool:
    """True when every step named one login, and it holds that person's factor then code."""
    names = {s.name for s in sent}
    if len(names) != 1:
        return False
    user = parse_login(names.pop()).user
    first = FIRST_FACTOR.get(user)
    if first is None:
        return False
    methods = [(s.method, s.secret) for s in sent]
    proven = (first.method, first.secret)
    return proven in methods and ("code", user) in methods[methods.index(proven) :]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(STEPS, min_size=1, max_size=6))
def test_no_sequence_logs_in_without_both_factors_of_one_user(
    hostile: Bastion, steps: list[Step]
) -> None:
    before = {u: opened_for(hostile, u) for u in ("eve", "alice", "pat")}
    ok, client = hostile.call(run_script(hostile, steps))
    for user in ("eve", "alice", "pat"):
        hostile.store.unlock_user(user, "test")  # every example starts unlocked
    if ok:
        assert both_factors_of_one_person(client.sent), client.sent
    assert before["alice"] or not opened_for(hostile, "alice")
