"""What an admin does in the console, for the pages and the API alike: users, targets, grants,
and deciding on others' requests.

Each call takes the admin from their web session, never from the request, and goes through
the services the CLI uses (Identity, Targets, Access, Requests, Unmasking); the two-person
rule and the role checks are theirs. A decision on a request costs a fresh TOTP code, as the
CLI's `--as NAME` does. All are blocking: run them with Core.run."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bastion.access.grants import holder
from bastion.access.offboarding import offboard
from bastion.access.targets import Targets, port_of, ssh_private_key
from bastion.console.engineer import MODES, duration
from bastion.core import Core
from bastion.durations import parse_when
from bastion.errors import UsageError
from bastion.identity.enrolment import Enrolment
from bastion.identity.service import user_state


def _targets(core: Core) -> Targets:
    return Targets(core.store, core.config, core.box)


def _id(text: str, what: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise UsageError(f"{what} {text!r} is not a number")
    return int(text)


# -- users --------------------------------------------------------------------------------


def users(core: Core) -> list[dict[str, Any]]:
    """Every user with their state (never a secret: User.public has no hash or seed)."""
    now = core.clock.now()
    return [{**u.public(), "state": user_state(u, now)} for u in core.store.users()]


def enrolled(core: Core, enrolment: Enrolment) -> dict[str, Any]:
    """A new TOTP enrolment as shown once: the user, the otpauth URI, its QR code as SVG."""
    return {"user": {**core.store.user(enrolment.user).public()},
            "otpauth_uri": enrolment.uri, "qr_svg": enrolment.svg_data_uri()}  # fmt: skip


def add_user(core: Core, actor: str, *, name: str, role: str,
             password: str | None = None) -> dict[str, Any]:  # fmt: skip
    """`bastion user add`: the user and a fresh TOTP seed, sealed; the QR code shown once."""
    enrolment = core.identity.enrol(name.strip(), role, password or None, actor)
    return enrolled(core, enrolment)


def reset_totp(core: Core, actor: str, name: str) -> dict[str, Any]:
    return enrolled(core, core.identity.reset_totp(name, actor))


def disable_user(core: Core, actor: str, name: str, reason: str = "") -> dict[str, Any]:
    """Offboard, as `bastion user disable`: grants revoked, requests cancelled, unmask grants
    revoked, groups left; live sessions (web ones too) end within seconds."""
    counts = offboard(core.store, name, actor, " ".join(reason.split()))
    return {"user": name, "disabled": True, **counts}


def unlock_user(core: Core, actor: str, name: str) -> dict[str, Any]:
    core.store.unlock_user(name, actor)
    return {"user": name, "unlocked": True}


# -- targets ------------------------------------------------------------------------------


def targets(core: Core) -> list[dict[str, Any]]:
    return _targets(core).listed()


def add_ssh_target(core: Core, actor: str, *, name: str, host: str, port: str, login: str,
                   private_key: str) -> dict[str, Any]:  # fmt: skip
    """An SSH target; its host key is confirmed next (`trust_target`)."""
    key = ssh_private_key(private_key)
    made = _targets(core).add_ssh(name=name.strip(), host=host.strip(), port=port_of(port),
                                  login=login.strip(), private_key=key, actor=actor)  # fmt: skip
    return made.public()


def add_postgres_target(core: Core, actor: str, *, name: str, host: str, port: str, user: str,
                        database: str, password: str) -> dict[str, Any]:  # fmt: skip
    made = _targets(core).add_postgres(name=name.strip(), host=host.strip(), port=port_of(port),
                                       user=user.strip(), database=database.strip(),
                                       password=password, actor=actor)  # fmt: skip
    return made.public()


def ssh_target(core: Core, name: str) -> tuple[str, int]:
    """Where an SSH target listens (host, port), to ask it for its host key; NotFound if
    there is no SSH target of that name."""
    target = _targets(core).ssh_target(name)
    return target.host, target.port


def trust_target(core: Core, actor: str, name: str, presented: tuple[str, str],
                 confirmed: str) -> dict[str, Any]:  # fmt: skip
    """Pin what the target presents, when it is the fingerprint the admin confirmed."""
    done = _targets(core).trust(name, presented, confirmed, actor)
    return {"target": done.name, "fingerprint": presented[1], "host_key": done.host_key}


def remove_target(core: Core, actor: str, name: str) -> dict[str, Any]:
    revoked = _targets(core).remove(name, actor)
    return {"target": name, "removed": True, "grants_revoked": revoked}


# -- grants -------------------------------------------------------------------------------


def grants(core: Core) -> list[dict[str, Any]]:
    """Grants live now or to come, soonest first (revoked and ended ones are history)."""
    now = core.clock.now()
    found = [g for g in core.store.grant_rows(target=None, group=None, live_at=None)
             if g.revoked_at is None and g.ends_at > now]  # fmt: skip
    return [g.public(now) for g in sorted(found, key=lambda g: (g.starts_at, g.id))]


def grant(core: Core, actor: str, *, holder_text: str, target: str, reason: str, mode: str = "read",
          for_: str = "", from_: str = "", until: str = "",
          ticket: str = "") -> dict[str, Any]:  # fmt: skip
    """`bastion grant`: a user or "group:NAME", a window (for, or until; from a time or now)."""
    if mode not in MODES:
        raise UsageError("mode: choose read or write")
    starts = _when("from", from_) if from_.strip() else None
    if until.strip() and for_.strip():
        raise UsageError("give the window as 'for' or 'until', not both")
    if until.strip():
        window = _when("until", until) - (starts or core.clock.now())
        if window <= timedelta(0):
            raise UsageError("until must be after the start of the grant")
    else:
        window = duration(for_, "for")
    user, group = holder(holder_text)
    made = core.access.grant(user=user, group=group, target=target.strip(), duration=window,
                             reason=reason, actor=actor, mode=mode, starts_at=starts,
                             ticket_ref=ticket or None)  # fmt: skip
    return made.public(core.clock.now())


def _when(what: str, text: str) -> Any:
    try:
        return parse_when(text)
    except ValueError as exc:
        raise UsageError(f"{what}: {exc}") from exc


def revoke(core: Core, actor: str, number: str) -> dict[str, Any]:
    return core.access.revoke(_id(number, "grant"), actor).public(core.clock.now())


# -- decisions ----------------------------------------------------------------------------


def pending(core: Core, actor: str) -> dict[str, list[dict[str, Any]]]:
    """Pending access and unmask requests; `yours` marks those another admin must decide."""
    core.store.expire_requests()
    now = core.clock.now()
    asked = [{**r.public(), "text": core.requests.describe(r),
              "yours": actor in (r.user, r.requested_by)}
             for r in core.store.requests(state="pending")]  # fmt: skip
    unmasks = [{**g.public(now), "yours": actor in (g.user, g.requested_by)}
               for g in core.store.unmasks(state="pending")]  # fmt: skip
    return {"requests": asked, "unmask_requests": unmasks}


def _proven(core: Core, actor: str, code: str, via: str) -> None:
    """The decider's own fresh TOTP code, as the CLI's --as NAME asks for it."""
    core.identity.require_totp(actor, code.strip(), via)


def approve_request(core: Core, actor: str, number: str, *, code: str, via: str,
                    for_: str = "") -> dict[str, Any]:  # fmt: skip
    _proven(core, actor, code, via)
    done = core.requests.approve(_id(number, "request"), actor,
                                 duration(for_, "for") if for_.strip() else None)  # fmt: skip
    return {**done.public(), "text": core.requests.describe(done)}


def deny_request(core: Core, actor: str, number: str, *, code: str, via: str,
                 reason: str) -> dict[str, Any]:  # fmt: skip
    _proven(core, actor, code, via)
    done = core.requests.deny(_id(number, "request"), actor, reason)
    return {**done.public(), "text": core.requests.describe(done)}


def approve_unmask(core: Core, actor: str, number: str, *, code: str, via: str,
                   consent_ref: str, for_: str = "") -> dict[str, Any]:  # fmt: skip
    """Confirm the consent by its reference (the one the request names) and approve."""
    asked_id = _id(number, "unmask request")
    asked = core.store.unmask(asked_id)
    if consent_ref.strip() != asked.consent_ref:
        raise UsageError(f"type the consent reference unmask request {asked_id} names, to confirm"
                         " you checked the subject's consent")  # fmt: skip
    _proven(core, actor, code, via)
    window = duration(for_, "for") if for_.strip() else None
    done = core.unmasking.approve(asked_id, actor, consent_confirmed=True, duration=window)
    return done.public(core.clock.now())


def deny_unmask(core: Core, actor: str, number: str, *, code: str, via: str,
                reason: str) -> dict[str, Any]:  # fmt: skip
    _proven(core, actor, code, via)
    done = core.unmasking.deny(_id(number, "unmask request"), actor, reason)
    return done.public(core.clock.now())
