"""`bastion doctor` on real broken hosts: modes, symlinks, missing keys, closed ports, a real
sshd and PostgreSQL, a full disk by threshold, an expired certificate, an unmigrated store;
it says what to fix in one line, exits non-zero on a failure, changes nothing, leaks nothing."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import sqlite3
import stat
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from cryptography import x509

from bastion.audit.base import migrations
from bastion.cli import build_parser
from bastion.clock import FakeClock
from bastion.commands.app import App
from bastion.commands.doctor_host import kernel_sync
from bastion.errors import Exit
from bastion.pki import make_tls
from tests import test_cli
from tests.realpg import PgDatabase
from tests.realssh import Sshd, free_port
from tests.test_cli import Bastion, Result, assert_error, assert_ok

bst = test_cli.bst
pristine = test_cli.pristine

PG_PASSWORD = "doctor-pg-password-5d1e77"


def json_text(data: Any) -> str:
    return json.dumps(data)


def doctor(b: Bastion, *extra: str) -> Result:
    return b.run("doctor", *extra)


def lines_of(result: Result) -> dict[str, tuple[str, str]]:
    """check name -> (status, text), from doctor's printed lines (the fix lines folded in)."""
    found: dict[str, tuple[str, str]] = {}
    last = ""
    for line in result.stdout.splitlines():
        if line.startswith("      fix: "):
            status, text = found[last]
            found[last] = (status, f"{text}\n{line.strip()}")
            continue
        status, _, rest = line.partition("  ")
        check, sep, text = rest.strip().partition(": ")
        if sep:
            found[check] = (status.strip(), text)
            last = check
    return found


def with_anchor_file(b: Bastion) -> None:
    """An anchor sink on a file of its own, so a healthy host has no warning for it."""
    sink = b.home / "anchors"
    sink.mkdir(mode=0o700)
    text = b.config.read_text(encoding="utf-8")
    b.config.write_text(
        text.replace("\nanchors = []\n", f'\nanchors = ["file:{sink / "anchors.log"}"]\n'),
        encoding="utf-8",
    )


def snapshot_with_modes(directory: Path) -> dict[str, tuple[int, bytes | str]]:
    """Every entry under directory: its lstat mode and its bytes (a link: where it points).
    SQLite's -wal and -shm files are left out: a read-only reader of a WAL store makes them
    (empty) when they are missing, as every CLI command's reading does; the store is in."""
    found: dict[str, tuple[int, bytes | str]] = {}
    for path in sorted(directory.rglob("*")):
        if path.name.endswith(("-wal", "-shm")):
            continue
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            found[str(path)] = (info.st_mode, os.readlink(path))
        elif stat.S_ISREG(info.st_mode):
            found[str(path)] = (info.st_mode, path.read_bytes())
        else:
            found[str(path)] = (info.st_mode, "")
    return found


def ssh_key_file(tmp_path: Path) -> Path:
    key = asyncssh.generate_private_key("ssh-ed25519")
    path = tmp_path / "target_key"
    path.write_bytes(key.export_private_key("openssh"))
    path.chmod(0o600)
    return path


def add_targets(b: Bastion, tmp_path: Path, sshd: Sshd, pg: PgDatabase, closed: int) -> None:
    key = str(ssh_key_file(tmp_path))
    assert_ok(b.run("target", "add-ssh", "web-1", "--host", "127.0.0.1", "--port",
                    str(sshd.port), "--login", sshd.login, "--key", key))  # fmt: skip
    assert_ok(b.run("target", "add-ssh", "gone-1", "--host", "127.0.0.1", "--port",
                    str(closed), "--login", "nobody", "--key", key))  # fmt: skip
    assert_ok(b.run("target", "add-postgres", "orders", "--host", pg.host, "--port",
                    str(pg.port), "--database", pg.database, "--user", pg.user,
                    "--password-stdin", input=PG_PASSWORD + "\n"))  # fmt: skip


