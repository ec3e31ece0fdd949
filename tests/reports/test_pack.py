"""Review packs: written, signed, checked; and every way an attacker with the files edits one.

Real keys, real files, a real store; the offline check runs openssl, jq, sha256sum and python
as the auditor would, in child processes.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bastion.audit import ChainKey, Event, Store
from bastion.audit.chain import GENESIS
from bastion.clock import FakeClock
from bastion.errors import Conflict, UsageError
from bastion.identity.sealing import SecretBox
from bastion.reports.model import ChainHead
from bastion.reports.pack import MANIFEST, SIGNATURE, manifest_sha256, verify_pack, write_pack
from bastion.reports.signing import key_id, public_pem

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
FILES = {
    "review.html": b"<html><body>week 47: 2 findings</body></html>\n",
    "review.json": b'{"week": "2026-W47"}\n',
    "sessions.csv": b"id,person\ns-1,alice\n",
}
SESSION = "s-1"
RECORDING = "ab" * 32
COUNTS = {"sessions": 1, "findings": 2}


class Chain:
    """A keyed store with some events; the second half happens 'after the week'."""

    def __init__(self, home: Path) -> None:
        secrets = home / "secrets.key"
        SecretBox.create_key_file(secrets)
        self.path = home / "bastion.db"
        self.store = Store.create(self.path, FakeClock(NOW), ChainKey.of(SecretBox.load(secrets)))
        self.add(3)
        self.start = self.head()
        self.store.append_events([Event("session.closed", "ssh", "alice", session_id=SESSION,
                                        detail={"recording_sha256": RECORDING,
                                                "recording_size": 10})])  # fmt: skip
        self.add(2)
        self.end = self.head()
        self.add(3)

    def add(self, count: int) -> None:
        self.store.append_events([Event("user.added", "cli:root", f"u{i}") for i in range(count)])

    def head(self) -> ChainHead:
        seq, mac = self.store.chain_head()
        return ChainHead(seq, mac)

    def cut_tail(self, keep: int) -> None:
        """The attacker: triggers dropped, events after `keep` deleted, head file rewritten."""
        self.store.close()
        conn = sqlite3.connect(self.path)
        conn.execute("DROP TRIGGER IF EXISTS audit_events_no_delete")
        conn.execute("DELETE FROM audit_events WHERE seq > ?", (keep,))
        seq, mac = conn.execute(
            "SELECT seq, row_hash FROM audit_events ORDER BY seq DESC"
        ).fetchone()
        conn.commit()
        conn.close()
        self.path.with_name("bastion.db.head").write_text(f"{seq:020d} {mac}\n", encoding="ascii")
        self.store = Store.open(self.path, FakeClock(NOW), self.store.chain_key)


@pytest.fixture
def chain(tmp_path: Path) -> Chain:
    home = tmp_path / "home"
    home.mkdir()
    return Chain(home)


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def make_pack(where: Path, key: Ed25519PrivateKey, chain: Chain) -> Path:
    write_pack(where, FILES, week="2026-W47", chain_start=chain.start, chain_end=chain.end,
               counts=COUNTS, recordings={SESSION: RECORDING}, key=key, now=NOW)  # fmt: skip
    return where


@pytest.fixture
def pack(tmp_path: Path, key: Ed25519PrivateKey, chain: Chain) -> Path:
    return make_pack(tmp_path / "2026-W47", key, chain)


def problem(pack: Path, key: Ed25519PrivateKey, chain: Chain | None = None) -> str:
    verdict = verify_pack(pack, key.public_key(), chain.store if chain else None)
    assert not verdict.ok
    assert verdict.problem is not None and "\n" not in verdict.problem
    return verdict.problem


def test_an_untouched_pack_is_intact_with_and_without_the_store(
    pack: Path, key: Ed25519PrivateKey, chain: Chain
) -> None:
    assert sorted(p.name for p in pack.iterdir()) == sorted([*FILES, MANIFEST, SIGNATURE])
    verdict = verify_pack(pack, key.public_key())
    assert verdict.ok and not verdict.store_checked
    verdict = verify_pack(pack, key.public_key(), chain.store, recount=lambda week: COUNTS)
    assert verdict.ok and verdict.store_checked and verdict.counts_checked
    manifest = verdict.manifest
    assert manifest is not None and manifest.week == "2026-W47"
    assert manifest.chain_end == chain.end and manifest.recordings == {SESSION: RECORDING}
    assert (
        manifest.key_id == key_id(key.public_key()) and manifest.made_at == "2026-11-23T08:00:00Z"
    )
    doc = json.loads((pack / MANIFEST).read_bytes())
    assert {f["name"]: f["size"] for f in doc["files"]} == {n: len(b) for n, b in FILES.items()}
    assert doc["chain"]["start"] == {"seq": chain.start.seq, "mac": chain.start.mac}
    assert len((pack / SIGNATURE).read_bytes()) == 64  # raw Ed25519, nothing around it


def test_the_stores_first_week_starts_before_any_event_and_still_packs(
    tmp_path: Path, key: Ed25519PrivateKey, chain: Chain
) -> None:
    """The week the bastion was installed in has no event before its start: head 0, whose MAC
    is the chain's start value (what the store says of an empty chain)."""
    empty = ChainHead(0, GENESIS)
    write_pack(tmp_path / "first", FILES, week="2026-W47", chain_start=empty,
               chain_end=chain.end, counts=COUNTS, recordings={SESSION: RECORDING}, key=key,
               now=NOW)  # fmt: skip
    verdict = verify_pack(tmp_path / "first", key.public_key(), chain.store)
    assert verdict.ok and verdict.manifest is not None and verdict.manifest.chain_start == empty
    with pytest.raises(ValueError, match="event 0, whose MAC can only be"):
        write_pack(tmp_path / "forged", FILES, week="2026-W47",
                   chain_start=ChainHead(0, "ab" * 32), chain_end=chain.end, counts=COUNTS,
                   recordings={SESSION: RECORDING}, key=key, now=NOW)  # fmt: skip


