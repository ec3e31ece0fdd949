"""The encrypted recording container: header line, chunk sealing and opening (no file I/O).

A recording file is line-oriented, so a crash leaves a readable prefix:

    {"bastion_recording": 1, "session": "<id>", "key": "<base64 of the wrapped key>"}
    <base64(nonce || AES-256-GCM ciphertext of chunk 0)>
    <base64(nonce || AES-256-GCM ciphertext of chunk 1)>
    ...

The recording key is 32 random bytes, wrapped with SecretBox.seal(key, "recording:<id>").
Each chunk's associated data binds the session id, the chunk index and whether it is the
final chunk (written by close()), so chunks cannot be edited, reordered, dropped from the
middle or moved between recordings undetected. The chunk plaintexts, concatenated, are an
asciicast v2 file; chunk 0 holds its header line, and every chunk holds whole lines.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion.recording.model import RecordingError

FORMAT = 1
KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
_AAD_PREFIX = b"bastion-recording/1\x00"
_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def valid_session_id(session_id: str) -> bool:
    """True when session_id is safe as a file name: letters, digits, '.', '_', '-'."""
    return isinstance(session_id, str) and _SESSION_ID.fullmatch(session_id) is not None


def key_context(session_id: str) -> str:
    """The SecretBox context that wraps a recording's key."""
    return f"recording:{session_id}"


def chunk_aad(session_id: str, index: int, final: bool) -> bytes:
    """Associated data of one chunk: session id, chunk index and the final flag."""
    return (
        _AAD_PREFIX
        + session_id.encode("utf-8")
        + b"\x00"
        + index.to_bytes(8, "big")
        + (b"\x01" if final else b"\x00")
    )


def header_line(session_id: str, wrapped_key: bytes) -> bytes:
    """The container's first line (with its newline)."""
    doc = {
        "bastion_recording": FORMAT,
        "session": session_id,
        "key": base64.b64encode(wrapped_key).decode("ascii"),
    }
    return json.dumps(doc).encode("ascii") + b"\n"


def parse_header_line(line: bytes, where: str) -> tuple[str, bytes]:
    """Session id and wrapped key from the first line; RecordingError if it is not one."""
    bad = f"{where} has a bad header line (not a bastion recording, or damaged)"
    try:
        doc = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RecordingError(bad) from None
    if not isinstance(doc, dict):
        raise RecordingError(bad)
    version = doc.get("bastion_recording")
    if type(version) is not int or version != FORMAT:
        raise RecordingError(f"{where} has a header of an unsupported format version")
    session, key = doc.get("session"), doc.get("key")
    if not isinstance(session, str) or not valid_session_id(session) or not isinstance(key, str):
        raise RecordingError(bad)
    try:
        wrapped = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raise RecordingError(bad) from None
    return session, wrapped


def seal_chunk(aead: AESGCM, session_id: str, index: int, plaintext: bytes, final: bool) -> bytes:
    """One chunk line (with its newline): base64 of a fresh nonce and the ciphertext."""
    nonce = secrets.token_bytes(NONCE_SIZE)
    sealed = aead.encrypt(nonce, plaintext, chunk_aad(session_id, index, final))
    return binascii.b2a_base64(nonce + sealed, newline=True)


def open_chunk(aead: AESGCM, session_id: str, index: int, line: bytes) -> tuple[bytes, bool] | None:
    """Plaintext and final flag of one chunk line, or None if it fails authentication."""
    try:
        blob = base64.b64decode(line.rstrip(b"\n"), validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(blob) < NONCE_SIZE + TAG_SIZE:
        return None
    nonce, sealed = blob[:NONCE_SIZE], blob[NONCE_SIZE:]
    for final in (False, True):
        try:
            return aead.decrypt(nonce, sealed, chunk_aad(session_id, index, final)), final
        except InvalidTag:
            continue
    return None
