"""Tests for the key material `bastion init` creates: SSH host key, CA and TLS server cert."""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncssh
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from bastion.pki import TlsFiles, fingerprint_sha256, make_ssh_host_key, make_tls

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_tls(tmp_path / "tls")


# --- SSH host key ---------------------------------------------------------------------


def test_ssh_host_key_loads_and_fingerprint_matches(tmp_path: Path) -> None:
    path = tmp_path / "ssh_host_ed25519_key"
    fingerprint = make_ssh_host_key(path)
    assert fingerprint.startswith("SHA256:")
    key = asyncssh.read_private_key(path)
    assert key.get_algorithm() == "ssh-ed25519"
    assert key.get_fingerprint("sha256") == fingerprint
    public = asyncssh.read_public_key(tmp_path / "ssh_host_ed25519_key.pub")
    assert public.get_fingerprint("sha256") == fingerprint
    assert path.read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")


def test_ssh_host_key_modes(tmp_path: Path) -> None:
    path = tmp_path / "host_key"
    old = os.umask(0)
    try:
        make_ssh_host_key(path)
    finally:
        os.umask(old)
    assert _mode(path) == 0o600
    assert _mode(tmp_path / "host_key.pub") == 0o644


def test_ssh_host_key_pub_path_appends_suffix(tmp_path: Path) -> None:
    make_ssh_host_key(tmp_path / "host.key")
    assert (tmp_path / "host.key.pub").exists()
    assert not (tmp_path / "host.pub").exists()


def test_ssh_host_keys_differ(tmp_path: Path) -> None:
    assert make_ssh_host_key(tmp_path / "a") != make_ssh_host_key(tmp_path / "b")


def test_ssh_host_key_refuses_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "host_key"
    make_ssh_host_key(path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        make_ssh_host_key(path)
    assert path.read_bytes() == before


def test_ssh_host_key_refuses_when_only_pub_exists(tmp_path: Path) -> None:
    (tmp_path / "host_key.pub").write_text("something else\n")
    with pytest.raises(FileExistsError):
        make_ssh_host_key(tmp_path / "host_key")
    assert not (tmp_path / "host_key").exists()
    assert (tmp_path / "host_key.pub").read_text() == "something else\n"


# --- TLS files ------------------------------------------------------------------------


def test_make_tls_files_and_modes(tmp_path: Path) -> None:
    directory = tmp_path / "tls"
    old = os.umask(0)
    try:
        files = make_tls(directory)
    finally:
        os.umask(old)
    assert files == TlsFiles(
        directory / "bastion-ca.pem", directory / "server.pem", directory / "server.key"
    )
    assert _mode(directory) == 0o700
    assert _mode(files.server_key) == 0o600
    assert sorted(p.name for p in directory.iterdir()) == [
        "bastion-ca.pem",
        "server.key",
        "server.pem",
    ]


def test_server_cert_verifies_against_ca(tls: TlsFiles) -> None:
    ca, leaf = _cert(tls.ca_cert), _cert(tls.server_cert)
    leaf.verify_directly_issued_by(ca)
    ca.verify_directly_issued_by(ca)  # self-signed


def test_server_cert_not_issued_by_other_ca(tmp_path: Path) -> None:
    first = make_tls(tmp_path / "one")
    second = make_tls(tmp_path / "two")
    with pytest.raises((ValueError, InvalidSignature)):
        _cert(first.server_cert).verify_directly_issued_by(_cert(second.ca_cert))


def test_ca_extensions(tls: TlsFiles) -> None:
    ca = _cert(tls.ca_cert)
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert ca.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    basic = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature


def test_server_cert_extensions(tls: TlsFiles) -> None:
    leaf = _cert(tls.server_cert)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("::1") in san.get_values_for_type(x509.IPAddress)
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_validity_periods(tmp_path: Path) -> None:
    files = make_tls(tmp_path / "tls", now=NOW)
    ca, leaf = _cert(files.ca_cert), _cert(files.server_cert)
    assert ca.not_valid_before_utc <= NOW < ca.not_valid_after_utc
    assert ca.not_valid_after_utc - NOW == timedelta(days=3650)
    assert leaf.not_valid_after_utc - NOW == timedelta(days=825)
    assert leaf.not_valid_before_utc <= NOW


def test_server_key_is_unencrypted_pkcs8_matching_cert(tls: TlsFiles) -> None:
    data = tls.server_key.read_bytes()
    assert data.startswith(b"-----BEGIN PRIVATE KEY-----")
    key = serialization.load_pem_private_key(data, password=None)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    leaf_public = (
        _cert(tls.server_cert)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert public == leaf_public


def test_ca_private_key_is_not_kept(tls: TlsFiles) -> None:
    files = list(tls.ca_cert.parent.iterdir())
    assert all(b"PRIVATE KEY" not in p.read_bytes() for p in files if p != tls.server_key)


def test_custom_names(tmp_path: Path) -> None:
    files = make_tls(
        tmp_path / "tls", hostnames=["bastion.example.com", "bastion"], ip_addresses=["10.0.0.5"]
    )
    san = _cert(files.server_cert).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["bastion.example.com", "bastion"]
    assert san.value.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]


def test_no_names_or_bad_ip_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        make_tls(tmp_path / "a", hostnames=(), ip_addresses=())
    with pytest.raises(ValueError):
        make_tls(tmp_path / "b", ip_addresses=["not-an-ip"])
    assert not (tmp_path / "a").exists()
    assert not (tmp_path / "b").exists()


def test_naive_now_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="aware"):
        make_tls(tmp_path / "tls", now=datetime(2026, 1, 1))