def test_an_edited_file_is_named(pack: Path, key: Ed25519PrivateKey) -> None:
    (pack / "sessions.csv").write_bytes(b"id,person\ns-1,carol\n")  # same size
    message = problem(pack, key)
    assert "sessions.csv was changed" in message and "SHA-256" in message
    (pack / "review.json").write_bytes(b"{}")
    assert "review.json was changed" in problem(pack, key)  # the first one, by name
    assert "holds 2 bytes" in problem(pack, key)


def test_a_deleted_file_and_a_link_in_its_place_are_named(
    pack: Path, key: Ed25519PrivateKey
) -> None:
    original = (pack / "review.json").read_bytes()
    (pack / "review.json").unlink()
    assert "review.json is missing" in problem(pack, key)
    copy = pack.parent / "elsewhere.json"
    copy.write_bytes(original)
    (pack / "review.json").symlink_to(copy)
    assert "review.json is not a regular file" in problem(pack, key)


def test_an_edited_manifest_is_refused(pack: Path, key: Ed25519PrivateKey) -> None:
    """The attacker edits a file and puts its new hash in the manifest: the signature fails."""
    (pack / "sessions.csv").write_bytes(b"id,person\n")
    doc = json.loads((pack / MANIFEST).read_bytes())
    for entry in doc["files"]:
        if entry["name"] == "sessions.csv":
            entry.update(size=10, sha256="0" * 64)
    (pack / MANIFEST).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    message = problem(pack, key)
    assert "manifest.sig does not verify manifest.json" in message and "edited" in message


def test_a_swapped_signature_is_refused(
    tmp_path: Path, pack: Path, key: Ed25519PrivateKey, chain: Chain
) -> None:
    """Another week's genuine signature (same key) does not verify this week's manifest."""
    other = tmp_path / "2026-W48"
    write_pack(other, FILES, week="2026-W48", chain_start=chain.start, chain_end=chain.end,
               counts=COUNTS, recordings={}, key=key)  # fmt: skip
    assert verify_pack(other, key.public_key()).ok
    (pack / SIGNATURE).write_bytes((other / SIGNATURE).read_bytes())
    assert "manifest.sig does not verify" in problem(pack, key)
    (pack / SIGNATURE).unlink()
    assert "has no manifest.sig" in problem(pack, key)


