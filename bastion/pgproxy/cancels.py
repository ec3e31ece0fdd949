"""Cancel keys across bastion nodes: pids unique in the store, cancels forwarded to their owner.

Behind a load balancer a client's CancelRequest may reach any node. Each node claims its
sessions' pids in the store's cancel_keys (never the secret half), so a pid names one
session on one node; a node that does not hold a pid looks it up there and hands the same
request, marked as forwarded, to the owner's door, which checks the secret itself. A
forwarded request is never forwarded again, and a node never forwards to itself. It carries
a MAC under a key every node derives from the shared secrets key, so only a node can send
one: a client sending bastion's forwarded code itself is refused without a look.

The key goes to a peer only inside TLS, and only once the peer has shown the very
certificate this node serves (the nodes share one): an address in the store that names
anything else (a typo, or a row an admin with the store wrote) is sent an SSLRequest and
nothing more. A node without a certificate serves loopback only, and forwards so too.
A node whose own address is one the nodes read PROXY headers from (listeners.proxy_from,
the same on every node) opens with a LOCAL header, as a balancer's own check would.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import os
import socket
import ssl
from collections.abc import Container, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

import structlog

from bastion import pgwire
from bastion.access.tally import Tally
from bastion.audit import CancelOwner
from bastion.config_policies import host_port
from bastion.core import Core
from bastion.errors import BastionError, ConfigError
from bastion.proxied import Trusted
from bastion.proxyproto import V2_SIGNATURE
from bastion.summaries import Summaries

log = structlog.get_logger("bastion.postgres")

KEY_BYTES = 4  # the secret half of every cancel key the door hands out (protocol 3.0)
CLAIM_TRIES = 8  # random pids tried at one login before it is refused
MAX_ROUTING = 8  # cancels being looked up or forwarded at once; past it, dropped
FORWARD_TIMEOUT = 2.0  # seconds to reach the owner's door and hand it the request
# A node that could not be reached is not tried again for a while: the rows of a node that
# is down stay until it starts again, and cancels quoting them must not hold every slot.
UNREACHABLE_FOR = timedelta(seconds=10)
MAX_UNREACHABLE = 1024  # addresses remembered as unreachable; past it, all forgotten
# Forwarded cancels reach the owner from its peers' addresses, each peer carrying many
# clients' (every client is held to the door's own budget at the node it reached first).
FORWARDED_BUDGET = 1000  # per sending address per minute, as the door's Tally counts
MAC_BYTES = 32  # HMAC-SHA-256 of a forwarded cancel, after its key
FORWARD_PURPOSE = "bastion postgres forwarded cancel v1"  # the MAC key's HKDF info
LOCAL_HEADER = V2_SIGNATURE + bytes([0x20, 0x00, 0x00, 0x00])  # PROXY v2 LOCAL, no addresses
WILDCARDS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 - compared against, never bound


def node_name(core: Core) -> str:
    """This node's name among those sharing the store: [cluster] node, else the host's."""
    return core.node


def advertised(core: Core, port: int) -> str:
    """host:port where peers reach this door: [postgres] cancel_advertise, else the listener's
    address (the host's name when it binds every address) and the port it listens on."""
    configured = core.config.postgres.cancel_advertise
    if configured:
        problem = core.config.postgres.problem()  # checked here: config.py is full
        if problem is not None:
            raise ConfigError(str(core.config.path), f"postgres.{problem[0]}", problem[1])
        return configured
    address = core.config.listeners.postgres.address
    host = socket.gethostname() if address in WILDCARDS else address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Cancellable(Protocol):
    """A live session as a cancel sees it: its key, and a way to cancel its query."""

    cancel_key: tuple[int, bytes]

    async def cancel(self, why: str) -> None: ...


class PeerRefused(Exception):
    """The address did not prove to be a bastion node: the key is not sent."""


def pinned_certificate(path: Path) -> bytes | None:
    """The DER of the first certificate in this node's chain file; None without one."""
    try:
        pem = path.read_text(encoding="ascii")
    except (OSError, ValueError):
        return None
    end = "-----END CERTIFICATE-----"
    start, stop = pem.find("-----BEGIN CERTIFICATE-----"), pem.find(end)
    if start < 0 or stop < start:
        return None
    return ssl.PEM_cert_to_DER_cert(pem[start : stop + len(end)])


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class CancelRoutes:
    """This node's rows in cancel_keys, and the forwarding of cancels it does not hold."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.node = node_name(core)
        self.address = ""  # set by start(), once the door's port is known
        self.pin = pinned_certificate(core.config.paths.tls_cert)
        self.balancers = Trusted(core.config.listeners.proxy_from)
        self._mac_key = core.box.hkdf(FORWARD_PURPOSE)  # the same on every node
        self._routing = 0
        self._unreachable: dict[str, datetime] = {}  # address -> not tried before then
        # Cancels other nodes forwarded here: counted apart, one audit summary a minute.
        self.forwarded = Summaries(core, "postgres", Tally(budget=FORWARDED_BUDGET))

    async def start(self, port: int) -> None:
        """Advertise this door; the sessions this node held before it started are gone, so
        the pids the store still gives it are forgotten."""
        self.address = advertised(self.core, port)
        keys = self.core.cancel_keys
        left = await self.core.run(keys.clear_cancel_pids, self.node)
        if left:
            log.info("postgres.cancel_keys_cleared", node=self.node, count=left)
        self.forwarded.start()

    async def stop(self) -> None:
        await self.forwarded.stop()

    async def claim(self, held: Container[int], session_id: str) -> int:
        """A random pid that no node holds, claimed in the store for this session (before
        its client learns it); BastionError when none could be claimed."""
        for _ in range(CLAIM_TRIES):
            pid = int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF
            if not pid or pid in held:
                continue
            keys = self.core.cancel_keys
            if await self.core.run(keys.claim_cancel_pid, pid, self.node, self.address,
                                   session_id):  # fmt: skip
                return pid
        raise BastionError("no cancel key could be claimed in the store")

    async def release(self, pid: int, session_id: str) -> None:
        """The session ended: its pid names nothing (if the store fails now, the row stays
        until this node starts again, and a cancel sent to it finds nothing here)."""
        try:
            keys = self.core.cancel_keys
            await self.core.run(keys.release_cancel_pid, pid, self.node, session_id)
        except BastionError as exc:
            log.warning("postgres.cancel_key_kept", error=exc.message)

    async def handle(self, source: str, request: pgwire.CancelRequest,
                     held: Mapping[int, Cancellable], summaries: Summaries) -> None:  # fmt: skip
        """A forged or stale key cancels nothing, and says nothing (as PostgreSQL does).
        Cancels are counted per address into one audit summary a minute (`summaries`, the
        door's), and past the minute's budget even a right key cancels nothing. A pid held
        here is checked here; any other is forwarded to its node, unless it was forwarded
        here (then counted apart, and dropped if not held)."""
        key = self._opened(request)
        if key is None:
            summaries.note("query.cancel_request", source, "forwarded cancel not from a node")
            return
        session = held.get(request.pid)
        valid = session is not None and hmac.compare_digest(session.cancel_key[1], key)
        why = "cancelled" if valid else "no such backend key"
        if request.forwarded:
            counted = self.forwarded.note("query.cancel_forwarded", source, why)
            log.info("postgres.cancel_forwarded_here", pid=request.pid, outcome=why)
        else:
            counted = summaries.note("query.cancel_request", source, why)
        if counted and session is not None and valid:
            await session.cancel("the client sent a cancel request")
        elif counted and session is None and not request.forwarded:
            await self.forward(request.pid, key)

    def _mac(self, pid: int, key: bytes) -> bytes:
        message = pid.to_bytes(4, "big", signed=True) + key
        return hmac.new(self._mac_key, message, hashlib.sha256).digest()

    def _opened(self, request: pgwire.CancelRequest) -> bytes | None:
        """The key a request quotes; for a forwarded one, only if a node's MAC follows it."""
        if not request.forwarded:
            return request.key
        key, mac = request.key[:KEY_BYTES], request.key[KEY_BYTES:]
        if len(mac) != MAC_BYTES or not hmac.compare_digest(mac, self._mac(request.pid, key)):
            return None
        return key

    async def forward(self, pid: int, key: bytes) -> str:
        """Hand a cancel for a pid this node does not hold to the node the store says holds
        it; what became of it, for the log. Bounded: past MAX_ROUTING at once, dropped."""
        if len(key) != KEY_BYTES:
            return "not a key the bastion hands out"
        if self._routing >= MAX_ROUTING:
            return "too many cancels being forwarded"
        self._routing += 1
        try:
            outcome = await self._route(pid, key)
        finally:
            self._routing -= 1
        log.info("postgres.cancel_routed", pid=pid, outcome=outcome)
        return outcome

    async def _route(self, pid: int, key: bytes) -> str:
        try:
            owner = await self.core.run(self.core.cancel_keys.cancel_owner, pid)
        except BastionError:
            return "the store could not be read"
        if owner is None:
            return "no such backend key"
        if owner.node == self.node or owner.address == self.address:
            return "held here, and ended"
        packet = pgwire.cancel_request(pid, key + self._mac(pid, key), forwarded=True)
        return await self._send_to(owner, packet)

    async def _send_to(self, owner: CancelOwner, packet: bytes) -> str:
        where = host_port(owner.address)
        if where is None:
            return "the owner's address is not host:port"
        now = self.core.clock.now()
        if now < self._unreachable.get(owner.address, now):
            return f"node {owner.node} was unreachable a moment ago"
        try:
            sending = _send(*where, packet, self.pin, self.balancers)
            await asyncio.wait_for(sending, FORWARD_TIMEOUT)
        except PeerRefused as exc:
            log.warning("postgres.cancel_peer_refused", node=owner.node, address=owner.address,
                        why=str(exc))  # fmt: skip
            return f"node {owner.node}'s address is no bastion: {exc}"
        except (OSError, TimeoutError, EOFError):
            if len(self._unreachable) >= MAX_UNREACHABLE:
                self._unreachable.clear()
            self._unreachable[owner.address] = now + UNREACHABLE_FOR
            return f"node {owner.node} could not be reached"
        return f"forwarded to node {owner.node}"


async def _send(host: str, port: int, packet: bytes, pin: bytes | None, balancers: Trusted) -> None:
    """The forwarded request on a connection of its own (closed after, as ever): inside TLS
    to a peer showing `pin`, or without a certificate, in clear on this host; after a LOCAL
    PROXY header when the peer reads one from this node's address."""
    if pin is None and not _loopback(host):
        raise PeerRefused("no certificate here to forward to another host under TLS")
    reader, writer = await asyncio.open_connection(host, port)
    try:
        mine = writer.get_extra_info("sockname")
        if mine and str(mine[0]) in balancers:
            writer.write(LOCAL_HEADER)
        if pin is not None:
            await _tls(reader, writer, host, pin)
        writer.write(packet)
        await writer.drain()
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def _tls(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, pin: bytes
) -> None:
    """SSLRequest, then TLS; PeerRefused unless the peer shows this node's own certificate
    (checked by pinning, not by name: peers are reached by addresses the certificate need
    not name)."""
    writer.write(pgwire.ssl_request())
    await writer.drain()
    if await reader.readexactly(1) != b"S":
        raise PeerRefused("it refused TLS")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the pin below is the check
    try:
        await writer.start_tls(context, server_hostname=host)
    except ssl.SSLError as exc:
        raise PeerRefused(f"TLS failed: {exc.reason}") from None
    tls = writer.get_extra_info("ssl_object")
    shown = tls.getpeercert(binary_form=True) if tls is not None else None
    if not shown or not hmac.compare_digest(shown, pin):
        raise PeerRefused("it showed another certificate than this node's")
