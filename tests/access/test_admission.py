"""The one way in, step by step and without a door: what counts as proven, what is refused,
and the one shape of `auth.failed` and `access.denied` (bastion/access/admission.py)."""

from __future__ import annotations

import ast
import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bastion.access import admission as module
from bastion.access.admission import (
    NOT_PROVEN,
    PASSWORD,
    PUBLICKEY,
    Admission,
    Attempt,
    KeyProof,
    PasswordProof,
    door_decision,
)
from bastion.access.grants import Decision
from bastion.audit import Store, TotpOutcome, TotpResult
from bastion.audit.location import PgLocation
from bastion.clock import FakeClock
from bastion.config import load_config
from bastion.core import Core
from bastion.errors import Denied
from bastion.identity import totp
from bastion.identity.sealing import SecretBox
from tests.realssh import fingerprint, make_keypair

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
ACCEPTED = TotpOutcome(TotpResult.ACCEPTED)
PW = "correct horse battery"


def login(door: str = "ssh") -> Admission:
    return Admission(Attempt(door, "10.0.0.7", "alice"))


def test_a_login_that_tried_nothing_or_succeeded_writes_no_failure() -> None:
    assert login().failed_event("alice") is None
    done = login()
    done.proven(PASSWORD, True)
    assert done.second_factor(ACCEPTED) is None
    assert done.may_decide() and done.failed_event("alice") is None


def test_failures_are_one_event_of_one_shape_for_every_door() -> None:
    shapes = []
    for door in ("ssh", "postgres", "web"):
        attempt = login(door)
        attempt.proven(PASSWORD, True)
        attempt.second_factor(TotpOutcome(TotpResult.REPLAYED))
        event = attempt.failed_event("alice")
        assert event is not None and event.actor == f"{door}:10.0.0.7"
        detail = dict(event.detail or {})
        assert detail.pop("protocol") == door
        shapes.append((event.kind, event.severity, event.subject, detail))
    assert shapes[0] == shapes[1] == shapes[2]
    assert shapes[0][3] == {"source": "10.0.0.7", "failures": ["totp replayed"],
                            "first_factor": PASSWORD,
                            "reason": "that code was used already"}  # fmt: skip


def test_a_key_not_accepted_is_no_failure_but_a_wrong_password_is() -> None:
    attempt = login()
    assert not attempt.proven(PUBLICKEY, False)  # clients offer each of their keys
    assert attempt.failed_event("alice") is None
    assert not attempt.proven(PASSWORD, False)
    assert attempt.failures == [PASSWORD]


def test_only_one_first_factor_and_no_code_before_it() -> None:
    attempt = login()
    assert attempt.second_factor(ACCEPTED) == NOT_PROVEN  # a code alone proves nothing
    assert not attempt.authenticated and not attempt.may_decide()
    assert attempt.proven(PUBLICKEY, True)
    assert not attempt.proven(PASSWORD, True)  # a second first factor changes nothing
    assert attempt.first_factor == PUBLICKEY


def test_no_grant_opens_an_unproven_login() -> None:
    allowed = Decision(True, "grant 1 (read) until later")
    half = login()
    half.proven(PASSWORD, True)
    assert door_decision(half, allowed) == Decision(False, NOT_PROVEN)
    half.second_factor(ACCEPTED)
    assert door_decision(half, allowed) is allowed


def test_access_denied_names_the_door_the_address_and_the_reason() -> None:
    event = login("postgres").denied_event("orders-prod", "no access now")
    assert (event.kind, event.actor, event.subject) == ("access.denied", "alice", "orders-prod")
    assert dict(event.detail or {}) == {"protocol": "postgres", "source": "10.0.0.7",
                                        "reason": "no access now"}  # fmt: skip


def test_unknown_doors_and_password_reprs() -> None:
    with pytest.raises(ValueError, match="unknown door"):
        Attempt("telnet", "10.0.0.7", "alice")
    assert PW not in repr(PasswordProof(PW))


