"""Two `bastion serve` nodes on one PostgreSQL store and one S3-compatible server (moto): node b
is killed mid-SSH-session after its uploader sent a part of the recording and stays down;
node a's upload completer completes b's recording from that part, closes the session as
interrupted ("node b lost"), and the recording exports (and verifies) up to that part. And
in process on SQLite: a serving node's completer closes a lost node's sessions."""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bastion.audit import ChainKey, Store
from bastion.audit.cluster import node_lease
from bastion.audit.location import PgLocation
from bastion.clock import SystemClock
from bastion.config import load_config
from bastion.core import Core
from bastion.identity import totp
from bastion.identity.sealing import SecretBox
from bastion.pki import make_ssh_host_key
from bastion.recording.completer import LEASE as COMPLETER
from bastion.recording.objects import PART_SIZE
from tests import reals3
from tests.harness import Bastion
from tests.reals3 import BUCKET, MotoS3
from tests.realssh import OpenSSHClient, Sshd, TmuxSession, free_port, make_keypair
from tests.test_cluster_nodes import Node, wait_until

moto = reals3.moto
PREFIX = "rec"


def node_config(home: Path, name: str, port: int, *, where: PgLocation, moto: MotoS3,
                shared: Path) -> Path:  # fmt: skip
    """bastion.toml of one node: its own port, spool, head file and anchors; the store, the
    bucket, the keys (in `shared`) every node's."""
    home.mkdir(parents=True, exist_ok=True)
    assert where.password_file is not None
    shutil.copy2(where.password_file, home / "store.password")
    moto.write_credentials(home / "s3.credentials")
    config = home / "bastion.toml"
    config.write_text(
        f"[listeners.ssh]\nport = {port}\n[listeners.postgres]\nenabled = false\n"
        f"[listeners.web]\nenabled = false\n"
        f'[paths]\nsecrets_key = "{shared / "secrets.key"}"\n'
        f'ssh_host_key = "{shared / "ssh_host_ed25519_key"}"\n'
        f'[audit]\nanchors = ["file:{home / "anchors.log"}"]\n'
        f'[store]\nurl = "{where.url}"\npassword_file = "store.password"\n'
        f'[cluster]\nnode = "{name}"\nstore_grace = "2s"\nlost_after = "30s"\n'
        + moto.config(PREFIX)
    )  # fmt: skip
    return config


def populate(config: Path, where: PgLocation) -> tuple[str, Path]:
    """The store made on PostgreSQL with alice (a key, a TOTP seed) granted web-1: her seed
    and key."""
    loaded = load_config(config)
    box = SecretBox.load(loaded.paths.secrets_key)
    store = Store.create(where, SystemClock(), ChainKey.of(box))
    core = Core(loaded, store, box, SystemClock())
    try:
        key = make_keypair(config.parent / "alice_ed25519", comment="alice")
        made = core.identity.enrol("alice", "engineer", None, "test",
                                   ssh_keys=[Path(f"{key}.pub").read_text()])  # fmt: skip
        seed = made.uri.split("secret=")[1].split("&")[0]
        return seed, key
    finally:
        core.shutdown()
        store.close()


def add_target(config: Path, where: PgLocation, sshd: Sshd) -> None:
    import asyncssh  # noqa: PLC0415 - as the harness seals a target's key

    loaded = load_config(config)
    box = SecretBox.load(loaded.paths.secrets_key)
    store = Store.open(where, SystemClock(), ChainKey.of(box))
    core = Core(loaded, store, box, SystemClock())
    try:
        key = asyncssh.read_private_key(sshd.client_key_path)
        sealed = box.seal(key.export_private_key("openssh"), context="target:web-1")
        store.add_target(name="web-1", kind="ssh", host=sshd.host, port=sshd.port,
                         login=sshd.login, database=None, secret_sealed=sealed,
                         actor="test")  # fmt: skip
        store.set_host_key("web-1", sshd.host_key_pub, sshd.host_key_fingerprint, "test")
        core.access.grant(user="alice", target="web-1", duration=timedelta(hours=2),
                          mode="read", reason="the completer test", actor="test")  # fmt: skip
    finally:
        core.shutdown()
        store.close()


@contextmanager
def shell_through(node: Node, shared: Path, seed: str, key: Path,
                  workdir: Path) -> Iterator[TmuxSession]:  # fmt: skip
    workdir.mkdir(parents=True, exist_ok=True)
    known = workdir / "known_hosts"
    public = (shared / "ssh_host_ed25519_key.pub").read_text().split()
    known.write_text(f"[127.0.0.1]:{node.port} {public[0]} {public[1]}\n")
    ssh = OpenSSHClient("127.0.0.1", node.port, "alice", workdir=workdir, known_hosts=known,
                        identity=key)  # fmt: skip
    code = totp.code_for_step(seed, totp.step_at(datetime.now(UTC)))
    with ssh.tmux(login="alice+web-1", answers={"Verification code": code}, flags=["-t"]) as tmux:
        tmux.wait_for("$ ")
        yield tmux