def closed_port() -> int:
    """A loopback port nothing listens on (bound, never listening, then let go)."""
    return free_port()


class TestHealthy:
    def test_a_healthy_host_is_all_ok_and_leaks_nothing(
        self, bst: Bastion, tmp_path: Path, sshd: Sshd, pg: PgDatabase
    ) -> None:
        with_anchor_file(bst)
        user = bst.add_user("alice")
        key = str(ssh_key_file(tmp_path))
        assert_ok(bst.run("target", "add-ssh", "web-1", "--host", "127.0.0.1", "--port",
                          str(sshd.port), "--login", sshd.login, "--key", key))  # fmt: skip
        assert_ok(bst.run("target", "add-postgres", "orders", "--host", pg.host, "--port",
                          str(pg.port), "--database", pg.database, "--user", pg.user,
                          "--password-stdin", input=PG_PASSWORD + "\n"))  # fmt: skip
        before = snapshot_with_modes(bst.home)
        result = assert_ok(doctor(bst))
        found = lines_of(result)
        not_ok = {c: s for c, s in found.items() if s[0] != "ok" and c != "clock"}
        assert not not_ok, result.stdout
        assert found["clock"][0] in ("ok", "warn")  # this host's NTP state, as the kernel says
        assert found[f"target web-1 (ssh, 127.0.0.1:{sshd.port})"][1].startswith("answers SSH-2.0-")
        assert found[f"target orders (postgres, {pg.host}:{pg.port})"][1] == (
            "answers as PostgreSQL"
        )
        assert "0 failed" in result.stdout.splitlines()[-1]
        assert snapshot_with_modes(bst.home) == before  # doctor only reads
        secrets = [
            (bst.home / "secrets.key").read_text().strip(),
            user["otpauth_uri"].split("secret=")[1].split("&")[0],
            PG_PASSWORD,
            (bst.home / "tls" / "server.key").read_text().splitlines()[1],
        ]
        for secret in secrets:
            assert secret not in result.stdout + result.stderr

    def test_doctor_makes_no_files_beside_a_closed_sqlite_store(self, bst: Bastion) -> None:
        """Run by root before the first start, a -wal or -shm file doctor made would be
        root's, and the service's user could then not open its own store."""
        bst.add_user("alice")
        store = next(bst.home.glob("*.db"))
        assert not [p for p in store.parent.iterdir() if p.name.endswith(("-wal", "-shm"))]
        result = doctor(bst)
        assert lines_of(result)["store"][0] == "ok", result.stdout
        assert not [p.name for p in store.parent.iterdir() if p.name.endswith(("-wal", "-shm"))]

    @pytest.mark.both_stores  # on PostgreSQL: its password file and its clock are checked
    def test_json_lists_every_finding(self, bst: Bastion, door_store: str) -> None:
        out = bst.json("doctor")
        checks = {f["check"]: f for f in out["findings"]}
        assert {"config", "secrets key", "ssh host key", "tls key", "store", "clock"} <= set(checks)
        assert all(f["status"] in ("ok", "warn", "FAIL") for f in out["findings"])
        assert out["failed"] == 0, out
        assert checks["store"]["status"] == "ok"
        if door_store == "postgresql":
            assert checks["store clock"]["status"] == "ok", checks["store clock"]
            assert checks["store password file"]["status"] == "ok"
            sinks = [f for c, f in checks.items() if c.startswith("anchor sink")]
            assert sinks and all(f["status"] == "ok" for f in sinks), sinks
            assert "store file" not in checks
            password = next(bst.home.glob("*.password")).read_text().strip()
            assert password not in json_text(out)


