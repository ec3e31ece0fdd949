"""The Ed25519 key that signs weekly review packs: made, loaded, and its public half shown.

The private key is a PEM (PKCS#8) file beside the secrets key, mode 0600, made by `bastion
init`; an installation from before it gains one the first time it is needed, with an audit
event saying so. Only the public half (PEM, and its key id: the SHA-256 of its DER form,
which `openssl pkey -pubin -outform DER | sha256sum` also prints) is ever shown.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bastion.audit import Event, Store
from bastion.errors import BastionError, Exit
from bastion.privatefiles import NotPrivate, WriteFailed, read_private, write_new

KEY_CREATED = "report.signing_key_created"
_MAX_KEY_FILE = 8192


class ReportKeyError(BastionError):
    """The report signing key cannot be made, read or used."""

    exit_code = Exit.STORE


def create_key_file(path: Path) -> Ed25519PrivateKey:
    """A new key written to path (PEM, mode 0600); never overwrites, never follows a link."""
    name = f"report signing key {path}"
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        write_new(path, pem, 0o600)
    except FileExistsError:
        raise ReportKeyError(f"{name} exists already; refusing to overwrite it") from None
    except WriteFailed as exc:
        raise ReportKeyError(f"{name} could not be written: {exc.strerror}") from None
    except OSError as exc:
        raise ReportKeyError(f"{name} could not be created: {exc.strerror}") from None
    return key


def _read_private(path: Path) -> bytes:
    """The key file's bytes; refuses a file other users can reach, or one that is not a file."""
    name = f"report signing key {path}"
    try:
        return read_private(path, _MAX_KEY_FILE, follow=False)
    except FileNotFoundError:
        raise ReportKeyError(f"{name} not found; run `bastion report key` to make one") from None
    except NotPrivate as exc:
        if exc.mode is None:
            raise ReportKeyError(f"{name} is not a regular file") from None
        raise ReportKeyError(f"{name} is accessible by other users (mode {exc.mode:04o});"
                             f" run chmod 600 {path}") from None  # fmt: skip
    except OSError as exc:
        raise ReportKeyError(f"{name} could not be read: {exc.strerror}") from None


def load_private_key(path: Path) -> Ed25519PrivateKey:
    data = _read_private(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ReportKeyError(f"report signing key {path} is not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ReportKeyError(f"report signing key {path} is not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An auditor's copy of the public key (PEM, as `bastion report key` prints it)."""
    try:
        data = path.read_bytes()[:_MAX_KEY_FILE]
    except OSError as exc:
        raise ReportKeyError(f"public key {path} could not be read: {exc.strerror}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ReportKeyError(f"{path} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ReportKeyError(f"{path} is not an Ed25519 public key")
    return key


def public_pem(key: Ed25519PublicKey) -> str:
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode("ascii")


def key_id(key: Ed25519PublicKey) -> str:
    """The SHA-256 (hex) of the public key's DER form: the same with openssl and sha256sum."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def ensure_key(path: Path, store: Store, actor: str) -> Ed25519PrivateKey:
    """The signing key; an installation without one (made before it existed) gains one now,
    and the chain records that, with the new key's id."""
    if os.path.lexists(path):
        return load_private_key(path)
    try:
        key = create_key_file(path)
    except ReportKeyError:
        if os.path.lexists(path):  # another process made it first
            return load_private_key(path)
        raise
    event = Event(
        KEY_CREATED,
        actor,
        str(path),
        "notice",
        detail={"key_id": key_id(key.public_key()), "reason": "none yet (upgrade)"},
    )
    try:
        store.append_events([event])
    except BaseException:
        path.unlink(missing_ok=True)  # no key the chain does not know about
        raise
    return key
