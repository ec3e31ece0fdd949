"""The balancer-aware listener with raw sockets, and the SSH door's limits counting per client."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from bastion.config import load_config
from bastion.errors import ConfigError
from bastion.proxied import ProxiedListener, Trusted
from bastion.proxyproto import V2_SIGNATURE, encode_v1, encode_v2
from tests.harness import Bastion
from tests.nodes import until
from tests.realhaproxy import BALANCER
from tests.realssh import Sshd
from tests.ssh.test_door_auth import CodeClient

CLIENT_FIRST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"  # what a psql sends first (SSLRequest)


def test_proxy_from_takes_addresses_and_networks_only(tmp_path: Path) -> None:
    path = tmp_path / "bastion.toml"
    path.write_text('[listeners]\nproxy_from = ["10.0.0.5", "10.1.0.0/16", "fd00:1:2::/48"]\n')
    assert load_config(path).listeners.proxy_from == ("10.0.0.5", "10.1.0.0/16", "fd00:1:2::/48")
    for bad in ('"lb.example.com"', '"10.0.0.5/24"', '"10.0.0.0/33"', '""', "5"):
        path.write_text(f"[listeners]\nproxy_from = [{bad}]\n")
        with pytest.raises(ConfigError, match=r"listeners\.proxy_from"):
            load_config(path)


def test_trusted_addresses_match_ipv4_seen_through_ipv6() -> None:
    trusted = Trusted(["127.0.0.3/32", "fd00::/8"])
    assert "127.0.0.3" in trusted and "::ffff:127.0.0.3" in trusted and "fd00::1" in trusted
    assert "127.0.0.1" not in trusted and "fe80::1" not in trusted and "?" not in trusted
    assert not Trusted([])


class Handed:
    """A listener whose door records each handed-over connection: address and first bytes."""

    def __init__(self, wait: float = 5.0) -> None:
        self.got: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self.listener = ProxiedListener("test", "127.0.0.1", 0, Trusted([f"{BALANCER}/32"]),
                                        self.handoff, header_wait=wait)  # fmt: skip

    async def handoff(self, sock: socket.socket, source: str) -> None:
        data = await asyncio.get_running_loop().sock_recv(sock, 64)
        sock.close()
        await self.got.put((source, data))


async def exchange(port: int, source: str, *pieces: bytes) -> bytes:
    """Connect from `source`, send the pieces one by one, return what comes back until EOF."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    for piece in pieces:
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(0.01)  # separate segments
    try:
        return await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


def test_the_header_names_the_client_and_the_door_reads_the_clients_bytes() -> None:
    async def run() -> None:
        handed = Handed()
        port = await handed.listener.start()
        try:
            v2 = encode_v2("198.51.100.7", 5000, "127.0.0.1", port)
            await exchange(port, BALANCER, v2 + CLIENT_FIRST)  # one segment
            assert await handed.got.get() == ("198.51.100.7", CLIENT_FIRST)
            v1 = encode_v1("2001:db8::7", 5000, "::1", port)
            await exchange(port, BALANCER, v1[:5], v1[5:20], v1[20:] + CLIENT_FIRST)
            assert await handed.got.get() == ("2001:db8::7", CLIENT_FIRST)
            local = V2_SIGNATURE + b"\x20\x00\x00\x00"  # LOCAL: the balancer's own check
            await exchange(port, BALANCER, local + CLIENT_FIRST)
            assert await handed.got.get() == (BALANCER, CLIENT_FIRST)
            await exchange(port, "127.0.0.2", v2 + CLIENT_FIRST)  # not a balancer: unread
            assert await handed.got.get() == ("127.0.0.2", v2 + CLIENT_FIRST)
        finally:
            await handed.listener.close()

    asyncio.run(run())


