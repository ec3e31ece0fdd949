"""Connecting to a target with its own sealed key and its pinned host key."""

from __future__ import annotations

import asyncio

import asyncssh

from bastion.audit import Event
from bastion.audit.records import Target
from bastion.core import Core
from bastion.errors import BastionError

CONNECT_TIMEOUT = 15.0
# The bastion to target leg uses only these. AES, with the CPU's AES instructions, costs
# asyncssh far less per packet than chacha20-poly1305, which it builds per packet; both are
# strong. The bastion is the client here, so its order (GCM first) decides.
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr")
# The engineer to bastion leg: AES-GCM only. The client's order decides, and OpenSSH lists CTR
# before GCM; CTR with umac-64-etm costs asyncssh about 0.25 ms more CPU per MB each way (a new MAC
# context per packet), so CTR is not offered. Any OpenSSH since 6.2 and PuTTY since 0.76 have
# AES-GCM. chacha20-poly1305 is not offered either (see above).
DOOR_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


class UpstreamError(BastionError):
    """The target could not be reached as it should be; the message is for the engineer."""


def pinned_known_hosts(
    target: Target,
) -> tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey], list[asyncssh.SSHKey]]:
    """asyncssh's (trusted host keys, trusted CAs, revoked) form, holding only the pinned key."""
    if not target.host_key:
        raise UpstreamError(
            f"target {target.name} has no trusted host key yet;"
            f" an admin must run: bastion target trust {target.name}"
        )
    return ([asyncssh.import_public_key(target.host_key)], [], [])


async def connect(core: Core, target: Target, user: str) -> asyncssh.SSHClientConnection:
    """Log in to the target as its configured account; the engineer never sees the key."""
    known_hosts = pinned_known_hosts(target)
    key = asyncssh.import_private_key(await core.target_secret(target.name))
    try:
        return await asyncio.wait_for(
            asyncssh.connect(
                target.host, target.port, username=target.login, client_keys=[key],
                known_hosts=known_hosts, agent_path=None, config=None,
                preferred_auth="publickey", client_version="bastion",
                encryption_algs=list(CIPHERS),
            ),
            timeout=CONNECT_TIMEOUT,
        )  # fmt: skip
    except asyncssh.HostKeyNotVerifiable as exc:
        detail = {"host": target.host, "port": target.port, "error": str(exc)}
        await core.audit(Event("target.host_key_mismatch", user, target.name, "high",
                               detail=detail))  # fmt: skip
        raise UpstreamError(
            f"the host key of {target.name} has changed; refusing to connect"
            " (an admin must check it and run: bastion target trust"
            f" {target.name})"
        ) from exc
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        raise UpstreamError(
            f"cannot reach {target.name} ({target.host}:{target.port}): {reason}"
        ) from exc


async def fetch_host_key(host: str, port: int) -> asyncssh.SSHKey:
    """The host key a target presents now, for an admin to confirm (`bastion target trust`)."""
    try:
        key = await asyncio.wait_for(asyncssh.get_server_host_key(host, port), CONNECT_TIMEOUT)
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        raise UpstreamError(f"cannot fetch the host key of {host}:{port}: {exc}") from exc
    if key is None:
        raise UpstreamError(f"{host}:{port} presented no host key")
    return key
