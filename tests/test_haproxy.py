"""Behind a real HAProxy sending PROXY v2: the doors see the engineer's address, not its own."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bastion.config import Config, load_config
from bastion.proxyproto import encode_v1, encode_v2
from tests.harness import CONFIG, Bastion
from tests.realhaproxy import BALANCER, HAPROXY, HAProxy, Route
from tests.realpg import PgDatabase, run_psql
from tests.realssh import OpenSSHClient, Sshd, free_port

ENGINEER = "127.0.0.2"  # the ssh client binds here: neither HAProxy's address nor the default
FORGED = "203.0.113.66"
PASSWORD = "pia's long password 1"


class Balanced(Bastion):
    """A bastion with all three doors, trusting HAProxy's address for PROXY headers."""

    web_port = 0

    def _write_config(self) -> Config:
        self.web_port = self.web_port or free_port()
        text = CONFIG.format(port=self.port, postgres="true", pg_port=self.pg_port)
        text = text.replace("[listeners.web]\nenabled = false\n",
                            f"[listeners.web]\nport = {self.web_port}\n")  # fmt: skip
        text = f'[listeners]\nproxy_from = ["{BALANCER}/32"]\n{text}{self._extra_config}'
        (self.home / "bastion.toml").write_text(text, encoding="utf-8")
        return load_config(self.home / "bastion.toml")


@pytest.fixture
def balanced(tmp_path: Path, sshd: Sshd, pg: PgDatabase) -> Iterator[tuple[Balanced, HAProxy]]:
    b = Balanced(tmp_path / "bastion")
    b.add_user("alice")
    b.add_target("web-1", sshd)
    b.grant("alice", "web-1")
    b.add_user("pia", key=False, password=PASSWORD)
    b.add_pg_target("orders-prod", pg)
    b.grant("pia", "orders-prod")
    b.start()
    lb = HAProxy(tmp_path / "haproxy", [
        Route("ssh", [b.port]), Route("postgres", [b.pg_port]),
        Route("web", [b.web_port], check_ports=[b.web_port]),
    ])  # fmt: skip
    try:
        with lb:
            yield b, lb
    finally:
        b.stop()


def recorded(b: Bastion) -> str:
    """Every event and session row, as one text to search for addresses."""
    events = [(e.kind, e.actor, e.detail) for e in b.store.events()]
    sessions = [s.public() for s in b.store.sessions()]
    return json.dumps([events, sessions], default=str)


def test_ssh_through_haproxy_records_the_engineers_address(
    balanced: tuple[Balanced, HAProxy], tmp_path: Path
) -> None:
    b, lb = balanced
    known = tmp_path / "known_hosts"
    public = Path(f"{b.config.paths.ssh_host_key}.pub").read_text().split()
    known.write_text(f"[127.0.0.1]:{lb.port('ssh')} {public[0]} {public[1]}\n")
    client = OpenSSHClient("127.0.0.1", lb.port("ssh"), "alice+web-1", workdir=tmp_path / "c",
                           identity=b.keys["alice"], known_hosts=known)  # fmt: skip
    done = client.run_ssh("echo through-the-balancer", answers=b.answers("alice"),
                          flags=["-o", f"BindAddress={ENGINEER}"])  # fmt: skip
    assert done.returncode == 0, done.err
    assert done.out == "through-the-balancer\n"
    [session] = [s for s in b.store.sessions() if s.protocol == "ssh"]
    assert session.client_addr == ENGINEER
    [opened] = b.events("session.opened")
    assert json.loads(opened.detail)["client"] == ENGINEER
    assert json.loads(b.events("auth.totp_ok")[0].detail)["via"] == f"ssh:{ENGINEER}"
    assert BALANCER not in recorded(b)