@pytest.mark.parametrize("existing", ["bastion-ca.pem", "server.pem", "server.key"])
def test_make_tls_refuses_overwrite(tmp_path: Path, existing: str) -> None:
    directory = tmp_path / "tls"
    directory.mkdir()
    (directory / existing).write_text("keep me\n")
    with pytest.raises(FileExistsError):
        make_tls(directory)
    assert (directory / existing).read_text() == "keep me\n"
    assert [p.name for p in directory.iterdir()] == [existing]


def test_make_tls_in_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    directory = tmp_path / "etc"
    directory.mkdir(mode=0o750)
    os.chmod(directory, 0o750)  # noqa: S103 - a group-shared config dir
    make_tls(directory)
    assert _mode(directory) == 0o750


def test_fingerprint_sha256(tls: TlsFiles) -> None:
    pem = tls.server_cert.read_bytes()
    expected = _cert(tls.server_cert).fingerprint(hashes.SHA256()).hex(":").upper()
    assert fingerprint_sha256(pem) == expected
    assert len(fingerprint_sha256(pem)) == 32 * 3 - 1
    assert fingerprint_sha256(pem) != fingerprint_sha256(tls.ca_cert.read_bytes())


# --- a real TLS handshake -------------------------------------------------------------


def _serve_once(
    listener: socket.socket, context: ssl.SSLContext, errors: list[BaseException]
) -> None:
    conn, _ = listener.accept()
    with conn:
        try:
            with context.wrap_socket(conn, server_side=True) as tls_conn:
                tls_conn.sendall(b"hello from bastion")
        except (ssl.SSLError, OSError) as exc:
            errors.append(exc)


def _handshake(files: TlsFiles, server_hostname: str) -> bytes:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(files.server_cert, files.server_key)
    client_ctx = ssl.create_default_context(cafile=str(files.ca_cert))
    client_ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    assert client_ctx.check_hostname
    errors: list[BaseException] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        thread = threading.Thread(target=_serve_once, args=(listener, server_ctx, errors))
        thread.start()
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                client_ctx.wrap_socket(raw, server_hostname=server_hostname) as conn,
            ):
                return conn.recv(100)
        finally:
            thread.join(timeout=10)


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1"])
def test_real_tls_handshake(tls: TlsFiles, name: str) -> None:
    assert _handshake(tls, name) == b"hello from bastion"


def test_tls_handshake_fails_for_other_hostname(tls: TlsFiles) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(tls, "evil.example.com")


def test_tls_handshake_fails_with_other_ca(tmp_path: Path) -> None:
    first = make_tls(tmp_path / "one")
    second = make_tls(tmp_path / "two")
    mixed = TlsFiles(second.ca_cert, first.server_cert, first.server_key)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(mixed, "localhost")
