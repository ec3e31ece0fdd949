"""The SSH front door: an asyncssh listener whose connections log in with two factors."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import asyncssh
import structlog

from bastion.access.preauth import PreauthLimiter, limiter_for
from bastion.config import Listener
from bastion.core import Core
from bastion.proxied import ProxiedListener, Trusted
from bastion.reload import STOPPING
from bastion.ssh import twofactor
from bastion.ssh.auth import BastionSSHServer
from bastion.ssh.channel import ChannelSession
from bastion.ssh.upstream import DOOR_CIPHERS
from bastion.summaries import Summaries
from bastion.tasks import spawn

log = structlog.get_logger("bastion.ssh")


CLOSE_GRACE = 5.0  # seconds for client connections to close when the door stops


class SSHDoor:
    """Listens for ssh, scp and sftp; every connection gets its own BastionSSHServer."""

    name = "ssh"

    def __init__(self, listener: Listener, core: Core) -> None:
        self.listener = listener
        self.core = core
        self.limiter = limiter_for(core.config.ssh)
        self.summaries = Summaries(core, "ssh")
        self.port = listener.port
        self._server: Any = None
        self._proxied: ProxiedListener | None = None  # behind load balancers (proxy_from)
        self._options: asyncssh.SSHServerConnectionOptions | None = None
        self.live: dict[str, ChannelSession] = {}  # session id -> its channel
        self.connections: set[BastionSSHServer] = set()  # open client connections

    def _new_connection(self, source: str | None = None) -> BastionSSHServer:
        """A connection's own view of the limiter, which may end it while it is in login:
        to make room for another address, or because its address failed too often."""
        holder: list[BastionSSHServer] = []

        def evict(why: str) -> None:
            conn = holder[0].conn if holder else None
            if conn is not None:
                log.warning("ssh.preauth_ended", source=holder[0].source, why=why)
                asyncio.get_running_loop().call_soon(
                    conn.disconnect, asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE, why
                )

        seat: PreauthLimiter = self.limiter.for_connection(evict)
        server = BastionSSHServer(self.core, seat, ChannelSession, self.live, self.connections,
                                  summaries=self.summaries, source=source)  # fmt: skip
        holder.append(server)
        return server

    async def start(self) -> None:
        twofactor.install()
        host_key = asyncssh.read_private_key(self.core.config.paths.ssh_host_key)
        options = await asyncssh.SSHServerConnectionOptions.construct(
            server_factory=self._new_connection, server_host_keys=[host_key],
            login_timeout=self.core.config.ssh.login_grace.total_seconds(),
            agent_forwarding=False, x11_forwarding=False, allow_scp=False,
            server_version="bastion",
            # No GSSAPI (Kerberos) login or key exchange, even where the gssapi module is
            # installed: asyncssh would otherwise offer it by default, as a login method
            # that never passes through the two factors.
            gss_host=None, gss_kex=False, gss_auth=False,
            encryption_algs=list(DOOR_CIPHERS), encoding=None, line_editor=False,
        )  # fmt: skip
        trusted = Trusted(self.core.config.listeners.proxy_from)
        if trusted:
            self._options = options
            where = self.listener.address, self.listener.port
            self._proxied = ProxiedListener(self.name, *where, trusted, self._accepted)
            self.port = await self._proxied.start()
            self.summaries.start()
            return
        self._server = await asyncssh.create_server(
            self._new_connection, self.listener.address, self.listener.port, options=options
        )
        sockets = self._server.sockets or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        self.summaries.start()

    async def _accepted(self, sock: socket.socket, source: str) -> None:
        """A connection the balancer-aware listener hands over, with its client's address;
        a login that fails ends here, told and audited by its BastionSSHServer."""

        def server() -> BastionSSHServer:
            return self._new_connection(source)

        with contextlib.suppress(asyncssh.Error, OSError, TimeoutError):
            await asyncssh.run_server(sock, options=self._options, server_factory=server)

    def reload_tls(self, context: object, tls: object) -> str | None:
        """The SSH door has no TLS; its host key is read at start only."""
        return None

    async def pause(self) -> None:
        """Stop accepting connections (a stop's drain); live sessions and connections go on."""
        if self._proxied is not None:
            await self._proxied.close()
        if self._server is not None:
            self._server.close()

    def tell(self, message: str) -> None:
        """A line on every live session's stderr (a stop's warning)."""
        for channel in list(self.live.values()):
            channel.tell(message)

    async def stop(self) -> None:
        if self._proxied is not None:
            await self._proxied.close()
        channels = list(self.live.values())
        for channel in channels:
            channel.end(STOPPING, "interrupted")
        pending = [c.finishing for c in channels if c.finishing is not None]
        if pending:
            await asyncio.wait(pending, timeout=10)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        # Closing the listener leaves accepted connections open: end them, and with them their
        # upstream connections, so no socket outlives the door.
        closing = [spawn(c.close(), name="ssh-close") for c in list(self.connections)]
        if closing:
            await asyncio.wait(closing, timeout=CLOSE_GRACE)
        await self.summaries.stop()