class TestFiles:
    def test_a_key_readable_by_others_fails_with_the_fix(self, bst: Bastion) -> None:
        key = bst.home / "secrets.key"
        key.chmod(0o644)
        result = doctor(bst)
        assert result.returncode == Exit.DENIED, result.stdout
        status, text = lines_of(result)["secrets key"]
        assert status == "FAIL"
        assert f"{key} is readable by other users (mode 0644)" in text
        assert f"fix: chmod 600 {key}" in text
        assert mode(key) == 0o644  # told, never fixed by doctor
        assert (bst.home / "secrets.key").read_text().strip() not in result.stdout

    def test_a_symlink_to_a_world_readable_key_fails_and_says_so(
        self, bst: Bastion, tmp_path: Path
    ) -> None:
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir(mode=0o755)
        real = elsewhere / "server.key"
        key = bst.home / "tls" / "server.key"
        shutil.move(key, real)
        real.chmod(0o644)
        key.symlink_to(real)
        before = snapshot_with_modes(bst.home)
        result = doctor(bst)
        assert result.returncode == Exit.DENIED
        status, text = lines_of(result)["tls key"]
        assert status == "FAIL"
        assert f"(a symlink to {real})" in text and "mode 0644" in text
        assert f"fix: chmod 600 {real}" in text
        assert snapshot_with_modes(bst.home) == before
        assert mode(real) == 0o644 and key.is_symlink()

    def test_a_symlink_to_a_private_key_is_a_warning(self, bst: Bastion, tmp_path: Path) -> None:
        elsewhere = tmp_path / "keys"
        elsewhere.mkdir(mode=0o700)
        real = elsewhere / "report_signing.key"
        key = bst.home / "report_signing.key"
        shutil.move(key, real)
        key.symlink_to(real)
        result = assert_ok(doctor(bst))
        status, text = lines_of(result)["report signing key"]
        assert status == "warn"
        assert "is a symlink" in text and str(real) in text

    def test_a_key_in_a_directory_others_can_write_fails(
        self, bst: Bastion, tmp_path: Path
    ) -> None:
        shared = tmp_path / "shared"
        shared.mkdir()
        shared.chmod(0o777)
        real = shared / "secrets.key"
        shutil.move(bst.home / "secrets.key", real)
        (bst.home / "secrets.key").symlink_to(real)
        status, text = lines_of(doctor(bst))["secrets key"]
        assert status == "FAIL"
        assert f"{shared}, which other users can write" in text
        assert f"fix: chmod go-w {shared}" in text

    def test_a_key_owned_by_another_user_warns(self, bst: Bastion) -> None:
        key = bst.home / "report_signing.key"
        os.chown(key, 65534, 65534)  # nobody: the tests run as root, who still reads it
        result = assert_ok(doctor(bst))
        status, text = lines_of(result)["report signing key"]
        owner = bst.home.stat().st_uid
        assert status == "warn" and f"is owned by uid 65534, the state directory {bst.home}" in text
        assert f"fix: chown {owner} {key}" in text

    def test_a_missing_host_key_fails(self, bst: Bastion) -> None:
        host_key = bst.home / "ssh_host_ed25519_key"
        host_key.unlink()
        result = doctor(bst)
        assert result.returncode == Exit.DENIED
        status, text = lines_of(result)["ssh host key"]
        assert status == "FAIL"
        assert f"{host_key} is missing" in text
        assert f"ssh-keygen -t ed25519 -N '' -f {host_key}" in text

    def test_recordings_others_can_read_fail(self, bst: Bastion) -> None:
        recordings = bst.home / "recordings"
        recordings.chmod(0o755)
        status, text = lines_of(doctor(bst))["recordings"]
        assert status == "FAIL"
        assert "can be read by other users (mode 0755)" in text
        assert f"fix: chmod 700 {recordings}" in text

    def test_a_config_others_can_change_fails(self, bst: Bastion) -> None:
        bst.config.chmod(0o666)
        status, text = lines_of(doctor(bst))["config file"]
        assert status == "FAIL"
        assert f"fix: chmod go-w {bst.config}" in text

    def test_a_bad_config_is_one_failure(self, bst: Bastion) -> None:
        bst.config.write_text("[listeners.web]\nport = 0\n", encoding="utf-8")
        result = doctor(bst)
        assert result.returncode == Exit.DENIED
        assert "Traceback" not in result.stderr
        status, text = lines_of(result)["config"]
        assert status == "FAIL" and "listeners.web.port" in text


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class TestServiceUnit:
    """What the shipped unit allows, against what the configuration asks of the service."""

    def test_a_path_written_outside_the_state_directory_warns(
        self, bst: Bastion, tmp_path: Path
    ) -> None:
        """doctor runs outside the unit's sandbox: a sink it can write may still be read-only
        to the service (ProtectSystem=strict), which then fails at its first anchor."""
        sink = tmp_path / "elsewhere"
        sink.mkdir(mode=0o700)
        text = bst.config.read_text(encoding="utf-8")
        bst.config.write_text(text.replace("\nanchors = []\n",
                                           f'\nanchors = ["file:{sink / "a.log"}"]\n'),
                              encoding="utf-8")  # fmt: skip
        found = lines_of(assert_ok(doctor(bst)))
        assert found[f"anchor sink file:{sink / 'a.log'}"][0] == "ok"  # doctor may write it
        status, text = found[f"unit writes anchor sink file:{sink / 'a.log'}"]
        assert status == "warn" and f"{sink} is outside the state directory {bst.home}" in text
        assert f"fix: systemctl edit bastion: [Service] ReadWritePaths={sink}" in text
        assert not [c for c in found if c.startswith("unit writes ") and "anchor" not in c]


