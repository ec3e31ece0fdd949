"""[cluster]: each node's name (the host name unless set) and its store grace, each bad value
refused in one line naming the file and key."""

from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path

import pytest

from bastion.config import load_config
from tests.test_config import config_error, write


def test_a_node_is_named_after_its_host_unless_told(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.cluster.node == ""
    assert config.cluster.node_name() == socket.gethostname().split(".")[0].lower()
    assert config.cluster.store_grace == timedelta(seconds=30)
    named = load_config(write(tmp_path, '[cluster]\nnode = "bastion-2"\nstore_grace = "10s"\n'))
    assert named.cluster.node_name() == "bastion-2"
    assert named.cluster.store_grace == timedelta(seconds=10)


@pytest.mark.parametrize("name", ["Bastion-1", "b_1", "-a", "a-", "a.b", "x" * 33, " a", "é"])
def test_a_bad_node_name_is_refused_in_one_line(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, f'[cluster]\nnode = "{name}"\n')
    config_error(path, "cluster.node", "is not a node name", "lowercase letters, digits")


def test_a_host_name_that_is_no_node_name_asks_for_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "build_box.example.com")
    path = write(tmp_path, "")
    config_error(path, "cluster.node", "the host name 'build_box.example.com'", "set one here")
    assert load_config(write(tmp_path, '[cluster]\nnode = "b1"\n')).cluster.node_name() == "b1"


@pytest.mark.parametrize("grace", ['"1s"', '"11m"', "30", '"soon"'])
def test_a_store_grace_out_of_bounds_is_refused(tmp_path: Path, grace: str) -> None:
    config_error(write(tmp_path, f"[cluster]\nstore_grace = {grace}\n"), "cluster.store_grace")


def test_a_node_is_lost_after_ten_minutes_unless_told(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")).cluster.lost_after == timedelta(minutes=10)
    told = load_config(write(tmp_path, '[cluster]\nstore_grace = "2s"\nlost_after = "30s"\n'))
    assert told.cluster.lost_after == timedelta(seconds=30)
    longer = load_config(write(tmp_path, '[cluster]\nstore_grace = "90s"\nlost_after = "90s"\n'))
    assert longer.cluster.lost_after == timedelta(seconds=90)


@pytest.mark.parametrize("lost", ['"29s"', '"8d"', '"soon"'])
def test_a_node_is_never_lost_before_the_store_grace_ran_out(tmp_path: Path, lost: str) -> None:
    """Shorter than store_grace, a node merely cut off could still be serving sessions when
    its recordings were completed and its sessions closed under it."""
    config_error(write(tmp_path, f"[cluster]\nlost_after = {lost}\n"), "cluster.lost_after")


@pytest.mark.parametrize(("grace", "lost"), [("2s", "2s"), ("2s", "29s"), ("10s", "20s"),
                                             ("90s", "60s")])  # fmt: skip
def test_a_node_is_never_lost_in_under_30_seconds(tmp_path: Path, grace: str, lost: str) -> None:
    """Even with a short store_grace: the completer closes a node's sessions only once its
    presence has been over for 30 s or more by the store's clock (a margin for a step of it)."""
    path = write(tmp_path, f'[cluster]\nstore_grace = "{grace}"\nlost_after = "{lost}"\n')
    config_error(path, "cluster.lost_after", "at least store_grace and 30s")
