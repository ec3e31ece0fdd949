"""Reusable database tickets: who may mint one, for how long, and whether one opens this
connection now.

A reusable ticket is a random password (256 bits, `btr_` and 43 URL-safe characters, so it
can be typed or pasted into any password prompt) that opens any number of PostgreSQL
connections to ONE target for ONE person. It is minted only after that person's TOTP code,
lives no longer than the grant it was minted under and the target's `reusable_ticket_max`,
may be bound to a client address or network, and is checked again at every connection:
the person's account (disabled, locked), the target's hours and the grant are decided anew
each time, as for a login with a fresh code.

It is kept only as HMAC-SHA-256 under a key derived from the secrets key. A slow hash
(argon2) protects guessable passwords; this token has 256 random bits, so no offline guess
can find it, and a fast keyed digest lets the door look it up by index at every connection
without handing a flood of made-up tickets an argon2 verify each (a hostile client's
guesses cost it a failed login, counted by the pre-login limits, and the bastion a hash).
The key, outside the database, means a copy of the store cannot even test a token.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

import structlog

from bastion.access.grants import Access
from bastion.audit import NewTicket, Store, TicketRow
from bastion.audit.chain import canonical_json
from bastion.audit.records import Grant
from bastion.clock import Clock, iso
from bastion.config import Config
from bastion.durations import format_duration
from bastion.errors import Denied, UsageError
from bastion.identity.service import Identity

log = structlog.get_logger("bastion.access")

REUSABLE_PREFIX = "btr_"  # a password starting so is a reusable ticket
TOKEN_BYTES = 32  # 256 bits of entropy
KEY_PURPOSE = "bastion:ticket:reusable"
ROW_PURPOSE = "bastion reusable ticket rows v1"  # the MAC over a ticket's row (its limits)
UNKNOWN = "unknown ticket"
TICKET_REFUSED = "ticket refused"
"""All a client is told of any ticket refusal: the reason (which can name the ticket's target,
network or grant) goes only to the audit event, so a stolen ticket's holder learns nothing of
where it would work, nor whether it was ever a ticket."""
DEFAULT_REUSABLE_FOR = timedelta(hours=1)  # when --for is not given
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The client's address as an IP (an IPv4-mapped IPv6 address as IPv4), or None."""
    try:
        ip = ipaddress.ip_address(address.split("%", maxsplit=1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def parse_bind(text: str) -> str:
    """An address or network (CIDR) a ticket is bound to, in its normal form."""
    try:
        network: Network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise UsageError(f"--bind-address: {text!r} is not an IP address or network") from None
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped:
        mapped = network.network_address.ipv4_mapped
        network = ipaddress.ip_network(f"{mapped}/{max(network.prefixlen - 96, 0)}", strict=False)
    return str(network)


def bound_allows(bind: str | None, address: str) -> bool:
    """True when the ticket is not bound, or the client's address lies in its network."""
    if bind is None:
        return True
    ip = client_ip(address)
    return ip is not None and ip in ipaddress.ip_network(bind)


def lifetime(
    now: datetime, asked: timedelta, target_max: timedelta, grant_ends: datetime
) -> tuple[datetime, str]:
    """When a new ticket expires, and what set it: what was asked, the target's maximum or
    the grant's end, whichever comes first."""
    if asked <= timedelta(0):
        raise UsageError("--for must be a positive duration")
    return min(
        (now + asked, "asked"),
        (now + target_max, f"reusable_ticket_max {format_duration(target_max)}"),
        (grant_ends, "the grant's end"),
    )


def ticket_refusal(
    ticket: TicketRow | None, *, user: str, target: str, address: str, now: datetime,
    live_grants: set[int],
) -> str | None:  # fmt: skip
    """Why this ticket may not open a connection for `user` on `target` from `address` now,
    or None. Someone else's ticket reads as unknown: it tells its holder nothing."""
    if ticket is None or not ticket.reusable or ticket.user != user:
        return UNKNOWN
    checks = (
        (ticket.target == target, f"this ticket is for {ticket.target}, not {target}"),
        (ticket.revoked_at is None, "this ticket was revoked"),
        (now < ticket.expires_at, "this ticket has expired"),
        (ticket.grant_id in live_grants,
         f"grant {ticket.grant_id}, which this ticket was minted under, has ended"),
        (bound_allows(ticket.bind_address, address),
         f"this ticket is bound to {ticket.bind_address}, not to this client's address"),
    )  # fmt: skip
    return next((why for ok, why in checks if not ok), None)


def reusable_note(described: str, capped_by: str) -> str:
    """What the engineer reads under their new reusable ticket (the CLI and the SSH door)."""
    return (f"({described}; lifetime set by {capped_by}. It is shown only now: use it as"
            " the password for every connection to that target, keep it like a password,"
            " and revoke it with `ticket revoke ID` when you are done)")  # fmt: skip


@dataclass
class Tickets:
    """Mint, admit, list and revoke reusable tickets; the doors and the CLI both use this."""

    store: Store
    config: Config
    clock: Clock
    access: Access
    identity: Identity

    @cached_property
    def _key(self) -> bytes:
        return self.identity.box.hkdf(KEY_PURPOSE)

    def digest(self, token: str) -> str:
        return hmac.new(self._key, token.encode("utf-8", "replace"), hashlib.sha256).hexdigest()

    @cached_property
    def _row_key(self) -> bytes:
        return self.identity.box.hkdf(ROW_PURPOSE)

    def row_mac(self, digest: str, user: str, target: str, *, grant_id: int | None,
                expires_at: datetime, bind: str | None) -> str:  # fmt: skip
        """The keyed MAC binding a reusable ticket's digest to its person, target, grant,
        end and binding: a row edited without the key (moved to someone else, stretched,
        unbound) is no ticket."""
        fields = ["reusable-ticket", digest, user, target, grant_id, iso(expires_at), bind]
        text = canonical_json(fields).encode()
        return hmac.new(self._row_key, text, hashlib.sha256).hexdigest()

    def _holds(self, ticket: TicketRow, digest: str) -> bool:
        mac = self.row_mac(digest, ticket.user, ticket.target, grant_id=ticket.grant_id,
                           expires_at=ticket.expires_at, bind=ticket.bind_address)  # fmt: skip
        if ticket.row_mac is not None and hmac.compare_digest(mac, ticket.row_mac):
            return True
        log.warning("ticket.row_refused", ticket=ticket.id, user=ticket.user,
                    why="its row does not carry the key's MAC (edited without the key, or"
                        " from before the key bound it)")  # fmt: skip
        return False

    def check_mintable(self, user: str, target: str) -> Grant:
        """The grant a ticket would live under; refuses a non-database target or no access."""
        if self.store.target(target).kind != "postgres":
            raise UsageError(f"{target} is not a database target")
        decision = self.access.decide(user, target)
        if not decision.allowed or decision.grant is None:
            raise Denied(decision.reason)
        return decision.grant

    def mint(
        self, user: str, target: str, code: str, *, duration: timedelta, bind: str | None,
        via: str,
    ) -> tuple[str, TicketRow, str]:  # fmt: skip
        """After `user`'s own TOTP code: a new token (shown once), its row, and what capped it."""
        bound = parse_bind(bind) if bind is not None else None
        self.check_mintable(user, target)  # no code is spent on what would be refused
        self.identity.require_totp(user, code, via)
        grant = self.check_mintable(user, target)  # decided again, after the code
        cap = self.config.target_policy(target).reusable_ticket_max
        expires, capped_by = lifetime(self.clock.now(), duration, cap, grant.ends_at)
        token = REUSABLE_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
        digest = self.digest(token)
        mac = self.row_mac(digest, user, target, grant_id=grant.id, expires_at=expires,
                           bind=bound)  # fmt: skip
        row = self.store.add_reusable_ticket(NewTicket(
            user=user, target=target, digest=digest, grant_id=grant.id, expires_at=expires,
            bind_address=bound, actor=via, capped_by=capped_by, row_mac=mac))  # fmt: skip
        return token, row, capped_by

    def admit(
        self, user: str, target: str, token: str, address: str, via: str
    ) -> tuple[TicketRow, Grant]:
        """Whether the ticket opens this connection; every use and refusal is an audit event.
        Returns the ticket and the grant the session runs under (its own); Denied if refused."""
        digest = self.digest(token)
        ticket = self.store.reusable_ticket_by_digest(digest)
        if ticket is not None and not self._holds(ticket, digest):
            ticket = None  # refused as an unknown ticket is
        now = self.clock.now()
        live = self.store.grants(user=user, target=target, live_at=now) if ticket else []
        problem = ticket_refusal(ticket, user=user, target=target, address=address, now=now,
                                 live_grants={g.id for g in live})  # fmt: skip
        self.store.record_ticket_use(ticket, user, target, via, problem)
        if problem is not None or ticket is None:
            raise Denied(problem or UNKNOWN)
        return ticket, next(g for g in live if g.id == ticket.grant_id)

    def live(self, user: str) -> list[TicketRow]:
        """`user`'s tickets that may still be used."""
        return self.store.tickets(user=user, live_at=self.clock.now())

    def revoke(
        self, ticket_id: int, actor: str, reason: str = "", *, owner: str | None = None
    ) -> tuple[TicketRow, list[str]]:
        return self.store.revoke_ticket(ticket_id, actor, reason, owner=owner)

    def describe(self, row: TicketRow) -> str:
        """One line: id, whose, where, until when, bound to what, state (never the token)."""
        bound = f", bound to {row.bind_address}" if row.bind_address else ""
        kind = "reusable" if row.reusable else "one-use"
        return (f"ticket {row.id} ({kind}) {row.user} -> {row.target} until"
                f" {iso(row.expires_at)}{bound}: {row.state_at(self.clock.now())},"
                f" {row.uses} use(s)")  # fmt: skip