def test_the_clock_line_follows_the_kernels_ntp_state(bst: Bastion) -> None:
    kernel = kernel_sync()
    assert kernel is not None  # Linux answers adjtimex with modes 0 to anyone
    synchronised, max_error = kernel
    assert max_error >= 0
    status, text = lines_of(doctor(bst))["clock"]
    if synchronised and max_error <= 1_000_000:
        assert status == "ok" and text.startswith("synchronised")
    else:
        assert status == "warn" and "fix: run an NTP client" in text


class TestCertificate:
    def replace_tls(self, b: Bastion, tmp_path: Path, made: datetime) -> None:
        files = make_tls(tmp_path / "tls-made", now=made)
        shutil.copyfile(files.server_cert, b.home / "tls" / "server.pem")

    def test_an_expired_certificate_fails(self, bst: Bastion, tmp_path: Path) -> None:
        self.replace_tls(bst, tmp_path, datetime.now(UTC) - timedelta(days=900))
        result = doctor(bst)
        assert result.returncode == Exit.DENIED
        status, text = lines_of(result)["tls certificate"]
        assert status == "FAIL" and "expired on" in text and "fix: renew it" in text

    def test_a_certificate_near_its_end_warns(self, bst: Bastion, tmp_path: Path) -> None:
        self.replace_tls(bst, tmp_path, datetime.now(UTC) - timedelta(days=820))
        result = assert_ok(doctor(bst))
        status, text = lines_of(result)["tls certificate"]
        assert status == "warn" and "expires in 4 days" in text

    def test_a_fifo_for_a_certificate_fails_without_hanging(self, bst: Bastion) -> None:
        cert = bst.home / "tls" / "server.pem"
        cert.unlink()
        os.mkfifo(cert, 0o644)
        result = doctor(bst)  # a read of the FIFO would block until the 120 s timeout
        assert result.returncode == Exit.DENIED
        status, text = lines_of(result)["tls certificate file"]
        assert status == "FAIL" and "is not a regular file" in text
        assert "tls certificate" not in lines_of(result)

    def test_a_fifo_for_a_key_fails_without_hanging(self, bst: Bastion) -> None:
        key = bst.home / "secrets.key"
        key.unlink()
        os.mkfifo(key, 0o600)
        status, text = lines_of(doctor(bst))["secrets key"]
        assert status == "FAIL" and "is not a regular file" in text


