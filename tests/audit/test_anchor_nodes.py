"""Anchors name the node that signed them (`[cluster] node`), not the host, which several
nodes on one machine or containers with one host name share; `audit verify` lists them by
node, and anchors signed before, with the host name, still verify beside them."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from bastion.audit.anchors import Anchorer, anchor_key, read_anchors
from bastion.clock import iso
from tests.harness import Bastion


def verify(b: Bastion, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bastion", "--config", str(b.home / "bastion.toml"),
         "audit", "verify", *flags],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_anchors_name_the_node_and_older_host_named_ones_still_verify(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere" / "anchors.log"
    path.parent.mkdir()
    extra = f'[cluster]\nnode = "anchor-b"\n[audit]\nanchors = ["file:{path}"]\n'
    b = Bastion(tmp_path / "b", extra)
    host = socket.gethostname()
    assert host != "anchor-b"
    key = anchor_key(b.box)
    before = Anchorer([f"file:{path}"], key, host, lambda: iso(b.clock.now()))
    assert before.anchor(b.store.chain_head()) == []  # as serve signed them before: the host
    before.close()
    b.start()
    b.stop()  # anchored at start and at stop
    found, problems = read_anchors(path, key)
    assert problems == []
    assert [anchor.node for anchor in found] == [host, "anchor-b", "anchor-b"]
    done = verify(b)
    assert done.returncode == 0, done.stdout + done.stderr
    signers = ", ".join(f"{n} from {node}" for node, n in sorted({"anchor-b": 2, host: 1}.items()))
    assert f"3 anchors in 1 file(s) agree ({signers})" in done.stdout
    as_json = json.loads(verify(b, "--json").stdout)
    assert as_json["ok"] is True
    assert as_json["anchors_by_node"] == {"anchor-b": 2, host: 1}


def test_a_host_named_anchor_still_catches_a_deleted_tail(tmp_path: Path) -> None:
    """An anchor signed before the change is still a witness: the chain ending before it
    fails `audit verify`, naming the host that signed it."""
    path = tmp_path / "elsewhere" / "anchors.log"
    path.parent.mkdir()
    extra = f'[cluster]\nnode = "anchor-b"\n[audit]\nanchors = ["file:{path}"]\n'
    b = Bastion(tmp_path / "b", extra)
    b.add_user("alice")  # a few events
    host = socket.gethostname()
    seq, mac = b.store.chain_head()
    assert seq > 0
    before = Anchorer([f"file:{path}"], anchor_key(b.box), host, lambda: iso(b.clock.now()))
    before.anchor((seq + 5, mac))  # a head five events past what the store now holds
    before.close()
    b.release()
    done = verify(b)
    assert done.returncode != 0
    assert f"but {host} anchored event {seq + 5}" in done.stdout + done.stderr
