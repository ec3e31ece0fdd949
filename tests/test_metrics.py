"""/metrics of a running bastion moves with real sessions: OpenSSH and asyncssh through the SSH
door to a real sshd, psql and psycopg through the database door to a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from bastion import __version__
from tests.harness import Bastion
from tests.metrics_scrape import Scrape, scrape, until
from tests.pgproxy.conftest import PASSWORD, UNMASKED
from tests.realpg import PgDatabase, psycopg_connect, run_psql
from tests.realprometheus import Prometheus
from tests.realssh import Sshd, free_port
from tests.ssh.test_door_auth import connect

RULES = Path(__file__).resolve().parent.parent / "docs" / "prometheus" / "alerts.yml"
SSH_LIVE = {"door": "ssh", "target": "web-1"}
PG_LIVE = {"door": "postgres", "target": "orders-prod"}


@pytest.fixture
def served(tmp_path: Path, sshd: Sshd, pg: PgDatabase) -> Iterator[tuple[Bastion, str]]:
    """alice (key, password, TOTP) may reach web-1 (sshd) and read orders-prod (pg); /metrics
    on a loopback listener of its own. Yields the bastion and the metrics URL."""
    port = free_port()
    b = Bastion(tmp_path / "bastion", f'{UNMASKED}[metrics]\nlisten = "127.0.0.1:{port}"\n',
                postgres=True)  # fmt: skip
    b.add_user("alice", password=PASSWORD)
    b.add_target("web-1", sshd)
    b.add_pg_target("orders-prod", pg)
    b.grant("alice", "web-1")
    b.grant("alice", "orders-prod")
    b.start()
    try:
        yield b, f"http://127.0.0.1:{port}/metrics"
    finally:
        b.stop()


def test_the_scrape_names_this_bastion_and_its_files(served: tuple[Bastion, str]) -> None:
    b, url = served
    found = scrape(url)
    assert found.value("bastion_build_info", version=__version__, node=b.core.node) == 1
    assert found.value("bastion_ready") == 1 and found.value("bastion_store_reachable") == 1
    # the certificate bastion made is fresh and valid for long; the host key is new
    assert 0 <= found.value("bastion_tls_certificate_age_seconds") < 3600
    assert found.value("bastion_tls_certificate_expiry_seconds") > 300 * 86400
    assert 0 <= found.value("bastion_ssh_host_key_age_seconds") < 3600
    assert found.has("bastion_notifications_pending")
    assert found.has("bastion_audit_queue_depth")


def test_ssh_sessions_move_logins_the_live_gauge_and_recording_bytes(
    served: tuple[Bastion, str], tmp_path: Path
) -> None:
    b, url = served
    before = scrape(url)
    ssh = b.openssh("alice", tmp_path / "client")
    done = ssh.run_ssh("echo hello", login="alice+web-1", answers=b.answers("alice"))
    assert done.returncode == 0 and done.out == "hello\n", done.err
    after = until(url, lambda s: s.value("bastion_recording_bytes_total") > 0, "recording bytes")
    assert after.value("bastion_logins_total", door="ssh") == (
        before.value("bastion_logins_total", door="ssh") + 1
    )
    assert after.value("bastion_sessions_opened_total", **SSH_LIVE) == 1
    assert after.value("bastion_sessions_live", **SSH_LIVE) == 0

    async def open_shell() -> tuple[Any, Any]:
        key = asyncssh.read_private_key(b.keys["alice"])
        conn, _ = await connect(b, "alice+web-1", [key], [b.code("alice")])
        process = await conn.create_process("cat")
        process.stdin.write("typed\n")
        assert await process.stdout.readline() == "typed\n"
        return conn, process

    conn, process = b.call(open_shell())
    try:
        live = until(url, lambda s: s.value("bastion_sessions_live", **SSH_LIVE) == 1, "live")
        assert live.value("bastion_logins_total", door="ssh") == (
            after.value("bastion_logins_total", door="ssh") + 1
        )
    finally:

        async def close() -> None:
            process.stdin.write_eof()
            await process.wait_closed()
            conn.close()
            await conn.wait_closed()

        b.call(close())
    until(url, lambda s: s.value("bastion_sessions_live", **SSH_LIVE) == 0, "session ended")
    flushed = scrape(url)
    assert flushed.value("bastion_recording_flush_failures_total") == 0
    assert flushed.value("bastion_recording_bytes_total") > after.value(
        "bastion_recording_bytes_total"
    )


def test_a_wrong_code_counts_a_totp_failure_and_a_refusal(served: tuple[Bastion, str]) -> None:
    b, url = served
    before = scrape(url)

    async def wrong_code() -> None:
        key = asyncssh.read_private_key(b.keys["alice"])
        code = b.code("alice")
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        with pytest.raises(asyncssh.PermissionDenied):
            await connect(b, "alice+web-1", [key], [wrong])

    b.call(wrong_code())
    wrong = {"door": "ssh", "result": "wrong"}
    refused = {"door": "ssh", "reason": "wrong_code"}
    after = until(url, lambda s: s.value("bastion_login_refusals_total", **refused) >= 1,
                  "the refusal")  # fmt: skip
    assert after.value("bastion_totp_failures_total", **wrong) == (
        before.value("bastion_totp_failures_total", **wrong) + 1
    )
    assert after.value("bastion_login_refusals_total", **refused) == 1
    assert after.value("bastion_logins_total", door="ssh") == before.value(
        "bastion_logins_total", door="ssh"
    )
    assert after.value("bastion_lockouts_total", door="ssh") == 0


def test_wrong_codes_in_a_row_lock_the_account_and_count_a_lockout(
    served: tuple[Bastion, str],
) -> None:
    """[lockout] max_failures (5) wrong codes lock alice: one lockout; then even her right
    code is refused as `locked`."""
    b, url = served
    key = asyncssh.read_private_key(b.keys["alice"])

    async def attempt(right: bool) -> None:
        code = b.code("alice")
        sent = code if right else f"{(int(code) + 1) % 1_000_000:06d}"
        with pytest.raises(asyncssh.PermissionDenied):
            await connect(b, "alice+web-1", [key], [sent])

    for _ in range(b.config.lockout.max_failures):
        b.call(attempt(right=False))
    b.call(attempt(right=True))
    found = until(url, lambda s: s.value("bastion_login_refusals_total", door="ssh",
                                         reason="locked") == 1, "the locked refusal")  # fmt: skip
    assert found.value("bastion_lockouts_total", door="ssh") == 1
    assert found.value("bastion_totp_failures_total", door="ssh", result="wrong") == 5
    assert found.value("bastion_totp_failures_total", door="ssh", result="locked") == 1


def test_database_sessions_count_statements_by_kind_and_outcome(
    served: tuple[Bastion, str],
) -> None:
    b, url = served
    before = scrape(url)
    via = b.via_bastion("alice", "orders-prod", PASSWORD)
    done = run_psql(via, "-c", "SELECT 1", "-c", "SELECT count(*) FROM orders",
                    "-c", "SHOW server_version")  # fmt: skip
    assert done.returncode == 0, done.stderr
    select = {"kind": "SELECT", "outcome": "ok"}

    def moved(s: Scrape) -> bool:
        return s.value("bastion_statements_total", **select) >= 2 + before.value(
            "bastion_statements_total", **select
        )

    after = until(url, moved, "statements")
    assert after.value("bastion_statements_total", kind="SHOW", outcome="ok") == 1
    assert after.value("bastion_logins_total", door="postgres") == 1
    assert after.value("bastion_sessions_opened_total", **PG_LIVE) == 1
    assert after.value("bastion_audit_commit_seconds_count") > before.value(
        "bastion_audit_commit_seconds_count"
    )  # the statements' records went through the group commit
    # a read grant: a write is refused by the bastion, and counted as refused
    refused = run_psql(b.via_bastion("alice", "orders-prod", PASSWORD), "-c",
                       "DELETE FROM orders")  # fmt: skip
    assert refused.returncode != 0
    until(url, lambda s: s.value("bastion_statements_refused_total") == 1, "refused statement")
    with psycopg_connect(b.via_bastion("alice", "orders-prod", PASSWORD)) as held:
        held.execute("SELECT 1").fetchall()
        live = until(url, lambda s: s.value("bastion_sessions_live", **PG_LIVE) == 1, "live")
        assert live.value("bastion_logins_total", door="postgres") == 3
    until(url, lambda s: s.value("bastion_sessions_live", **PG_LIVE) == 0, "session ended")


def test_a_wrong_database_password_is_a_refusal_and_no_name_leaks(
    served: tuple[Bastion, str],
) -> None:
    b, url = served
    wrong = PgDatabase("127.0.0.1", b.pg_port, "orders-prod", "alice",
                       "not-the-password" + b.code("alice"))  # fmt: skip
    assert run_psql(wrong, "-c", "SELECT 1").returncode != 0
    unknown = PgDatabase("127.0.0.1", b.pg_port, "no-such-target", "mallory-x",
                         "guess" + b.code("alice"))  # fmt: skip
    assert run_psql(unknown, "-c", "SELECT 1").returncode != 0
    refused = {"door": "postgres", "reason": "wrong_password"}
    found = until(url, lambda s: s.value("bastion_login_refusals_total", **refused) >= 2,
                  "refusals")  # fmt: skip
    # what clients typed never becomes a label: no user, no target they made up, no password
    for text in ("alice", "mallory", "no-such-target", "not-the-password", b.seeds["alice"]):
        assert text not in found.text
    labels = {value for _, pairs in found.samples for _, value in pairs}
    assert labels <= {"ssh", "postgres", "web", "other", "web-1", "orders-prod", b.core.node,
                      __version__, *_bounded()}  # fmt: skip


def _bounded() -> set[str]:
    from bastion import metrics  # noqa: PLC0415

    buckets = {str(b) for b in metrics.LATENCY} | {"+Inf"}
    return {*metrics.REFUSALS, *metrics.TOTP_RESULTS, *metrics.KINDS, "OTHER", "NONE", "ok",
            "error", "not_executed", "abandoned", *buckets}  # fmt: skip


def test_a_real_prometheus_scrapes_the_bastion_with_its_token_and_loads_the_rules(
    tmp_path: Path, sshd: Sshd
) -> None:
    """Debian's Prometheus scrapes /metrics every second with the bearer token from a file
    (as an operator sets it up), evaluates docs/prometheus/alerts.yml without an error, and
    sees a live SSH session come and go."""
    port = free_port()
    settings = f'[metrics]\nlisten = "127.0.0.1:{port}"\ntoken_file = "metrics.token"\n'
    b = Bastion(tmp_path / "bastion", settings)
    token = b.home / "metrics.token"
    token.write_text("prometheus-scrape-token-0123456789abcdef\n")
    token.chmod(0o600)
    b.add_user("alice")
    b.add_target("web-1", sshd)
    b.grant("alice", "web-1")
    b.start()
    prometheus = Prometheus(tmp_path / "prometheus", f"127.0.0.1:{port}", token, RULES)
    try:
        prometheus.start()
        prometheus.until(lambda: prometheus.value('up{job="bastion"}') == 1, "a good scrape")
        assert prometheus.value("bastion_ready") == 1

        def rules_ok() -> bool:
            data = prometheus.api("rules")
            rules = [r for g in (data or {}).get("groups", []) for r in g["rules"]]
            return len(rules) >= 15 and all(r["health"] == "ok" for r in rules)

        prometheus.until(rules_ok, "every rule evaluated without an error")
        assert prometheus.api("alerts")["alerts"] == []  # a healthy bastion sets off none

        async def open_shell() -> tuple[Any, Any]:
            key = asyncssh.read_private_key(b.keys["alice"])
            conn, _ = await connect(b, "alice+web-1", [key], [b.code("alice")])
            return conn, await conn.create_process("cat")

        conn, process = b.call(open_shell())
        live = 'bastion_sessions_live{door="ssh",target="web-1"}'
        prometheus.until(lambda: prometheus.value(live) == 1, "the live session")
        assert prometheus.value('bastion_logins_total{door="ssh"}') == 1

        async def close() -> None:
            process.stdin.write_eof()
            await process.wait_closed()
            conn.close()
            await conn.wait_closed()

        b.call(close())
        prometheus.until(lambda: prometheus.value(live) in (0, None), "the session's end")
    finally:
        prometheus.close()
        b.stop()


def test_an_address_blocked_by_the_pre_login_limits_is_a_preauth_refusal(
    tmp_path: Path, pg: PgDatabase
) -> None:
    """[postgres] max_failures_per_source = 1: one wrong password blocks the address, and its
    next connection is refused before any proof (`preauth_limit`)."""
    port = free_port()
    settings = f'[postgres]\nmax_failures_per_source = 1\n[metrics]\nlisten = "127.0.0.1:{port}"\n'
    b = Bastion(tmp_path / "bastion", UNMASKED + settings, postgres=True)
    b.add_user("alice", password=PASSWORD)
    b.add_pg_target("orders-prod", pg)
    b.grant("alice", "orders-prod")
    b.start()
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        wrong = b.via_bastion("alice", "orders-prod", "not-" + PASSWORD)
        assert run_psql(wrong, "-c", "SELECT 1").returncode != 0
        again = run_psql(b.via_bastion("alice", "orders-prod", PASSWORD), "-c", "SELECT 1")
        assert again.returncode != 0 and "too many failed logins" in again.stderr
        blocked = {"door": "postgres", "reason": "preauth_limit"}
        # (libpq tries again without TLS after a refusal over TLS: one or two connections)
        found = until(url, lambda s: s.value("bastion_login_refusals_total", **blocked) >= 1,
                      "the pre-login refusal")  # fmt: skip
        assert found.value("bastion_login_refusals_total", door="postgres",
                           reason="wrong_password") == 1  # fmt: skip
        assert found.value("bastion_logins_total", door="postgres") == 0
    finally:
        b.stop()