def test_a_balancer_without_a_valid_header_in_time_is_closed_and_never_handed_over() -> None:
    async def run() -> None:
        handed = Handed(wait=0.3)
        port = await handed.listener.start()
        try:
            oversized = V2_SIGNATURE + b"\x21\x11\xff\xff"
            for pieces in ([b""], [CLIENT_FIRST], [oversized], [b"PROXY TCP4 1.2.3.4 x\r\n"],
                           [encode_v2("198.51.100.7", 1, "127.0.0.1", 2)[:20]]):  # fmt: skip
                assert await exchange(port, BALANCER, *pieces) == b""
            assert handed.got.empty()
        finally:
            await handed.listener.close()

    asyncio.run(run())


def test_ssh_failed_logins_block_the_client_behind_the_balancer_not_the_balancer(
    tmp_path: Path, sshd: Sshd
) -> None:
    """Emulates HAProxy: connections from its address, each with a header naming a client."""
    limits = '[listeners]\nproxy_from = ["127.0.0.3"]\n[ssh]\nmax_failures_per_source = 2\n'
    b = Bastion(tmp_path / "bastion", limits)
    b.add_user("alice")
    b.add_target("web-1", sshd)
    b.grant("alice", "web-1")
    b.start()
    key = asyncssh.read_private_key(b.keys["alice"])

    async def login(client: str, codes: list[str]) -> Any:
        sock = socket.create_connection(("127.0.0.1", b.port), timeout=10,
                                        source_address=(BALANCER, 0))  # fmt: skip
        sock.sendall(encode_v2(client, 40000, "127.0.0.1", b.port))
        return await asyncssh.connect(
            sock=sock, username="alice+web-1", client_keys=[key], known_hosts=b.known_hosts(),
            client_factory=lambda: CodeClient(codes), agent_path=None, config=None,
            preferred_auth="publickey,keyboard-interactive",
        )  # fmt: skip

    async def refused(client: str) -> None:
        with pytest.raises((asyncssh.Error, OSError)):  # a wrong code, then turned away
            await login(client, ["000000"])

    async def run() -> str:
        for _ in range(3):
            await refused("198.51.100.1")
        async with await login("198.51.100.2", [b.code("alice")]) as conn:
            done = await conn.run("echo still-in", check=True)
        return str(done.stdout)

    try:
        assert b.call(run()) == "still-in\n"
        # The SSH door chains the block from a callback, without holding up the refusal.
        until(lambda: b.events("auth.source_blocked"), "the block's event")
        blocked = [json.loads(e.detail)["source"] for e in b.events("auth.source_blocked")]
        assert blocked == ["198.51.100.1"]
        assert [s.client_addr for s in b.store.sessions()] == ["198.51.100.2"]
    finally:
        b.stop()


def startup(user: str, database: str) -> bytes:
    body = struct.pack("!I", 196608) + f"user\0{user}\0database\0{database}\0\0".encode()
    return struct.pack("!I", len(body) + 4) + body


def test_a_client_a_balancer_calls_local_still_needs_tls(tmp_path: Path) -> None:
    """Plain TCP is let through for clients on this machine only; a header naming 127.0.0.1
    does not make the balancer's hop local."""
    b = Bastion(tmp_path / "bastion", '[listeners]\nproxy_from = ["127.0.0.3"]\n', postgres=True)
    b.start()
    try:
        said = {}
        local = V2_SIGNATURE + b"\x20\x00\x00\x00"  # LOCAL: no address, the balancer's own
        for name, peer, header in (
            ("named", BALANCER, encode_v2("127.0.0.1", 1, "127.0.0.1", b.pg_port)),
            ("local", BALANCER, local), ("direct", "127.0.0.2", b"")):  # fmt: skip
            with socket.create_connection(("127.0.0.1", b.pg_port), timeout=10,
                                          source_address=(peer, 0)) as sock:  # fmt: skip
                sock.sendall(header + startup("pia", "orders-prod"))
                said[name] = sock.recv(4096)
        assert said["named"].startswith(b"E") and b"requires TLS" in said["named"]
        # a header without an address leaves the balancer's own (loopback) address: still a
        # connection a balancer made for someone, never this machine's client
        assert said["local"].startswith(b"E") and b"requires TLS" in said["local"]
        assert b"requires TLS" not in said["direct"]  # a local client without a balancer
    finally:
        b.stop()
