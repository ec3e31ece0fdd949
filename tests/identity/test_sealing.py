"""Tests for sealing secrets at rest: round trips, tampering, key files and the env var."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.errors import Exit, SealError
from bastion.identity.sealing import KEY_ENV, SecretBox

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))
OPEN_FAILED = "sealed secret could not be opened: wrong key or damaged data"


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(KEY_A)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _write_key(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_round_trip(box: SecretBox) -> None:
    blob = box.seal(b"JBSWY3DPEHPK3PXP", "totp:alice")
    assert box.open(blob, "totp:alice") == b"JBSWY3DPEHPK3PXP"


def test_round_trip_empty_plaintext(box: SecretBox) -> None:
    assert box.open(box.seal(b"", "target:web-1"), "target:web-1") == b""


def test_blob_format_and_fresh_nonce(box: SecretBox) -> None:
    first = box.seal(b"secret", "totp:alice")
    second = box.seal(b"secret", "totp:alice")
    assert first.startswith(b"BS1" + bytes.fromhex(box.key_id))
    assert len(first) == 3 + 8 + 12 + len(b"secret") + 16
    assert first != second  # a new random nonce each time


def test_blob_does_not_contain_plaintext(box: SecretBox) -> None:
    plaintext = b"correct horse battery staple"
    blob = box.seal(plaintext, "target:web-1")
    assert plaintext not in blob
    assert plaintext[:8] not in blob


def test_key_id_is_short_non_secret_fingerprint(box: SecretBox) -> None:
    expected = hashlib.sha256(b"bastion-key-id\x00" + KEY_A).hexdigest()[:16]
    assert box.key_id == expected
    assert SecretBox(KEY_B).key_id != box.key_id
    assert KEY_A.hex() not in repr(box)


def test_wrong_key_fails(box: SecretBox) -> None:
    blob = box.seal(b"secret", "totp:alice")
    with pytest.raises(SealError, match="wrong key or damaged data"):
        SecretBox(KEY_B).open(blob, "totp:alice")


def test_wrong_key_with_forged_key_id_fails(box: SecretBox) -> None:
    other = SecretBox(KEY_B)
    blob = box.seal(b"secret", "totp:alice")
    forged = b"BS1" + bytes.fromhex(other.key_id) + blob[11:]
    with pytest.raises(SealError):
        other.open(forged, "totp:alice")


def test_wrong_context_fails(box: SecretBox) -> None:
    blob = box.seal(b"secret", "totp:alice")
    with pytest.raises(SealError) as info:
        box.open(blob, "totp:bob")
    assert info.value.message == OPEN_FAILED
    assert info.value.exit_code == Exit.STORE


@pytest.mark.parametrize("cut", [0, 1, 3, 11, 23, 38, -1])
def test_truncated_fails(box: SecretBox, cut: int) -> None:
    blob = box.seal(b"secret", "totp:alice")
    with pytest.raises(SealError):
        box.open(blob[:cut], "totp:alice")


def test_every_flipped_bit_fails(box: SecretBox) -> None:
    blob = box.seal(b"secret", "totp:alice")
    for index in range(len(blob)):
        for bit in range(8):
            damaged = bytearray(blob)
            damaged[index] ^= 1 << bit
            with pytest.raises(SealError):
                box.open(bytes(damaged), "totp:alice")


def test_bad_magic_fails(box: SecretBox) -> None:
    blob = box.seal(b"secret", "totp:alice")
    with pytest.raises(SealError):
        box.open(b"BS2" + blob[3:], "totp:alice")


def test_open_rejects_wrong_types_with_seal_error(box: SecretBox) -> None:
    blob = box.seal(b"secret", "totp:alice")
    with pytest.raises(SealError):
        box.open(10**9, "totp:alice")  # type: ignore[arg-type]
    with pytest.raises(SealError):
        box.open(blob, "\udcff")  # not encodable as UTF-8
    with pytest.raises(SealError):
        box.open(blob, None)  # type: ignore[arg-type]


def test_seal_refuses_empty_context(box: SecretBox) -> None:
    with pytest.raises(ValueError, match="context"):
        box.seal(b"secret", "")


@settings(max_examples=300, deadline=None)
@given(blob=st.binary(max_size=200), context=st.text(max_size=20))
def test_open_arbitrary_bytes_raises_only_seal_error(blob: bytes, context: str) -> None:
    box = SecretBox(KEY_A)
    with pytest.raises(SealError):
        box.open(blob, context)


@settings(max_examples=100, deadline=None)
@given(body=st.binary(min_size=28, max_size=120))
def test_open_with_right_header_raises_only_seal_error(body: bytes) -> None:
    box = SecretBox(KEY_A)
    with pytest.raises(SealError):
        box.open(b"BS1" + bytes.fromhex(box.key_id) + body, "totp:alice")


@pytest.mark.parametrize("key", [b"", b"x" * 31, b"x" * 33, "x" * 32])
def test_key_must_be_32_bytes(key: bytes) -> None:
    with pytest.raises(SealError, match="32 bytes"):
        SecretBox(key)


def test_create_key_file_is_0600_and_loads(tmp_path: Path) -> None:
    path = tmp_path / "secrets.key"
    SecretBox.create_key_file(path)
    assert _mode(path) == 0o600
    text = path.read_text()
    assert text.endswith("\n")
    assert len(base64.b64decode(text.strip(), validate=True)) == 32
    box = SecretBox.load(path, environ={})
    assert box.open(box.seal(b"x", "c"), "c") == b"x"


def test_create_key_file_is_0600_despite_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        SecretBox.create_key_file(tmp_path / "secrets.key")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "secrets.key") == 0o600


def test_create_key_file_makes_different_keys(tmp_path: Path) -> None:
    SecretBox.create_key_file(tmp_path / "a.key")
    SecretBox.create_key_file(tmp_path / "b.key")
    assert (tmp_path / "a.key").read_text() != (tmp_path / "b.key").read_text()


def test_create_key_file_refuses_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "secrets.key"
    SecretBox.create_key_file(path)
    before = path.read_bytes()
    with pytest.raises(SealError, match="exists already"):
        SecretBox.create_key_file(path)
    assert path.read_bytes() == before


def test_create_key_file_refuses_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    (tmp_path / "secrets.key").symlink_to(target)
    with pytest.raises(SealError, match="exists already"):
        SecretBox.create_key_file(tmp_path / "secrets.key")
    assert not target.exists()


def test_create_key_file_needs_parent_dir(tmp_path: Path) -> None:
    with pytest.raises(SealError, match="does not exist"):
        SecretBox.create_key_file(tmp_path / "missing" / "secrets.key")


def test_load_missing_file_names_file_and_remedy(tmp_path: Path) -> None:
    path = tmp_path / "secrets.key"
    with pytest.raises(SealError) as info:
        SecretBox.load(path, environ={})
    message = info.value.message
    assert str(path) in message
    assert "bastion init" in message
    assert KEY_ENV in message
    assert "\n" not in message


def test_load_refuses_group_or_world_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "secrets.key"
    SecretBox.create_key_file(path)
    os.chmod(path, 0o644)
    with pytest.raises(SealError) as info:
        SecretBox.load(path, environ={})
    message = info.value.message
    assert "readable by other users (mode 0644)" in message
    assert f"chmod 600 {path}" in message
    assert path.read_text().strip() not in message


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o660])
def test_load_refuses_other_permission_bits(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "secrets.key"
    SecretBox.create_key_file(path)
    os.chmod(path, mode)
    with pytest.raises(SealError, match="by other users"):
        SecretBox.load(path, environ={})


def test_load_accepts_0400(tmp_path: Path) -> None:
    path = _write_key(tmp_path / "k", base64.b64encode(KEY_A).decode(), 0o400)
    assert SecretBox.load(path, environ={}).key_id == SecretBox(KEY_A).key_id


@pytest.mark.parametrize(
    "text",
    ["", "not base64!!", base64.b64encode(b"short").decode(), "\xff\xfe"],
)
def test_load_bad_file_contents(tmp_path: Path, text: str) -> None:
    path = _write_key(tmp_path / "secrets.key", text)
    with pytest.raises(SealError) as info:
        SecretBox.load(path, environ={})
    assert str(path) in info.value.message
    assert "\n" not in info.value.message


def test_load_refuses_directory(tmp_path: Path) -> None:
    with pytest.raises(SealError, match="secrets key file"):
        SecretBox.load(tmp_path, environ={})


def test_env_var_wins_over_file(tmp_path: Path) -> None:
    path = _write_key(tmp_path / "secrets.key", base64.b64encode(KEY_A).decode())
    environ = {KEY_ENV: base64.b64encode(KEY_B).decode()}
    assert SecretBox.load(path, environ=environ).key_id == SecretBox(KEY_B).key_id


def test_env_var_used_when_file_missing(tmp_path: Path) -> None:
    environ = {KEY_ENV: base64.b64encode(KEY_B).decode() + "\n"}
    box = SecretBox.load(tmp_path / "missing.key", environ=environ)
    assert box.key_id == SecretBox(KEY_B).key_id


def test_empty_env_var_falls_back_to_file(tmp_path: Path) -> None:
    path = _write_key(tmp_path / "secrets.key", base64.b64encode(KEY_A).decode() + "\n")
    assert SecretBox.load(path, environ={KEY_ENV: ""}).key_id == SecretBox(KEY_A).key_id


@pytest.mark.parametrize(
    "value",
    [
        "hunter2-not-base64!",
        base64.b64encode(b"sixteen byte key").decode(),
        base64.b64encode(b"k" * 48).decode(),
    ],
)
def test_bad_env_var_is_one_line_and_hides_value(tmp_path: Path, value: str) -> None:
    path = _write_key(tmp_path / "secrets.key", base64.b64encode(KEY_A).decode())
    with pytest.raises(SealError) as info:
        SecretBox.load(path, environ={KEY_ENV: value})
    message = info.value.message
    assert KEY_ENV in message
    assert value not in message
    assert "\n" not in message
    assert str(path) not in message  # the env var was used, not the file


def test_load_uses_process_environment_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, base64.b64encode(KEY_B).decode())
    assert SecretBox.load(tmp_path / "missing.key").key_id == SecretBox(KEY_B).key_id
