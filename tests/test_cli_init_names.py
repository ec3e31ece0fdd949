"""`bastion init --tls-name`: the certificate every node shares covers the balancer's name."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from cryptography import x509

from bastion.errors import Exit
from tests.test_cli import assert_error, assert_ok, run_bastion


def test_the_certificate_covers_the_names_given(tmp_path: Path) -> None:
    assert_ok(run_bastion("init", str(tmp_path / "b"), "--tls-name", "Bastion.Example.COM",
                          "--tls-name", "10.1.2.3", cwd=tmp_path))  # fmt: skip
    cert = x509.load_pem_x509_certificate((tmp_path / "b/tls/server.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "bastion.example.com"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address(a) for a in ("127.0.0.1", "::1", "10.1.2.3")
    }


def test_a_name_that_is_neither_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    result = run_bastion("init", str(tmp_path / "b"), "--tls-name", "*.example.com", cwd=tmp_path)
    assert_error(result, Exit.USAGE, "--tls-name '*.example.com'")
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())
