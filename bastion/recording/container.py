"""The encrypted recording container: header line, chunk sealing and opening (no file I/O).

A recording file starts with one JSON header line, then its sealed chunks in order, so a
crash leaves a readable prefix. Format 2 (written now) stores each chunk as a binary record:

    {"bastion_recording": 2, "session": "<id>", "key": "<base64 of the wrapped key>"}
    <4-byte big-endian length N><N bytes: nonce || AES-256-GCM ciphertext of chunk 0>
    <4-byte big-endian length N><N bytes: nonce || AES-256-GCM ciphertext of chunk 1>
    ...

Format 1 (still read) stored each chunk as one base64 line instead; its plaintexts,
concatenated, are an asciicast v2 file. Format 2's plaintexts are binary frames (see
bastion.recording.frames): base64 and JSON escaping cost more than the encryption.

The recording key is 32 random bytes, wrapped with SecretBox.seal(key, "recording:<id>").
Each chunk's associated data binds the session id, the chunk index and whether it is the
final chunk (written by close()), so chunks cannot be edited, reordered, dropped from the
middle or moved between recordings undetected; a recording without its final chunk shows.
Chunk 0 holds the recording's header, and every chunk holds whole lines (1) or frames (2).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import struct
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion.recording.model import RecordingError

FORMAT = 2  # written
FORMATS = (1, 2)  # read
RECORD_LENGTH = struct.Struct(">I")
MAX_RECORD = 64 << 20  # bytes of one sealed chunk record; larger lengths are damage
KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
_AAD_PREFIX = b"bastion-recording/1\x00"
SESSION_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def valid_session_id(session_id: str) -> bool:
    """True when session_id is safe as a file name: letters, digits, '.', '_', '-'."""
    return isinstance(session_id, str) and SESSION_ID_RE.fullmatch(session_id) is not None


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


def header_line(session_id: str, wrapped_key: bytes, version: int = FORMAT) -> bytes:
    """The container's first line (with its newline)."""
    doc = {
        "bastion_recording": version,
        "session": session_id,
        "key": base64.b64encode(wrapped_key).decode("ascii"),
    }
    return json.dumps(doc).encode("ascii") + b"\n"


def parse_header_line(line: bytes, where: str) -> tuple[str, bytes]:
    """Session id and wrapped key from the first line; RecordingError if it is not one."""
    _, session, wrapped = parse_header(line, where)
    return session, wrapped


def parse_header(line: bytes, where: str) -> tuple[int, str, bytes]:
    """Format version, session id and wrapped key from the first line."""
    bad = f"{where} has a bad header line (not a bastion recording, or damaged)"
    try:
        doc = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RecordingError(bad) from None
    if not isinstance(doc, dict):
        raise RecordingError(bad)
    version = doc.get("bastion_recording")
    if type(version) is not int or version not in FORMATS:
        raise RecordingError(f"{where} has a header of an unsupported format version")
    session, key = doc.get("session"), doc.get("key")
    if not isinstance(session, str) or not valid_session_id(session) or not isinstance(key, str):
        raise RecordingError(bad)
    try:
        wrapped = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raise RecordingError(bad) from None
    return version, session, wrapped


def seal_chunk(aead: AESGCM, session_id: str, index: int, plaintext: bytes, final: bool) -> bytes:
    """One chunk line (with its newline): base64 of a fresh nonce and the ciphertext."""
    nonce = secrets.token_bytes(NONCE_SIZE)
    sealed = aead.encrypt(nonce, plaintext, chunk_aad(session_id, index, final))
    return binascii.b2a_base64(nonce + sealed, newline=True)


def open_chunk(aead: AESGCM, session_id: str, index: int, line: bytes) -> tuple[bytes, bool] | None:
    """Plaintext and final flag of one format-1 chunk line, or None if it fails."""
    try:
        blob = base64.b64decode(line.rstrip(b"\n"), validate=True)
    except (binascii.Error, ValueError):
        return None
    return open_record(aead, session_id, index, blob)


def seal_record(
    aead: AESGCM, session_id: str, index: int, plaintext: bytes, final: bool
) -> tuple[bytes, bytes, bytes]:
    """One format-2 chunk record in three parts (written in turn): length, nonce, ciphertext."""
    nonce = secrets.token_bytes(NONCE_SIZE)
    sealed = aead.encrypt(nonce, plaintext, chunk_aad(session_id, index, final))
    return RECORD_LENGTH.pack(NONCE_SIZE + len(sealed)), nonce, sealed


_BLOCK = 16
OVERHEAD = _BLOCK + TAG_SIZE  # room a sealed chunk needs beyond its plaintext


def seal_parts(
    key: bytes, session_id: str, index: int, parts: Sequence[bytes], final: bool, *,
    into: bytearray | None = None,
) -> tuple[bytes, bytes, memoryview]:  # fmt: skip
    """seal_record of the parts joined, streamed: the same record, without joining them.

    The ciphertext and tag are written into `into` when it is big enough (plaintext size
    plus OVERHEAD), else into a new buffer; the returned view is valid while that buffer is
    not reused. A big chunk thus costs neither a joined copy of its plaintext nor a fresh
    ciphertext buffer, whose page faults and copies (made with the GIL held) stall the relay.
    """
    nonce = secrets.token_bytes(NONCE_SIZE)
    encryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(chunk_aad(session_id, index, final))
    size = sum(len(part) for part in parts)
    if into is None or len(into) < size + OVERHEAD:
        into = bytearray(size + OVERHEAD)
    view = memoryview(into)
    done = 0
    for part in parts:
        done += encryptor.update_into(part, view[done:])
    tail = encryptor.finalize() + encryptor.tag  # GCM is a stream mode: the tail is the tag
    view[done : done + len(tail)] = tail
    done += len(tail)
    return RECORD_LENGTH.pack(NONCE_SIZE + done), nonce, view[:done]


def open_record(
    aead: AESGCM, session_id: str, index: int, blob: bytes
) -> tuple[bytes, bool] | None:
    """Plaintext and final flag of one record's body (after its length), or None if forged."""
    if len(blob) < NONCE_SIZE + TAG_SIZE:
        return None
    nonce, sealed = blob[:NONCE_SIZE], blob[NONCE_SIZE:]
    for final in (False, True):
        try:
            return aead.decrypt(nonce, sealed, chunk_aad(session_id, index, final)), final
        except InvalidTag:
            continue
    return None
