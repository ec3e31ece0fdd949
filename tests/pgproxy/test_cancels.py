"""The cancel forwarding's pure parts: advertised addresses, and what a node refuses to use."""

from __future__ import annotations

import pytest

from bastion.config_policies import PostgresPolicy, host_port
from bastion.pgproxy.cancels import LOCAL_HEADER
from bastion.proxyproto import HeaderReader


@pytest.mark.parametrize(("text", "found"), [
    ("bastion-1.internal:6432", ("bastion-1.internal", 6432)),
    ("10.0.0.7:1", ("10.0.0.7", 1)),
    ("[::1]:6432", ("::1", 6432)),
    ("[fd00::7]:65535", ("fd00::7", 65535)),
])  # fmt: skip
def test_an_advertised_address_is_host_and_port(text: str, found: tuple[str, int]) -> None:
    assert host_port(text) == found
    assert PostgresPolicy(cancel_advertise=text).problem() is None


@pytest.mark.parametrize(("text", "problem"), [
    ("bastion-1", "not host:port"),  # no port
    ("::1:6432", "in brackets"),  # an IPv6 address without them
    ("b1:70000", "from 1 to 65535"),
    ("b1:0", "from 1 to 65535"),
    ("a b:1", "not host:port"),
    ("b1:+80", "not host:port"),
    ("[b1]:80", "not host:port"),  # brackets hold an IPv6 address, not a name
])  # fmt: skip
def test_an_address_that_cannot_work_is_refused(text: str, problem: str) -> None:
    assert host_port(text) is None
    found = PostgresPolicy(cancel_advertise=text).problem()
    assert found is not None and found[0] == "cancel_advertise" and problem in found[1]


def test_the_local_header_is_a_proxy_v2_local_command() -> None:
    """What a node sends first when its peer reads PROXY headers from its address."""
    reader = HeaderReader()
    reader.feed(LOCAL_HEADER)
    assert reader.header is not None and reader.header.local and reader.rest == b""