class TestStoreUnreachable:
    def test_a_postgresql_store_that_does_not_answer_fails(self, bst: Bastion) -> None:
        closed = closed_port()
        password = bst.home / "store.password"
        password.write_text("store-password-4c1a\n")
        password.chmod(0o600)
        (bst.home / "anchors").mkdir(mode=0o700)
        text = bst.config.read_text(encoding="utf-8").replace(
            "[store]\n",
            f'[store]\nurl = "postgresql://bastion@127.0.0.1:{closed}/bastion"\n'
            'password_file = "store.password"\n',
            1,
        )
        text = text.replace('\nurl = ""\n', "\n").replace('\npassword_file = ""\n', "\n")
        text = text.replace(
            "\nanchors = []\n", f'\nanchors = ["file:{bst.home / "anchors" / "a.log"}"]\n'
        )
        bst.config.write_text(text, encoding="utf-8")
        result = doctor(bst)
        assert result.returncode == Exit.DENIED
        found = lines_of(result)
        status, line = found["store"]
        assert status == "FAIL" and f"127.0.0.1:{closed}" in line
        assert found["store password file"][0] == "ok"
        assert found["targets"][0] == "FAIL"  # they are read from the store
        assert "store-password-4c1a" not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr


def doctor_at(b: Bastion, when: datetime) -> tuple[int, dict[str, tuple[str, str]]]:
    """`bastion doctor` run in this process with the clock at `when`."""
    args = build_parser().parse_args(["--config", str(b.config), "doctor"])
    out = io.StringIO()
    code = args.handler(App(b.config, out=out, clock=FakeClock(when)), args)
    done = Result(args=[], returncode=code, stdout=out.getvalue(), stderr="")
    return code, lines_of(done)


def test_the_certificate_is_judged_by_the_injected_clock(bst: Bastion) -> None:
    cert = x509.load_pem_x509_certificate((bst.home / "tls" / "server.pem").read_bytes())
    until = cert.not_valid_after_utc
    code, found = doctor_at(bst, until - timedelta(days=15))
    assert found["tls certificate"][0] == "ok"
    code, found = doctor_at(bst, until - timedelta(days=13, hours=1))
    assert found["tls certificate"][0] == "warn" and "expires in 13 days" in found[
        "tls certificate"][1]  # fmt: skip
    code, found = doctor_at(bst, until + timedelta(seconds=1))
    assert code == Exit.DENIED and found["tls certificate"][0] == "FAIL"
    code, found = doctor_at(bst, cert.not_valid_before_utc - timedelta(minutes=5))
    assert found["tls certificate"][0] == "FAIL" and "not valid before" in found[
        "tls certificate"][1]  # fmt: skip


class TestTargets:
    def test_reachable_targets_pass_and_a_closed_port_fails_by_name(
        self, bst: Bastion, tmp_path: Path, sshd: Sshd, pg: PgDatabase
    ) -> None:
        closed = closed_port()
        add_targets(bst, tmp_path, sshd, pg, closed)
        result = doctor(bst, "--connect-timeout", "2")
        assert result.returncode == Exit.DENIED
        found = lines_of(result)
        assert found[f"target web-1 (ssh, 127.0.0.1:{sshd.port})"][0] == "ok"
        assert found[f"target orders (postgres, {pg.host}:{pg.port})"][0] == "ok"
        status, text = found[f"target gone-1 (ssh, 127.0.0.1:{closed})"]
        assert status == "FAIL"
        assert "cannot be reached: Connection refused" in text
        assert PG_PASSWORD not in result.stdout + result.stderr

    def test_a_port_that_is_not_ssh_fails(self, bst: Bastion, tmp_path: Path,
                                          pg: PgDatabase) -> None:  # fmt: skip
        key = str(ssh_key_file(tmp_path))
        assert_ok(bst.run("target", "add-ssh", "wrong-1", "--host", pg.host, "--port",
                          str(pg.port), "--login", "x", "--key", key))  # fmt: skip
        status, text = lines_of(doctor(bst, "--connect-timeout", "2"))[
            f"target wrong-1 (ssh, {pg.host}:{pg.port})"
        ]
        assert status == "FAIL"  # PostgreSQL sends no banner: no answer in time
        assert "cannot be reached" in text