def session_row(where: PgLocation, session_id: str | None = None) -> dict[str, object]:
    store = Store.open(where, SystemClock())
    try:
        rows = store._rows("SELECT id, state, node, end_reason, recording_path,"
                           " recording_size FROM sessions ORDER BY started_at")  # fmt: skip
    finally:
        store.close()
    found = [r for r in rows if session_id is None or r["id"] == session_id]
    assert len(found) == 1, rows
    return found[0]


def event_kinds(where: PgLocation) -> list[str]:
    store = Store.open(where, SystemClock())
    try:
        return [event.kind for event in store.events()]
    finally:
        store.close()


def parts_uploaded(moto: MotoS3) -> int:
    """Parts of the uploads in progress in the bucket, all told."""
    client = moto.client()
    uploads = client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    return sum(len(client.list_parts(Bucket=BUCKET, Key=u["Key"], UploadId=u["UploadId"])
                   .get("Parts", [])) for u in uploads)  # fmt: skip


def test_a_node_killed_mid_session_that_stays_down_has_its_recording_completed_by_another(
    tmp_path: Path, sshd: Sshd, moto: MotoS3, pg_store_at: PgLocation
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    SecretBox.create_key_file(shared / "secrets.key")
    make_ssh_host_key(shared / "ssh_host_ed25519_key")
    a_port, b_port = free_port(), free_port()
    a_config = node_config(tmp_path / "a", "a", a_port, where=pg_store_at, moto=moto, shared=shared)
    b_config = node_config(tmp_path / "b", "b", b_port, where=pg_store_at, moto=moto, shared=shared)
    seed, key = populate(a_config, pg_store_at)
    add_target(a_config, pg_store_at, sshd)
    node_a, node_b = Node("a", a_config, a_port), Node("b", b_config, b_port)
    try:
        node_a.start()
        node_b.start()
        with shell_through(node_b, shared, seed, key, tmp_path / "client") as tmux:
            session_id = str(session_row(pg_store_at)["id"])
            tmux.type_text("echo EARLY-$((6*7))", enter=True)
            tmux.wait_for("EARLY-42")
            tmux.type_text("seq 1 1500000; echo LATE-$((6*7))", enter=True)
            tmux.wait_for("LATE-42", timeout=120)
            wait_until(lambda: parts_uploaded(moto) >= 1, timeout=60)  # b sent a part
            assert session_row(pg_store_at, session_id)["state"] == "open"  # a waited for b
            node_b.stop(signal.SIGKILL)  # b dies mid-session and stays down
            # b's presence runs out (12 s), then lost_after (30 s), then a completer round
            wait_until(lambda: session_row(pg_store_at, session_id)["state"] != "open", 120)
        row = session_row(pg_store_at, session_id)
        assert row["state"] == "interrupted" and row["node"] == "b"
        assert str(row["end_reason"]).startswith("node b lost")
        assert int(str(row["recording_size"])) % PART_SIZE == 0  # the parts b sent, no more
        assert parts_uploaded(moto) == 0  # completed: nothing left in progress
        out = tmp_path / "exported.cast"
        done = node_a.cli("recordings", "export", session_id, "--out", str(out))
        assert done.returncode == 0, done.stderr
        text = "".join(json.loads(line)[2] for line in out.read_text().splitlines()[1:])
        assert "EARLY-42" in text
        verified = node_a.cli("audit", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        kinds = event_kinds(pg_store_at)
        assert "recording.completed" in kinds and "cluster.node_lost" in kinds, kinds
    finally:
        node_a.stop()
        node_b.stop()


def test_a_serving_node_closes_a_lost_nodes_sessions_and_gives_its_lease_up_at_stop(
    tmp_path: Path, sshd: Sshd
) -> None:
    """In process, on SQLite, with the injectable clock: node a's server runs the completer;
    node b's session (b gone past lost_after) is closed as lost, its cancel key goes; a's
    lease is given up when it stops, so another node may take it at once."""
    a = Bastion(tmp_path / "a", '[cluster]\nnode = "a"\nstore_grace = "2s"\nlost_after = "30s"\n')
    a.add_user("alice")
    a.add_target("web-1", sshd)
    a.store.take_lease(node_lease("b"), "b", timedelta(seconds=2), quiet=True)
    a.store.open_session(session_id="s-on-b", user="alice", target="web-1", grant_id=None,
                         protocol="postgres", client_addr="10.0.0.7", node="b")  # fmt: skip
    assert a.store.claim_cancel_pid(77, "b", "10.0.0.2:6432", "s-on-b")
    a.start()
    try:
        assert a.store.session("s-on-b").state == "open"
        a.clock.advance(35)  # b silent past its presence (2 s) and lost_after (30 s)
        wait_until(lambda: a.store.cancel_owner(77) is None, 60)  # the round's last step
        assert a.store.session("s-on-b").state == "interrupted"
        assert str(a.store.session("s-on-b").end_reason).startswith("node b lost")
        held = a.store.lease(COMPLETER)
        assert held is not None and held.holder == "a" and held.expires_at > a.clock.now()
    finally:
        a.stop()
    store = Store.open(a.config.paths.store, a.clock)
    try:
        held = store.lease(COMPLETER)
        assert held is not None and held.expires_at <= a.clock.now()  # given up
        assert store.take_lease(COMPLETER, "c", timedelta(seconds=2), quiet=True) is not None
    finally:
        store.close()
