"""Destructive statements and escalating commands are named, however they are written."""

from __future__ import annotations

import pytest

from bastion.reports.commandcheck import destructive_command, escalating
from bastion.reports.sqlcheck import destructive_statement
from bastion.ssh.streams import programs


@pytest.mark.parametrize(("sql", "tag", "why"), [
    ("DROP TABLE invoices", "DROP TABLE", "DROP"),
    ("truncate invoices", "TRUNCATE TABLE", "TRUNCATE"),
    ("ALTER ROLE app SUPERUSER", "ALTER ROLE", "ALTER ROLE"),
    ("GRANT ALL ON invoices TO public", "GRANT", "GRANT"),
    ("DELETE FROM invoices", "DELETE", "DELETE without WHERE"),
    ("delete from invoices where true", "DELETE", "DELETE without WHERE"),
    ("UPDATE invoices SET paid = $1 WHERE 1 = 1", "UPDATE", "UPDATE without WHERE"),
    ("WITH x AS (SELECT 1) UPDATE invoices SET paid = true", "UPDATE", "UPDATE without WHERE"),
    ("DELETE FROM invoices WHERE id = $1", "DELETE", None),
    ("UPDATE invoices SET paid = true WHERE id IN (SELECT id FROM t)", "UPDATE", None),
    ("SELECT * FROM invoices", "SELECT", None),
    ("DELETE FROM invoices ??? broken", "DELETE", "DELETE without WHERE"),
    ("BEGIN; TRUNCATE customers; COMMIT", "BEGIN", "TRUNCATE"),
    ("SELECT 1; DROP TABLE payments", "SELECT", "DROP"),
    ("EXPLAIN ANALYZE DELETE FROM invoices", "EXPLAIN", "DELETE without WHERE"),
    ("WITH d AS (DELETE FROM users RETURNING 1) SELECT count(*) FROM d", "SELECT",
     "DELETE without WHERE"),
    ("DECLARE c CURSOR FOR WITH d AS (DELETE FROM users RETURNING 1) SELECT * FROM d",
     "DECLARE CURSOR", "DELETE without WHERE"),
    ("DO $$ BEGIN EXECUTE 'DROP TABLE users'; END $$", "DO", "a DO block"),
    ("PREPARE p AS DELETE FROM users", "PREPARE", "DELETE without WHERE"),
    ("ALTER TABLE users DROP COLUMN email", "ALTER TABLE", "DROP COLUMN"),
    ("CREATE ROLE x SUPERUSER", "CREATE ROLE", "CREATE ROLE"),
    ("MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE", "MERGE", "MERGE"),
    ("SELECT updated_at FROM invoices", "SELECT", None),
])  # fmt: skip
def test_a_destructive_statement_is_named(sql: str, tag: str, why: str | None) -> None:
    assert destructive_statement(sql, tag) == why


@pytest.mark.parametrize(("command", "found"), [
    ("sudo -u root systemctl restart app", "sudo"),
    ("/usr/bin/sudo ls", "sudo"),
    ("cd /tmp && su - postgres", "su"),
    ("env FOO=1 doas vi /etc/hosts", "doas"),
    ("echo $(sudo cat /etc/shadow)", "sudo"),
])  # fmt: skip
def test_escalating_programs_are_seen_in_a_command_line(command: str, found: str) -> None:
    assert found in programs(command)


def test_a_word_that_merely_mentions_sudo_is_not_a_program() -> None:
    assert "sudo" not in programs("grep sudo /var/log/auth.log")


@pytest.mark.parametrize(("command", "why"), [
    ("rm -rf /var/tmp/x", "rm -rf"), ("rm -Rf /var/lib/postgresql", "rm -rf"),
    ("rm -fR /x", "rm -rf"), ("rm -rvf /x", "rm -rf"), ("rm -r --force /x", "rm -rf"),
    ("rm --recursive -f /x", "rm -rf"), ("rm /data -rf", "rm -rf"), ("'rm' -rf /x", "rm -rf"),
    ("/sbin/shutdown -h now", "shutdown"), ("sudo -n shutdown", "shutdown"),
    ("env shutdown", "shutdown"), ("systemctl poweroff", "shutdown"), ("init 6", "shutdown"),
    ("iptables -t nat -F", "firewall flush"), ("iptables -w -F", "firewall flush"),
    ("nft flush ruleset", "firewall flush"), ("bash -c 'rm -rf /srv'", "rm -rf"),
    ("mkfs.ext4 /dev/sdb1", "disk overwrite"), ("dd if=/dev/zero of=/dev/sda", "disk overwrite"),
    ("rm -r /tmp/x", None), ("rm -f /tmp/x", None), ("echo rm -rf /", None),
    ("grep shutdown /var/log/syslog", None), ("sudo ls -la", None),
])  # fmt: skip
def test_a_destructive_command_is_named_however_its_flags_are_written(
    command: str, why: str | None
) -> None:
    assert destructive_command(command) == why


@pytest.mark.parametrize(("command", "found"), [
    ('bash -c "sudo id"', ["sudo"]), ("sudoedit /etc/shadow", ["sudoedit"]),
    ("systemd-run --uid=0 sh", ["systemd-run"]), ("sudo ls -la", ["sudo"]),
    ("sudo iptables-legacy -F", ["sudo"]), ("ls -la", []),
])  # fmt: skip
def test_escalation_is_seen_inside_shells_and_never_crashes(command: str, found: list[str]) -> None:
    assert escalating(command) == found
