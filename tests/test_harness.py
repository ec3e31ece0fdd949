"""The test harness itself: a bastion whose port another process took since its home was made
moves to free ports instead of failing the test that started it."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.harness import Bastion
from tests.realssh import LOOPBACK, read_banner


def test_a_port_taken_before_start_is_given_up_for_a_free_one(tmp_path: Path) -> None:
    b = Bastion(tmp_path / "b", postgres=True)
    taken = b.port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind((LOOPBACK, taken))
        squatter.listen()
        b.start()
        try:
            assert b.port != taken and b.config.listeners.ssh.port == b.port
            assert (read_banner(LOOPBACK, b.port) or "").startswith("SSH-2.0-")
        finally:
            b.stop()
