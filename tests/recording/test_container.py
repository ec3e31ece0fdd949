"""Sealing chunk records: the streamed sealer writes the same records as the one-shot one."""

from __future__ import annotations

import os
import threading

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion.recording import container


@pytest.mark.parametrize("final", [False, True])
def test_a_record_sealed_from_parts_opens_as_the_joined_plaintext(final: bool) -> None:
    key = os.urandom(container.KEY_SIZE)
    parts = [os.urandom(size) for size in (13, 32768, 13, 1, 0, 700_001)]
    length, nonce, sealed = container.seal_parts(key, "s-1", 5, parts, final)
    body = nonce + bytes(sealed)
    assert container.RECORD_LENGTH.unpack(length) == (len(body),)
    assert container.open_record(AESGCM(key), "s-1", 5, body) == (b"".join(parts), final)
    # bound to its session, index and final flag like any record
    assert container.open_record(AESGCM(key), "s-1", 6, body) is None
    assert container.open_record(AESGCM(key), "s-2", 5, body) is None


def test_each_thread_seals_into_its_own_buffer() -> None:
    """Two threads sealing at once never see each other's ciphertext."""
    key = os.urandom(container.KEY_SIZE)
    aead = AESGCM(key)
    failures: list[str] = []

    def seal_many(fill: int) -> None:
        for index in range(50):
            plaintext = bytes([fill]) * (1000 + 997 * index)
            _, nonce, sealed = container.seal_parts(key, "s", index, [plaintext], False)
            body = nonce + bytes(sealed)
            if container.open_record(aead, "s", index, body) != (plaintext, False):
                failures.append(f"thread {fill} chunk {index}")

    threads = [threading.Thread(target=seal_many, args=(fill,)) for fill in (1, 2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_a_record_is_sealed_into_the_buffer_given_when_it_fits() -> None:
    key = os.urandom(container.KEY_SIZE)
    plaintext = os.urandom(5000)
    roomy = bytearray(len(plaintext) + container.OVERHEAD)
    _, nonce, sealed = container.seal_parts(key, "s", 1, [plaintext], False, into=roomy)
    assert sealed.obj is roomy
    assert container.open_record(AESGCM(key), "s", 1, nonce + bytes(sealed)) == (plaintext, False)
    small = bytearray(len(plaintext))  # no room for the tag: a new buffer, the small one untouched
    _, nonce, sealed = container.seal_parts(key, "s", 2, [plaintext], True, into=small)
    assert sealed.obj is not small and small == bytearray(len(plaintext))
    assert container.open_record(AESGCM(key), "s", 2, nonce + bytes(sealed)) == (plaintext, True)
