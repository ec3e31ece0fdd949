"""Seal secrets at rest (AES-256-GCM) with a key kept outside the database."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bastion.errors import SealError
from bastion.privatefiles import NotPrivate, WriteFailed, read_private, write_new

KEY_ENV = "BASTION_SECRETS_KEY"  # base64 (standard alphabet) of 32 random bytes

KEY_SIZE = 32
_MAGIC = b"BS1"
_KEY_ID_SIZE = 8  # raw bytes of the key id stored in each blob (16 hex chars)
_NONCE_SIZE = 12
_TAG_SIZE = 16
_HEADER_SIZE = len(_MAGIC) + _KEY_ID_SIZE + _NONCE_SIZE
_MAX_KEY_FILE = 4096  # a key file is ~45 bytes; read no more than this
_OPEN_FAILED = "sealed secret could not be opened: wrong key or damaged data"


def _key_id_raw(key: bytes) -> bytes:
    return hashlib.sha256(b"bastion-key-id\x00" + key).digest()[:_KEY_ID_SIZE]


def _decode_key(text: str, source: str) -> bytes:
    """Decode a base64 key; the message names the source, never the value."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SealError(f"{source} is not valid base64") from None
    if len(key) != KEY_SIZE:
        raise SealError(f"{source} must hold base64 of {KEY_SIZE} bytes, not {len(key)}")
    return key


def _read_key_file(key_path: Path) -> str:
    """Read the key file, refusing one that other users can read or write."""
    name = f"secrets key file {key_path}"
    try:
        data = read_private(key_path, _MAX_KEY_FILE)
    except FileNotFoundError:
        raise SealError(f"{name} not found; run `bastion init` or set {KEY_ENV}") from None
    except NotPrivate as exc:
        if exc.mode is None:
            raise SealError(f"{name} is not a regular file") from None
        what = "readable" if exc.mode & 0o044 else "accessible"
        raise SealError(f"{name} is {what} by other users (mode {exc.mode:04o});"
                        f" run chmod 600 {key_path}") from None  # fmt: skip
    except OSError as exc:
        raise SealError(f"{name} could not be read: {exc.strerror}") from None
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise SealError(f"{name} is not valid base64") from None


class SecretBox:
    """Seals and opens small secrets, each bound to the context (row) it belongs to."""

    __slots__ = ("_aead", "_derived", "_key", "_key_id_raw")

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes | bytearray) or len(key) != KEY_SIZE:
            raise SealError(f"secrets key must be exactly {KEY_SIZE} bytes")
        self._aead = AESGCM(bytes(key))
        self._key = bytes(key)
        self._key_id_raw = _key_id_raw(bytes(key))
        self._derived = hmac.new(bytes(key), b"bastion:derive", hashlib.sha256).digest()

    def __repr__(self) -> str:
        return f"SecretBox(key_id={self.key_id!r})"

    @classmethod
    def load(cls, key_path: Path, environ: Mapping[str, str] | None = None) -> SecretBox:
        """Load the key from $BASTION_SECRETS_KEY if set and non-empty, else from key_path."""
        env = os.environ if environ is None else environ
        value = env.get(KEY_ENV, "")
        if value:
            return cls(_decode_key(value, f"environment variable {KEY_ENV}"))
        text = _read_key_file(key_path)
        return cls(_decode_key(text, f"secrets key file {key_path}"))

    @staticmethod
    def create_key_file(key_path: Path) -> None:
        """Write a new random key (base64 + newline) to key_path, mode 0600; never overwrite."""
        name = f"secrets key file {key_path}"
        data = base64.b64encode(secrets.token_bytes(KEY_SIZE)) + b"\n"
        try:
            write_new(key_path, data, 0o600)
        except FileExistsError:
            raise SealError(f"{name} exists already; refusing to overwrite it") from None
        except WriteFailed as exc:
            raise SealError(f"{name} could not be written: {exc.strerror}") from None
        except FileNotFoundError:
            raise SealError(f"{name}: directory {key_path.parent} does not exist") from None
        except OSError as exc:
            raise SealError(f"{name} could not be created: {exc.strerror}") from None

    @property
    def key_id(self) -> str:
        """A short, non-secret fingerprint of the key (16 hex characters)."""
        return self._key_id_raw.hex()

    def derive(self, purpose: str) -> bytes:
        """A key for one purpose (e.g. "masking:hash"), derived from the secrets key: it stays
        outside the database too, and knowing it reveals nothing about the secrets key."""
        return hmac.new(self._derived, purpose.encode(), hashlib.sha256).digest()

    def hkdf(self, purpose: str) -> bytes:
        """A 32-byte key bound to one purpose (HKDF-SHA-256, the purpose as its info): it is
        never stored, and neither it nor any other purpose's key reveals the secrets key."""
        kdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode())
        return kdf.derive(self._key)

    def seal(self, plaintext: bytes, context: str) -> bytes:
        """Encrypt plaintext bound to context (e.g. "totp:alice") into a self-describing blob."""
        if not context:
            raise ValueError("seal needs a non-empty context")
        nonce = secrets.token_bytes(_NONCE_SIZE)
        sealed = self._aead.encrypt(nonce, bytes(plaintext), context.encode("utf-8"))
        return _MAGIC + self._key_id_raw + nonce + sealed

    def open(self, blob: bytes, context: str) -> bytes:
        """Decrypt a blob sealed for this context; any failure raises SealError only."""
        if not isinstance(blob, bytes | bytearray | memoryview) or not isinstance(context, str):
            raise SealError(_OPEN_FAILED)
        try:
            data = bytes(blob)
            aad = context.encode("utf-8")
        except (TypeError, ValueError):
            raise SealError(_OPEN_FAILED) from None
        if len(data) < _HEADER_SIZE + _TAG_SIZE or not data.startswith(_MAGIC):
            raise SealError(_OPEN_FAILED)
        key_id = data[len(_MAGIC) : len(_MAGIC) + _KEY_ID_SIZE]
        if not hmac.compare_digest(key_id, self._key_id_raw):
            raise SealError(_OPEN_FAILED)
        nonce = data[len(_MAGIC) + _KEY_ID_SIZE : _HEADER_SIZE]
        try:
            return self._aead.decrypt(nonce, data[_HEADER_SIZE:], aad)
        except (InvalidTag, ValueError, TypeError, OverflowError):
            raise SealError(_OPEN_FAILED) from None
