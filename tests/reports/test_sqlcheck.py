"""Destructive statements and escalating commands are named, however they are written."""

from __future__ import annotations

import pytest

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