def test_an_added_file_is_named(pack: Path, key: Ed25519PrivateKey) -> None:
    (pack / "zz-extra.csv").write_bytes(b"planted\n")
    message = problem(pack, key)
    assert "zz-extra.csv is not in the manifest" in message and "added" in message
    (pack / "zz-extra.csv").unlink()
    (pack / "subdir").mkdir()
    assert "subdir is not in the manifest" in problem(pack, key)


@pytest.mark.parametrize(
    "name", ["../x", "a/b.csv", "/etc/passwd", ".hidden", "..", "manifest.json", "a\nb"]
)
def test_a_manifest_naming_a_path_is_refused_even_when_signed(
    tmp_path: Path, key: Ed25519PrivateKey, chain: Chain, name: str
) -> None:
    """write_pack refuses such a name; a manifest signed with the key (the worst case) naming
    one is refused before anything is opened by that name."""
    with pytest.raises(UsageError, match=r"plain file name|own manifest"):
        write_pack(tmp_path / "w", {name: b"x"}, week="2026-W47", chain_start=chain.start,
                   chain_end=chain.end, counts={}, recordings={}, key=key)  # fmt: skip
    pack = tmp_path / "pack" / "inner"
    make_pack(pack, key, chain)
    outside = tmp_path / "pack" / "x"
    outside.write_bytes(b"x")
    doc = json.loads((pack / MANIFEST).read_bytes())
    doc["files"].append(
        {
            "name": name,
            "size": 1,
            "sha256": "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881",
        }
    )
    body = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
    (pack / MANIFEST).write_bytes(body)
    (pack / SIGNATURE).write_bytes(key.sign(body))
    message = problem(pack, key)
    assert message.startswith(f"the manifest names {name!r}, ")
    assert "plain file name" in message or "own manifest" in message


def test_a_pack_signed_by_another_key_names_both_keys(
    pack: Path, key: Ed25519PrivateKey, chain: Chain
) -> None:
    mine = Ed25519PrivateKey.generate()
    message = problem(pack, mine)
    assert "signed by another key" in message
    assert key_id(key.public_key())[:16] in message and key_id(mine.public_key())[:16] in message
    # re-signed wholesale by the attacker's own key: still not this bastion's
    body = (pack / MANIFEST).read_bytes()
    (pack / SIGNATURE).write_bytes(Ed25519PrivateKey.generate().sign(body))
    assert "manifest.sig does not verify" in problem(pack, key)


def test_a_malformed_manifest_signed_by_the_key_is_refused(
    pack: Path, key: Ed25519PrivateKey
) -> None:
    for body in (b'{"format": 1}', b"[]", b'{"week": "a", "week": "b"}', b"\xff"):
        (pack / MANIFEST).write_bytes(body)
        (pack / SIGNATURE).write_bytes(key.sign(body))
        assert "signed but malformed" in problem(pack, key)


def test_a_tail_cut_after_the_signed_head_is_caught_with_the_head_file_rewritten(
    pack: Path, key: Ed25519PrivateKey, chain: Chain
) -> None:
    assert chain.store.verify_chain().ok
    chain.cut_tail(keep=chain.end.seq - 1)
    assert chain.store.verify_chain().ok  # the head file agrees: only the pack knows
    message = problem(pack, key, chain)
    assert f"the chain ends at event {chain.end.seq - 1}" in message
    assert f"the pack's end head is event {chain.end.seq}" in message
    assert "deleted from the end" in message
    assert verify_pack(pack, key.public_key()).ok  # the pack itself is untouched


def test_a_cut_after_the_end_head_still_matches(
    pack: Path, key: Ed25519PrivateKey, chain: Chain
) -> None:
    chain.cut_tail(keep=chain.end.seq)
    assert verify_pack(pack, key.public_key(), chain.store).ok