def test_the_admission_logic_is_pure() -> None:
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    tops = {name.split(".")[0] for name in names}
    assert tops <= {"__future__", "collections", "dataclasses", "typing", "bastion"}
    assert not {"asyncio", "socket", "sqlite3"} & set(sys.stdlib_module_names) & tops


# -- the core's entry, with a real store ------------------------------------------------


def make_core(tmp_path: Path, store_at: Path | PgLocation) -> tuple[Core, dict[str, str]]:
    """A core on a new store (made off the event loop: store calls block)."""
    config_path = tmp_path / "bastion.toml"
    config_path.write_text("")
    config = load_config(config_path)
    SecretBox.create_key_file(config.paths.secrets_key)
    clock = FakeClock(START)
    core = Core(config, Store.create(store_at, clock), SecretBox.load(
        config.paths.secrets_key), clock)  # fmt: skip
    uri = core.identity.enrol("wes", "engineer", PW, "test").uri
    seed = uri.split("secret=")[1].split("&")[0]
    return core, {"wes": seed}


def code_now(core: Core, seed: str) -> str:
    assert isinstance(core.clock, FakeClock)
    core.clock.advance(totp.PERIOD)
    return totp.code_for_step(seed, totp.step_at(core.clock.now()))


async def test_web_sign_in_is_password_then_code_without_a_target(
    tmp_path: Path, store_at: Path | PgLocation
) -> None:
    core, seeds = await asyncio.to_thread(make_core, tmp_path, store_at)
    try:
        with pytest.raises(Denied, match="wrong user name, password or verification code"):
            await core.sign_in("web", "10.0.0.9", "wes", "not it", code_now(core, seeds["wes"]))
        with pytest.raises(Denied, match="wrong verification code"):
            await core.sign_in("web", "10.0.0.9", "wes", PW, "000000")
        done = await core.sign_in("web", "10.0.0.9", "wes", PW, code_now(core, seeds["wes"]))
        assert done.may_decide() and done.first_factor == PASSWORD
        failed = [
            json.loads(e.detail)
            for e in await core.run(core.store.events)
            if e.kind == "auth.failed"
        ]
        assert [f["failures"] for f in failed] == [["password"], ["totp wrong"]]
        assert {f["protocol"] for f in failed} == {"web"}
        assert any(e.kind == "auth.totp_ok" and e.actor == "web:10.0.0.9"
                   for e in await core.run(core.store.events))  # fmt: skip
    finally:
        core.shutdown()


async def test_no_session_opens_for_an_unproven_login(
    tmp_path: Path, store_at: Path | PgLocation
) -> None:
    core, _ = await asyncio.to_thread(make_core, tmp_path, store_at)
    try:
        half = core.admission("ssh", "10.0.0.9", "wes")
        assert await core.prove(half, PasswordProof(PW))
        with pytest.raises(Denied, match="both factors"):
            await core.open_session(half, "s-1", "web-1", None)
        decision = await core.decide(half, "web-1", "ssh")
        assert not decision.allowed and decision.reason == NOT_PROVEN
        [denied] = [e for e in await core.run(core.store.events) if e.kind == "access.denied"]
        assert json.loads(denied.detail)["reason"] == NOT_PROVEN
    finally:
        core.shutdown()


async def test_a_key_proves_only_for_its_owner(tmp_path: Path, store_at: Path | PgLocation) -> None:
    core, _ = await asyncio.to_thread(make_core, tmp_path, store_at)
    try:
        public = Path(f"{make_keypair(tmp_path / 'k', 'kim')}.pub").read_text()
        await core.run(core.identity.enrol, "kim", "engineer", None, "test", ssh_keys=[public])
        mine = fingerprint(public)
        kim, wes = (
            core.admission("ssh", "10.0.0.9", "kim"),
            core.admission("ssh", "10.0.0.9", "wes"),
        )
        assert not await core.prove(wes, KeyProof(mine))  # wes's login, kim's key
        assert wes.first_factor is None and wes.failures == []  # offered keys are no failure
        assert await core.prove(kim, KeyProof(mine))
        assert kim.first_factor == PUBLICKEY
    finally:
        core.shutdown()