def test_psql_through_haproxy_records_the_engineers_address(
    balanced: tuple[Balanced, HAProxy],
) -> None:
    b, lb = balanced
    via = PgDatabase("127.0.0.1", lb.port("postgres"), "orders-prod", "pia",
                     b.pg_secret("pia", PASSWORD))  # fmt: skip
    done = run_psql({**via.params(), "sslmode": "require"}, "-At", "-c", "SELECT 1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"
    [session] = [s for s in b.store.sessions() if s.protocol == "postgres"]
    assert session.client_addr == "127.0.0.1"  # psql's own address, not HAProxy's .3
    assert BALANCER not in recorded(b)


def test_psql_through_haproxy_speaking_v1_text(
    balanced: tuple[Balanced, HAProxy], tmp_path: Path
) -> None:
    b, _ = balanced
    with HAProxy(tmp_path / "v1", [Route("postgres", [b.pg_port])], proxy="send-proxy") as lb:
        via = PgDatabase("127.0.0.1", lb.port("postgres"), "orders-prod", "pia",
                         b.pg_secret("pia", PASSWORD))  # fmt: skip
        done = run_psql({**via.params(), "sslmode": "require"}, "-At", "-c", "SELECT 2")
    assert done.returncode == 0, done.stderr
    assert [s.client_addr for s in b.store.sessions()] == ["127.0.0.1"]


def test_healthz_through_haproxy_and_its_checks_pass(balanced: tuple[Balanced, HAProxy]) -> None:
    b, lb = balanced
    assert lb.wait_up("web_nodes") == {("web_nodes", "node0"): "UP"}  # LOCAL headers, over TLS
    context = ssl.create_default_context(cafile=str(b.config.paths.tls_ca))
    url = f"https://127.0.0.1:{lb.port('web')}/healthz"
    with urllib.request.urlopen(url, context=context, timeout=10) as answer:
        assert answer.status == 200
        assert json.loads(answer.read())["status"] == "ok"


def test_a_web_signin_through_haproxy_names_the_engineers_address(
    balanced: tuple[Balanced, HAProxy],
) -> None:
    b, lb = balanced
    context = ssl.create_default_context(cafile=str(b.config.paths.tls_ca))
    conn = http.client.HTTPSConnection("127.0.0.1", lb.port("web"), timeout=10, context=context,
                                       source_address=(ENGINEER, 0))  # fmt: skip
    body = json.dumps({"username": "pia", "password": "not pia's password", "code": "000000"})
    conn.request("POST", "/api/v1/signin", body, {"Content-Type": "application/json"})
    answer = conn.getresponse()
    assert answer.status == 401, answer.read()
    conn.close()
    [failed] = b.events("auth.failed")
    assert failed.actor == f"web:{ENGINEER}" and json.loads(failed.detail)["source"] == ENGINEER
    assert BALANCER not in recorded(b)


def test_the_documented_example_is_valid_and_sends_proxy_v2_to_every_node() -> None:
    example = Path(__file__).resolve().parent.parent / "docs" / "haproxy.cfg"
    checked = subprocess.run([HAPROXY, "-c", "-f", str(example)], capture_output=True,
                             text=True, timeout=30, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    lines = [line.split() for line in example.read_text().splitlines()]
    servers = [line for line in lines if line[:1] == ["server"]]
    assert len(servers) == 9  # three nodes behind each of the three doors
    [default] = [line for line in lines if line[:1] == ["default-server"]]
    assert {"send-proxy-v2", "check", "check-ssl", "check-send-proxy"} <= set(default)
    assert not [line for line in lines if line[:1] == ["mode"] and line[1] != "tcp"]


def last_words(sock: socket.socket) -> bytes:
    """Everything the bastion says until it closes the connection."""
    sock.settimeout(10)
    said = b""
    try:
        while chunk := sock.recv(4096):
            said += chunk
    except ConnectionResetError:  # closed with our bytes unread
        pass
    return said


@pytest.mark.parametrize("door", ["ssh", "postgres", "web"])
def test_a_trusted_address_without_a_header_is_closed_unanswered(
    balanced: tuple[Balanced, HAProxy], door: str
) -> None:
    b, _ = balanced
    port = {"ssh": b.port, "postgres": b.pg_port, "web": b.web_port}[door]
    first = {"ssh": b"SSH-2.0-OpenSSH_9.2\r\n", "postgres": b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
             "web": b"GET /healthz HTTP/1.1\r\n\r\n"}[door]  # fmt: skip
    with socket.create_connection(("127.0.0.1", port), timeout=10,
                                  source_address=(BALANCER, 0)) as sock:  # fmt: skip
        sock.sendall(first)
        assert last_words(sock) == b""  # not even the SSH banner: the door never saw it


@pytest.mark.parametrize("header", [encode_v2, encode_v1])
def test_a_forged_header_from_anyone_else_is_not_believed(
    balanced: tuple[Balanced, HAProxy], header: Any
) -> None:
    b, _ = balanced
    forged = header(FORGED, 40000, "127.0.0.1", b.pg_port)
    with socket.create_connection(("127.0.0.1", b.pg_port), timeout=10,
                                  source_address=(ENGINEER, 0)) as sock:  # fmt: skip
        sock.sendall(forged + b"\x00\x00\x00\x08\x04\xd2\x16\x2f")
        said = last_words(sock)
    assert said[:1] in (b"E", b"")  # read as a (bad) start-up packet, then closed
    with socket.create_connection(("127.0.0.1", b.port), timeout=10,
                                  source_address=(ENGINEER, 0)) as sock:  # fmt: skip
        sock.sendall(header(FORGED, 40000, "127.0.0.1", b.port) + b"SSH-2.0-OpenSSH_9.2\r\n")
        said = last_words(sock)
    assert said.startswith(b"SSH-2.0-bastion")  # the door itself read the header, as junk
    assert FORGED not in recorded(b)
