"""`bastion init` makes the report signing key; `report key`, `report verify` and `audit verify`
with signed review packs, as real processes; an installation from before gains the key."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bastion.errors import Exit
from bastion.reports.model import ChainHead
from bastion.reports.pack import write_pack
from bastion.reports.signing import KEY_CREATED, key_id, load_private_key
from tests import test_cli
from tests.test_cli import Bastion, assert_error, assert_ok, assert_tampered, mode_of, tamper_tail

pristine = test_cli.pristine
bst = test_cli.bst

FILES = {"review.html": b"<html>week 47</html>\n", "sessions.csv": b"id,person\n"}


def signing_key(bst: Bastion) -> Ed25519PrivateKey:
    return load_private_key(bst.home / "report_signing.key")


def head(bst: Bastion) -> ChainHead:
    last = bst.events()[-1]
    return ChainHead(last["seq"], last["row_hash"])


def make_pack(bst: Bastion, start: ChainHead, end: ChainHead, week: str = "2026-W47") -> Path:
    where = bst.home / "reports" / week
    write_pack(where, FILES, week=week, chain_start=start, chain_end=end,
               counts={"sessions": 0}, recordings={}, key=signing_key(bst))  # fmt: skip
    return where


def test_init_makes_an_ed25519_key_beside_the_secrets_key(bst: Bastion) -> None:
    path = bst.home / "report_signing.key"
    assert mode_of(path) == 0o600 and mode_of(bst.home / "secrets.key") == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert isinstance(signing_key(bst), Ed25519PrivateKey)
    [made] = [e for e in bst.events() if e["kind"] == "bastion.initialised"]
    assert made["detail"]["report_key_id"] == key_id(signing_key(bst).public_key())


def test_init_output_names_the_key_and_never_shows_it(tmp_path: Path) -> None:
    result = assert_ok(test_cli.run_bastion("init", str(tmp_path / "b"), cwd=tmp_path))
    assert "report key" in result.stdout and "report_signing.key" in result.stdout
    private = (tmp_path / "b" / "report_signing.key").read_text().splitlines()[1]
    assert private not in result.stdout + result.stderr and "PRIVATE" not in result.stdout


def test_report_key_prints_the_public_pem_and_the_auditor_guide(
    bst: Bastion, tmp_path: Path
) -> None:
    result = assert_ok(bst.run("report", "key"))
    public = serialization.load_pem_public_key(result.stdout.encode())
    assert isinstance(public, Ed25519PublicKey)
    assert public.public_bytes_raw() == signing_key(bst).public_key().public_bytes_raw()
    assert "openssl pkeyutl -verify" in result.stderr and "sha256sum" in result.stderr
    assert key_id(public) in result.stderr
    private_body = (bst.home / "report_signing.key").read_text().splitlines()[1]
    assert private_body not in result.stdout + result.stderr and "PRIVATE" not in result.stdout
    out = bst.json("report", "key")
    assert out["key_id"] == key_id(public) and out["public_key_pem"] == result.stdout
    # what the auditor saves is a key openssl reads
    pem = tmp_path / "report-key.pem"
    pem.write_text(result.stdout)
    der = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(pem), "-outform", "DER"],
                         capture_output=True, check=True, timeout=30).stdout  # fmt: skip
    assert public.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo) == der  # fmt: skip


def test_an_installation_from_before_gains_the_key_with_an_audit_event(bst: Bastion) -> None:
    """An upgrade: the bastion was initialised before the key existed."""
    (bst.home / "report_signing.key").unlink()
    assert_error(bst.run("report", "verify", str(bst.home)), Exit.STORE, "report_signing.key",
                 "not found")  # fmt: skip
    assert_ok(bst.run("report", "key"))
    assert mode_of(bst.home / "report_signing.key") == 0o600
    [made] = [e for e in bst.events() if e["kind"] == KEY_CREATED]
    assert made["detail"]["key_id"] == key_id(signing_key(bst).public_key())
    assert made["severity"] == "notice"
    assert_ok(bst.run("report", "key"))
    assert [e["kind"] for e in bst.events()].count(KEY_CREATED) == 1  # only when made


def test_serve_gains_the_key_on_upgrade(bst: Bastion) -> None:
    (bst.home / "report_signing.key").unlink()
    test_cli.serve_once(bst)
    assert mode_of(bst.home / "report_signing.key") == 0o600
    assert KEY_CREATED in bst.kinds()


def test_a_key_others_can_read_is_refused(bst: Bastion) -> None:
    (bst.home / "report_signing.key").chmod(0o644)
    assert_error(bst.run("report", "key"), Exit.STORE, "accessible by other users", "chmod 600")


class TestReportVerify:
    @pytest.fixture
    def pack(self, bst: Bastion) -> Path:
        bst.add_user("alice", "--no-qr")
        start = head(bst)
        bst.add_user("bob", "--no-qr")
        return make_pack(bst, start, head(bst))

    def test_an_untouched_pack_is_intact(self, bst: Bastion, pack: Path) -> None:
        result = assert_ok(bst.run("report", "verify", str(pack)))
        assert result.stdout.startswith("review pack 2026-W47 intact:")
        assert "2 files match" in result.stdout and "the chain holds its heads" in result.stdout
        out = bst.json("report", "verify", str(pack))
        assert out["ok"] is True and out["store_checked"] is True and out["week"] == "2026-W47"

    def test_an_edited_file_is_named(self, bst: Bastion, pack: Path) -> None:
        (pack / "review.html").write_bytes(b"<html>week 46</html>\n")
        result = bst.run("report", "verify", str(pack))
        assert_tampered(result, "REVIEW PACK NOT INTACT", "review.html was changed")
        assert len(result.stdout.splitlines()) == 1
        out = json.loads(bst.run("report", "verify", str(pack), "--json").stdout)
        assert out["ok"] is False and "review.html" in out["problem"]

    def test_an_auditor_with_only_the_public_key(
        self, bst: Bastion, pack: Path, tmp_path: Path
    ) -> None:
        pem = tmp_path / "report-key.pem"
        pem.write_text(assert_ok(bst.run("report", "key")).stdout)
        elsewhere = tmp_path / "mailed-pack"
        shutil.copytree(pack, elsewhere)
        result = assert_ok(test_cli.run_bastion("report", "verify", str(elsewhere), "--key",
                                                str(pem), "--no-store", cwd=tmp_path))  # fmt: skip
        assert "intact" in result.stdout and "the store was not checked" in result.stdout
        other = tmp_path / "other.pem"
        stranger = Ed25519PrivateKey.generate().public_key()
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        other.write_bytes(stranger.public_bytes(serialization.Encoding.PEM, spki))
        result = test_cli.run_bastion("report", "verify", str(elsewhere), "--key", str(other),
                                      "--no-store", cwd=tmp_path)  # fmt: skip
        assert_tampered(result, "signed by another key")

    def test_a_store_whose_tail_was_cut_after_the_signed_head(
        self, bst: Bastion, pack: Path
    ) -> None:
        end = json.loads((pack / "manifest.json").read_bytes())["chain"]["end"]["seq"]
        bst.add_user("carol", "--no-qr")
        tamper_tail(bst.db, keep=end - 1)
        assert_tampered(bst.run("report", "verify", str(pack)),
                        f"the chain ends at event {end - 1}", f"end head is event {end}",
                        "deleted from the end")  # fmt: skip

    def test_a_directory_that_is_not_there(self, bst: Bastion) -> None:
        assert_error(bst.run("report", "verify", str(bst.home / "nope")), Exit.NOT_FOUND, "nope")


class TestAuditVerifyWithPacks:
    @pytest.fixture
    def packed(self, bst: Bastion) -> tuple[Bastion, int]:
        """A signed week whose end head is event `end`; more events after it."""
        bst.add_user("alice", "--no-qr")
        start = head(bst)
        bst.add_user("bob", "--no-qr")
        end = head(bst)
        make_pack(bst, start, end)
        bst.add_user("carol", "--no-qr")
        bst.add_user("dave", "--no-qr")
        return bst, end.seq

    def test_an_intact_chain_agrees_with_the_packs(self, packed: tuple[Bastion, int]) -> None:
        bst, _ = packed
        result = assert_ok(bst.run("audit", "verify"))
        assert "1 signed review pack(s) agree" in result.stdout
        assert bst.json("audit", "verify")["review_packs_checked"] == 1

    def test_a_tail_cut_before_the_signed_head_with_the_head_file_rewritten(
        self, packed: tuple[Bastion, int]
    ) -> None:
        """The head file beside the store is rewritten to the new last event: only the signed
        weekly head shows the deletion."""
        bst, end = packed
        tamper_tail(bst.db, keep=end - 1)
        message = assert_tampered(bst.run("audit", "verify"), "review pack 2026-W47",
                                  f"the chain ends at event {end - 1}",
                                  "deleted from the end")  # fmt: skip
        assert "intact" not in message

    def test_a_tail_cut_after_the_signed_head_is_not_blamed_on_the_pack(
        self, packed: tuple[Bastion, int]
    ) -> None:
        bst, end = packed
        tamper_tail(bst.db, keep=end)  # the head file alone cannot see this: no anchor
        assert "1 signed review pack(s) agree" in assert_ok(bst.run("audit", "verify")).stdout

    def test_a_forged_or_edited_pack_fails_audit_verify(self, packed: tuple[Bastion, int]) -> None:
        bst, _ = packed
        manifest = bst.home / "reports" / "2026-W47" / "manifest.json"
        manifest.write_bytes(manifest.read_bytes().replace(b'"seq": ', b'"seq": 1', 1))
        assert_tampered(bst.run("audit", "verify"), "review pack", "manifest.sig does not verify")

    def test_packs_without_the_key_are_not_a_pass(self, packed: tuple[Bastion, int]) -> None:
        bst, _ = packed
        (bst.home / "report_signing.key").unlink()
        assert_tampered(bst.run("audit", "verify"), "review packs", "cannot be checked")