def test_counts_and_recordings_must_match_the_store(
    tmp_path: Path, key: Ed25519PrivateKey, chain: Chain
) -> None:
    pack = make_pack(tmp_path / "p", key, chain)
    verdict = verify_pack(
        pack, key.public_key(), chain.store, recount=lambda week: {**COUNTS, "findings": 3}
    )
    assert verdict.problem == "count 'findings': the pack says 2, the store now holds 3"
    forged = tmp_path / "forged"
    write_pack(forged, FILES, week="2026-W47", chain_start=chain.start, chain_end=chain.end,
               counts=COUNTS, recordings={SESSION: "cd" * 32}, key=key)  # fmt: skip
    assert "recording of session s-1: the chain's hash differs" in problem(forged, key, chain)
    unknown = tmp_path / "unknown"
    write_pack(unknown, FILES, week="2026-W47", chain_start=chain.start, chain_end=chain.end,
               counts=COUNTS, recordings={"s-9": RECORDING}, key=key)  # fmt: skip
    assert "session s-9: the chain holds no hash for it" in problem(unknown, key, chain)


def test_the_manifest_digest_is_what_a_sign_off_binds(pack: Path) -> None:
    assert manifest_sha256(pack) == hashlib.sha256((pack / MANIFEST).read_bytes()).hexdigest()


def test_write_pack_refuses_a_directory_with_files_in_it(
    pack: Path, key: Ed25519PrivateKey, chain: Chain
) -> None:
    with pytest.raises(Conflict, match="not empty"):
        make_pack(pack, key, chain)


# -- the auditor's way: no bastion, only openssl, jq, sha256sum and python ----------------------

PYTHON_CHECK = (
    "import hashlib,json,os,sys;m=json.load(open('manifest.json'));"
    "n={f['name']:f['sha256'] for f in m['files']};"
    "bad=[f for f in n if '/' in f or f.startswith('.') or"
    " hashlib.sha256(open(f,'rb').read()).hexdigest()!=n[f]];"
    "extra=sorted(set(os.listdir('.'))-set(n)-{'manifest.json','manifest.sig'});"
    "print('changed:',bad,'unlisted:',extra) if bad or extra else print('all files match');"
    "sys.exit(1 if bad or extra else 0)"
)
OPENSSL = (
    "openssl pkeyutl -verify -pubin -inkey {key} -rawin -in manifest.json -sigfile manifest.sig"
)
JQ = "jq -r '.files[] | \"\\(.sha256)  \\(.name)\"' manifest.json | sha256sum --strict -c -"


def sh(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/bin/sh", "-c", command], cwd=cwd, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip


def test_the_documented_offline_commands_check_a_pack(
    tmp_path: Path, pack: Path, key: Ed25519PrivateKey
) -> None:
    pem = tmp_path / "report-key.pem"
    pem.write_text(public_pem(key.public_key()))
    python = f"{shlex.quote(sys.executable)} -c {shlex.quote(PYTHON_CHECK)}"
    verify = OPENSSL.format(key=shlex.quote(str(pem)))
    result = sh(verify, pack)
    assert result.returncode == 0 and "Signature Verified Successfully" in result.stdout, result
    assert sh(JQ, pack).returncode == 0
    assert "all files match" in sh(python, pack).stdout
    der_id = sh(f"openssl pkey -pubin -in {shlex.quote(str(pem))} -outform DER | sha256sum", pack)
    assert der_id.stdout.split()[0] == key_id(key.public_key())

    (pack / "sessions.csv").write_bytes(b"id,person\n")
    assert sh(verify, pack).returncode == 0  # the manifest itself is still the signed one
    assert "sessions.csv: FAILED" in sh(JQ, pack).stdout
    result = sh(python, pack)
    assert result.returncode == 1 and "sessions.csv" in result.stdout
    (pack / "sessions.csv").write_bytes(FILES["sessions.csv"])
    (pack / "planted.csv").write_bytes(b"x")
    result = sh(python, pack)
    assert result.returncode == 1 and "planted.csv" in result.stdout
    (pack / "planted.csv").unlink()

    (pack / MANIFEST).write_bytes((pack / MANIFEST).read_bytes().replace(b"2026-W47", b"2026-W46"))
    result = sh(verify, pack)
    assert (
        result.returncode != 0 and "Signature Verification Failure" in result.stdout + result.stderr
    )