class TestDisk:
    def test_free_space_below_the_fail_threshold_fails(self, bst: Bastion) -> None:
        free = shutil.disk_usage(bst.home / "recordings").free
        result = doctor(bst, "--fail-free", str(free + (1 << 30)))
        assert result.returncode == Exit.DENIED
        status, text = lines_of(result)["recordings disk"]
        assert status == "FAIL" and "nearly full" in text
        assert "fix: free space on the volume of" in text

    def test_free_space_below_the_warn_threshold_warns(self, bst: Bastion) -> None:
        result = assert_ok(doctor(bst, "--warn-free", "100%", "--fail-free", "0"))
        assert lines_of(result)["recordings disk"][0] == "warn"

    def test_a_bad_threshold_is_a_usage_error(self, bst: Bastion) -> None:
        assert_error(doctor(bst, "--warn-free", "lots"), Exit.USAGE, "free-space threshold")
        assert_error(doctor(bst, "--fail-free", "120%"), Exit.USAGE, "free-space threshold")
        assert_error(doctor(bst, "--connect-timeout", "-1"), Exit.USAGE, "--connect-timeout")


def store_version(db: Path) -> int:
    with closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("SELECT max(number) FROM schema_migrations").fetchone()[0])


class TestStore:
    def test_a_store_not_migrated_fails_and_stays_unmigrated(self, bst: Bastion) -> None:
        newest = max(number for number, _, _ in migrations())
        with closing(sqlite3.connect(bst.db, isolation_level=None)) as conn:
            conn.execute("DELETE FROM schema_migrations WHERE number = ?", [newest])
        result = doctor(bst)
        assert result.returncode == Exit.DENIED
        status, text = lines_of(result)["store"]
        assert status == "FAIL"
        assert f"is at schema {newest - 1}, this bastion needs {newest}" in text
        assert "fix: back the store up" in text
        assert store_version(bst.db) == newest - 1  # doctor never migrates

    def test_a_store_newer_than_the_bastion_fails(self, bst: Bastion) -> None:
        with closing(sqlite3.connect(bst.db, isolation_level=None)) as conn:
            conn.execute(
                "INSERT INTO schema_migrations (number, name, applied_at)"
                " VALUES (9999, '9999_future.sql', '2030-01-01T00:00:00.000000Z')"
            )
        status, text = lines_of(doctor(bst))["store"]
        assert status == "FAIL" and "newer than this bastion" in text

    def test_a_missing_store_fails(self, bst: Bastion) -> None:
        bst.db.unlink()
        result = doctor(bst)
        assert result.returncode == Exit.DENIED
        assert lines_of(result)["store file"][0] == "FAIL"
        assert lines_of(result)["store"][0] == "FAIL"
        assert not bst.db.exists()  # not created by looking


class TestAnchors:
    def test_an_unwritable_anchor_directory_fails(self, bst: Bastion, tmp_path: Path) -> None:
        text = bst.config.read_text(encoding="utf-8")
        missing = tmp_path / "no-such-dir" / "anchors.log"
        bst.config.write_text(text.replace("\nanchors = []\n", f'\nanchors = ["file:{missing}"]\n'))
        status, line = lines_of(doctor(bst))[f"anchor sink file:{missing}"]
        assert status == "FAIL" and "cannot be written" in line

    def test_a_webhook_sink_is_probed_without_its_secret(self, bst: Bastion) -> None:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            port = listener.getsockname()[1]
            url = f"http://127.0.0.1:{port}/anchors?token=hook-secret-81f2"
            text = bst.config.read_text(encoding="utf-8")
            bst.config.write_text(
                text.replace("\nanchors = []\n", f'\nanchors = ["webhook:{url}"]\n')
            )
            result = doctor(bst)
        found: dict[str, Any] = lines_of(result)
        assert found[f"anchor sink webhook:http://127.0.0.1:{port}/anchors"][0] == "ok"
        assert "hook-secret-81f2" not in result.stdout
