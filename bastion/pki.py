"""Key material `bastion init` creates: the SSH host key and a private CA with a TLS server cert."""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncssh
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bastion.privatefiles import write_new

CA_FILE = "bastion-ca.pem"
SERVER_CERT_FILE = "server.pem"
SERVER_KEY_FILE = "server.key"
CA_VALIDITY = timedelta(days=3650)
SERVER_VALIDITY = timedelta(days=825)  # the longest lifetime clients (Apple) accept
_BACKDATE = timedelta(minutes=5)  # tolerate small clock skew between hosts


def _refuse_existing(paths: Sequence[Path]) -> None:
    for path in paths:
        if os.path.lexists(path):
            raise FileExistsError(f"{path} exists already; refusing to overwrite it")


def _make_private_dir(directory: Path) -> None:
    """Create directory with mode 0700; an existing directory is left as it is."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        if not directory.is_dir():
            raise
        return
    os.chmod(directory, 0o700)  # exact mode whatever the umask


def _write_all_new(files: Sequence[tuple[Path, bytes, int]]) -> None:
    """Write every file or none: on failure, remove the ones this call created."""
    _refuse_existing([path for path, _, _ in files])
    done: list[Path] = []
    try:
        for path, data, mode in files:
            write_new(path, data, mode)
            done.append(path)
    except BaseException:
        for path in done:
            path.unlink(missing_ok=True)
        raise


def make_ssh_host_key(path: Path) -> str:
    """Create an ed25519 host key at path (0600) and path + ".pub"; return "SHA256:..."."""
    pub_path = path.with_name(path.name + ".pub")
    _refuse_existing([path, pub_path])
    key = asyncssh.generate_private_key("ssh-ed25519", comment="bastion host key")
    _write_all_new(
        [
            (path, key.export_private_key("openssh"), 0o600),
            (pub_path, key.export_public_key("openssh"), 0o644),
        ]
    )
    fingerprint: str = key.get_fingerprint("sha256")
    return fingerprint


@dataclass(frozen=True)
class TlsFiles:
    """Where make_tls wrote the CA certificate, the server certificate and its key."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bastion"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _make_ca(now: datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    # A distinct name per CA, so re-running init never yields two CAs that look alike.
    name = _name(f"bastion local CA {secrets.token_hex(4)}")
    usage = x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _san(hostnames: Sequence[str], ip_addresses: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = [x509.DNSName(host) for host in hostnames]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    if not names:
        raise ValueError("make_tls needs at least one hostname or IP address")
    return x509.SubjectAlternativeName(names)


def _make_server(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    san: x509.SubjectAlternativeName,
    common_name: str,
    now: datetime,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + SERVER_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(san, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def make_tls(
    directory: Path,
    hostnames: Sequence[str] = ("localhost",),
    ip_addresses: Sequence[str] = ("127.0.0.1", "::1"),
    now: datetime | None = None,
) -> TlsFiles:
    """Create a private CA and a server certificate it signs, in directory (made 0700).

    Writes bastion-ca.pem (EC P-256 CA, 10 years), server.pem (825 days, SANs from
    hostnames and ip_addresses, serverAuth) and server.key (0600, unencrypted PKCS8).
    The CA private key is discarded once the server certificate is signed, so nothing
    can ever issue another certificate under this CA; running it again (in a new
    directory) makes a new CA that clients must be given afresh. Never overwrites a
    file: FileExistsError if any of the three exists.
    """
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        raise ValueError("make_tls needs an aware datetime for now")
    san = _san(hostnames, ip_addresses)
    files = TlsFiles(directory / CA_FILE, directory / SERVER_CERT_FILE, directory / SERVER_KEY_FILE)
    _refuse_existing([files.ca_cert, files.server_cert, files.server_key])
    common_name = next((h for h in hostnames if len(h) <= 64), "bastion server")
    ca_key, ca_cert = _make_ca(now)
    key, cert = _make_server(ca_key, ca_cert, san, common_name, now)
    del ca_key  # deliberately not kept: see the docstring
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _make_private_dir(directory)
    _write_all_new(
        [
            (files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644),
            (files.server_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644),
            (files.server_key, key_pem, 0o600),
        ]
    )
    return files


def fingerprint_sha256(cert_pem: bytes) -> str:
    """SHA-256 fingerprint of a PEM certificate as colon-separated upper-case hex, like openssl."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()
