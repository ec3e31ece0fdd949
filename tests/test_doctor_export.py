"""`bastion doctor` on the [export] sinks: a real TLS syslog receiver proves itself; a
closed port, a receiver signed by another CA, a file sink's symlink or missing folder and an
unreachable webhook each FAIL with what to fix; a webhook's path and token never print."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.pki import make_tls
from tests import test_cli
from tests.export.receivers import SyslogReceiver, tls_receiver
from tests.realssh import free_port
from tests.test_cli import Bastion
from tests.test_doctor import doctor, lines_of

bst = test_cli.bst
pristine = test_cli.pristine


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[SyslogReceiver]:
    with tls_receiver(tmp_path / "siem-tls") as server:
        yield server


def with_sinks(b: Bastion, *tables: str) -> None:
    text = b.config.read_text(encoding="utf-8")
    b.config.write_text(text + "\n" + "\n".join(tables), encoding="utf-8")


def syslog_table(name: str, port: int, ca: Path) -> str:
    return (f'[export.{name}]\nkind = "syslog"\naddress = "127.0.0.1:{port}"\n'
            f'tls_ca = "{ca}"\nserver_name = "localhost"\n')  # fmt: skip


def closed_port() -> int:
    """A loopback port nothing listens on."""
    return free_port()


def test_no_sink_is_one_ok_line(bst: Bastion) -> None:
    status, text = lines_of(doctor(bst))["export sinks"]
    assert status == "ok" and "none configured" in text


def test_a_real_tls_receiver_is_ok_and_gets_nothing(bst: Bastion, receiver: SyslogReceiver) -> None:
    with_sinks(bst, syslog_table("siem", receiver.port, receiver.cert.parent / "bastion-ca.pem"))
    status, text = lines_of(doctor(bst))["export sink siem (syslog)"]
    assert status == "ok", text
    assert receiver.seqs() == [] and bytes(receiver.raw) == b""  # a probe sends nothing


def test_a_closed_port_and_another_ca_fail_with_the_fix(
    bst: Bastion, receiver: SyslogReceiver, tmp_path: Path
) -> None:
    other = make_tls(tmp_path / "other-tls").ca_cert
    with_sinks(bst, syslog_table("down", closed_port(), receiver.cert.parent / "bastion-ca.pem"),
               syslog_table("forged", receiver.port, other))  # fmt: skip
    result = doctor(bst)
    found = lines_of(result)
    status, text = found["export sink down (syslog)"]
    assert status == "FAIL" and "cannot reach 127.0.0.1:" in text and "fix: " in text
    status, text = found["export sink forged (syslog)"]
    assert status == "FAIL" and "not trusted" in text
    assert result.returncode != 0


def test_file_sinks_a_symlink_and_a_missing_folder_fail(bst: Bastion, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.jsonl"
    elsewhere.write_text("", encoding="utf-8")
    link = tmp_path / "audit.jsonl"
    link.symlink_to(elsewhere)
    gone = tmp_path / "no-such-folder" / "audit.jsonl"
    good = tmp_path / "feed" / "audit.jsonl"
    good.parent.mkdir()
    with_sinks(bst, f'[export.linked]\nkind = "file"\npath = "{link}"\n',
               f'[export.nowhere]\nkind = "file"\npath = "{gone}"\n',
               f'[export.good]\nkind = "file"\npath = "{good}"\n')  # fmt: skip
    found = lines_of(doctor(bst))
    assert found["export sink linked (file)"][0] == "FAIL"
    assert "is a symlink to" in found["export sink linked (file)"][1]
    assert found["export sink nowhere (file)"][0] == "FAIL"
    assert found["export sink good (file)"][0] == "ok"
    assert not good.exists()  # doctor only reads


def test_a_file_sink_planted_by_another_user_fails_as_the_sink_would_refuse_it(
    bst: Bastion, tmp_path: Path
) -> None:
    # The sink refuses a file another user owns (whoever owns it could read, edit or cut
    # what is shipped); doctor said ok to it because the file could be written.
    planted = tmp_path / "feed" / "audit.jsonl"
    planted.parent.mkdir()
    planted.write_text("", encoding="utf-8")
    planted.chmod(0o666)
    os.chown(planted, 65534, 65534)
    with_sinks(bst, f'[export.planted]\nkind = "file"\npath = "{planted}"\n')
    status, text = lines_of(doctor(bst))["export sink planted (file)"]
    assert status == "FAIL", text
    assert f"owned by uid 65534, not the service's user (uid {os.getuid()})" in text
    assert f"fix: remove {planted}" in text


def test_an_unreachable_webhook_fails_and_never_shows_its_token(bst: Bastion) -> None:
    token = "hook-token-5b7c1e0d9a"
    url = f"http://127.0.0.1:{closed_port()}/ingest/{token}?key={token}"
    with_sinks(bst, f'[export.hook]\nkind = "webhook"\nurl = "{url}"\n')
    result = doctor(bst)
    status, text = lines_of(result)["export sink hook (webhook to 127.0.0.1)"]
    assert status == "FAIL" and "cannot be reached" in text
    assert token not in result.stdout + result.stderr
