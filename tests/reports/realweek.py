"""A week of real activity through a served bastion's doors, then its review built and mailed.

Four people on an OpenSSH target (web-1) and two PostgreSQL databases (orders-prod, shop),
driven with the real `ssh` and `psql` clients and psycopg, TOTP answered as the door tests
do. The bastion's FakeClock is set to each moment of the ISO week after today's (in
Europe/Amsterdam), so a session at 03:00 and five days of one week take no waiting. What
happens, and the finding each thing should make:

- Mon 08:00  grants for the week (dave's is never used: unused_grant; it outlives the week)
- Mon 09:30  alice on web-1: `rm -rf ...; sudo ...` (destructive_command, privilege_escalation)
- Mon 14:00  alice on web-1 again, from a second address (many_addresses)
- Tue 03:00  alice on web-1 (outside_hours: working hours are Mon-Fri 07:00-20:00)
- Tue 10:00  alice on orders-prod with psql: a DROP and an UPDATE without WHERE
             (destructive_statement, twice)
- Wed 09:00  bob asks for orders-prod over SSH, carol approves over SSH, bob reads
- Wed 10:00  bob asks over SSH to unmask customer 4711 (consent SUP-1234); carol approves;
             bob reads the customer through the database door (unmask)
- Wed 13:00  bob opens break-glass on web-1 over SSH and uses it (break_glass)
- Thu 09:00  dave's wrong codes until he is locked out (lockout, failed_login_burst)
- Thu 16:00  alice's session is live 25 minutes when the bastion stops (interrupted_session); on
             restart `bastion serve` builds the week before (the store's first), which
             nobody signs in [reports] sign_within (review_unsigned in this week's review)
- Fri 11:00  alice copies 2 MiB out through a command's output (large_transfer)
- next Mon 06:01  the scheduler `bastion serve` runs builds this week's review and mails it
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from bastion.access.unmask import Unmasking
from bastion.audit.records import SessionRecord
from bastion.identity import totp
from bastion.reports.schedule import ReportScheduler, due_at, pack_builder, parse_build_at
from bastion.reports.week import Week, week_of
from bastion.server import Server
from bastion.ssh import selfservice
from tests.harness import Bastion
from tests.masking.door import POLICY as SHOP_POLICY
from tests.realpg import psycopg_connect, run_psql
from tests.realssh import OpenSSHClient, Sshd, SshResult
from tests.test_cli import run_bastion

TIMEZONE = "Europe/Amsterdam"
ZONE = ZoneInfo(TIMEZONE)
PASSWORD = "correct horse battery"
NUKE = "rm -rf /tmp/e2e-scratch; sudo -n true 2>/dev/null; true"
DROP = "DROP TABLE scratch_e2e"
UPDATE = "UPDATE orders SET id = id"
CONSENT = "SUP-1234"
ASKED = "SUP-3301 check a refund in orders"
GLASS_REASON = "INC-4412 web-1 answers 502 to every customer"
SHOP_TABLE = '[targets.shop]\nmax_grant = "7d"'
# alice's last session, cut short by the bastion stopping; found on the target by its token
LONG = f"sleep 119.{secrets.randbelow(10**9):09d}"
DUMP = "head -c 2097152 /dev/zero"  # over [reports] large_transfer_mb = 1
WRONG = "000000"  # a wrong code (a right one by chance once in a million runs)


def config_text(smtp_port: int, smtp_ca: Path) -> str:
    """The bastion's settings beyond its ports: reports mailed to the test's SMTP server."""
    return f"""
[reports]
timezone = "{TIMEZONE}"
build_at = "06:00"
sign_within = "2d"
large_transfer_mb = 1
recipients = ["security@example.test"]
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
smtp_from = "bastion@example.test"
smtp_ca = "{smtp_ca}"
[targets.web-1]
max_grant = "7d"
break_glass = true
[targets.orders-prod]
max_grant = "7d"
[targets.orders-prod.masking]
enabled = false
{SHOP_POLICY.replace("[targets.shop]", SHOP_TABLE)}
"""


def next_week(now: datetime) -> Week:
    """The ISO week after the one `now` is in (local time): all of it is still to come."""
    today = now.astimezone(ZONE).date()
    return week_of(today + timedelta(days=7 - today.weekday()), TIMEZONE)


@dataclass
class Facts:
    """What the scenario did, by id, for the tests to find in the review."""

    week: Week
    sessions: dict[str, SessionRecord] = field(default_factory=dict)  # by scenario name
    grants: dict[str, int] = field(default_factory=dict)
    unmask_id: int = 0
    request_id: int = 0
    glass_grant: int = 0
    first_week: str = ""  # the week built on restart, left unsigned
    first_verified: str = ""  # `report verify` on its pack, run as soon as it was built
    pack: Path = Path()


class Scenario:
    """Drives the week; every step moves the clock to its local moment first."""

    def __init__(self, b: Bastion, sshd: Sshd, work: Path) -> None:
        self.b, self.sshd, self.work = b, sshd, work
        self.facts = Facts(next_week(b.clock.now()))

    # -- time -----------------------------------------------------------------------------

    def at(self, day: int, hour: int, minute: int = 0) -> datetime:
        """A moment of the week: `day` 0 is its Monday, local time."""
        local = datetime.combine(self.facts.week.first_day + timedelta(days=day),
                                 datetime.min.time(), tzinfo=ZONE)  # fmt: skip
        return (local.replace(hour=hour, minute=minute)).astimezone(UTC)

    def when(self, day: int, hour: int, minute: int = 0) -> None:
        moment = self.at(day, hour, minute)
        assert moment > self.b.clock.now(), "the scenario's steps go forward in time"
        self.b.clock.set(moment)

    # -- clients --------------------------------------------------------------------------

    def client(self, user: str) -> OpenSSHClient:
        return self.b.openssh(user, self.work / f"ssh-{user}")

    def ssh(self, user: str, login: str, command: str, *, source: str = "127.0.0.1",
            answers: Callable[[str], str | None] | None = None) -> SshResult:  # fmt: skip
        """OpenSSH as `user`; a decision's own fresh code (the step after the login's) goes
        on stdin."""
        code = None
        if selfservice.needs_code(command):
            step = totp.step_at(self.b.clock.now()) + 2
            code = f"{totp.code_for_step(self.b.seeds[user], step)}\n".encode()
        return self.client(user).run_ssh(command, login=login, flags=["-b", source],
                                         answers=answers or self.b.answers(user),
                                         input=code)  # fmt: skip

    def session(self, name: str, user: str, login: str, command: str, *,
                source: str = "127.0.0.1") -> None:  # fmt: skip
        """One SSH session on a target; its row is kept under `name`."""
        before = {s.id for s in self.b.store.sessions(user=user)}
        done = self.ssh(user, login, command, source=source)
        assert done.returncode == 0, done.err
        self.facts.sessions[name] = self._new_session(user, before)

    def _new_session(self, user: str, before: set[str]) -> SessionRecord:
        """The session the last step opened, once the door has closed it: the clock must
        not move on while its end is still being written (it would end hours later)."""
        deadline = time.monotonic() + 30
        while True:
            new = [s for s in self.b.store.sessions(user=user) if s.id not in before]
            if len(new) == 1 and new[0].ended_at is not None:
                return new[0]
            assert time.monotonic() < deadline, f"{user}'s session did not end: {new}"
            time.sleep(0.02)

    def psql(self, user: str, target: str, *statements: str) -> str:
        args = [a for sql in statements for a in ("-c", sql)]
        done = run_psql(self.b.via_bastion(user, target, PASSWORD), "-At", *args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    # -- the week ---------------------------------------------------------------------------

    def run(self) -> Facts:
        self.grants()
        self.alice_on_web()
        self.alice_at_night()
        self.alice_on_the_database()
        self.bob_asks_for_access()
        self.bob_unmasks()
        self.bob_breaks_glass()
        self.dave_is_locked_out()
        self.alice_interrupted()
        self.alice_dumps()
        self.review()
        return self.facts

    def grants(self) -> None:
        self.when(0, 8)
        for name, user, target, mode, reason in [
            ("alice-web", "alice", "web-1", "write", "CHG-2101 rotate web-1 logs, clear cache"),
            ("alice-db", "alice", "orders-prod", "write", "CHG-2102 archive old orders"),
            ("bob-shop", "bob", "shop", "read", "SUP-3300 support cases on the shop"),
            ("dave-web", "dave", "web-1", "read", "CHG-2103 check web-1 kernel readiness"),
        ]:  # fmt: skip
            days = 7 if user == "dave" else 6  # dave's outlives the week: standing access
            self.facts.grants[name] = self.b.core.access.grant(
                user=user, target=target, duration=timedelta(days=days), mode=mode,
                reason=reason, actor="carol").id  # fmt: skip

    def alice_on_web(self) -> None:
        self.when(0, 9, 30)
        self.session("nuke", "alice", "alice+web-1", NUKE)
        self.when(0, 14)
        self.session("elsewhere", "alice", "alice+web-1", "ls /tmp", source="127.0.0.2")

    def alice_at_night(self) -> None:
        self.when(1, 3)
        self.session("night", "alice", "alice+web-1", "uptime")

    def alice_on_the_database(self) -> None:
        self.when(1, 10)
        before = {s.id for s in self.b.store.sessions(user="alice")}
        self.psql("alice", "orders-prod", "SELECT count(*) FROM orders",
                  "CREATE TABLE scratch_e2e (id int)", DROP, UPDATE)  # fmt: skip
        self.facts.sessions["database"] = self._new_session("alice", before)

    def bob_asks_for_access(self) -> None:
        """A request over SSH, approved by carol over SSH with her own login and code."""
        self.when(2, 9)
        done = self.ssh("bob", "bob", f"request orders-prod --for 2h --reason '{ASKED}'")
        assert done.returncode == 0 and "waiting for 1 approval(s)" in done.out, done.err
        self.facts.request_id = int(done.out.split()[1].rstrip(":"))
        done = self.ssh("carol", "carol", f"approve {self.facts.request_id}")
        assert done.returncode == 0, done.err
        before = {s.id for s in self.b.store.sessions(user="bob")}
        self.psql("bob", "orders-prod", "SELECT count(*) FROM orders WHERE id = 1")
        self.facts.sessions["asked"] = self._new_session("bob", before)

    def bob_unmasks(self) -> None:
        self.when(2, 10)
        ask = (
            f"unmask shop --columns customers.email --subject customers.id=4711 --reason"
            f" 'SUP-1234 customer asked why their card was charged twice' --consent {CONSENT}"
        )
        done = self.ssh("bob", "bob", ask)
        assert done.returncode == 0, done.err
        [pending] = self.b.store.unmasks(user="bob")
        # An admin's approval: what `bastion unmask approve ID --as carol` calls, after the
        # CLI has checked carol's code (the CLI process would read the system clock).
        Unmasking(self.b.store, self.b.config, self.b.clock).approve(
            pending.id, "carol", consent_confirmed=True)  # fmt: skip
        self.facts.unmask_id = pending.id
        before = {s.id for s in self.b.store.sessions(user="bob")}
        with psycopg_connect(self.b.via_bastion("bob", "shop", PASSWORD),
                             autocommit=True) as conn:  # fmt: skip
            rows = conn.execute("SELECT id, email FROM customers ORDER BY id").fetchall()
        assert rows[0] == (4711, "jane.doe@example.com")  # in clear: the consented subject
        assert rows[1][1] != "john.roe@example.org"  # everyone else stays masked
        self.facts.sessions["unmask"] = self._new_session("bob", before)

    def bob_breaks_glass(self) -> None:
        self.when(2, 13)
        done = self.ssh("bob", "bob", f"break-glass web-1 --reason '{GLASS_REASON}' --for 1h")
        assert done.returncode == 0, done.err
        self.facts.glass_grant = int(done.out.split()[2].rstrip(":"))
        self.session("glass", "bob", "bob+web-1", "df -h /")

    def dave_is_locked_out(self) -> None:
        self.when(3, 9)

        def wrong(prompt: str) -> str | None:
            return WRONG if "Verification code" in prompt else None

        for _ in range(4):
            done = self.ssh("dave", "dave+web-1", "true", answers=wrong)
            assert done.returncode != 0
            if self.b.events("user.locked"):
                return
        raise AssertionError("dave was never locked out")

    def alice_interrupted(self) -> None:
        """A session live when the bastion stops ends `interrupted`; serve starts again."""
        self.when(3, 16)
        before = {s.id for s in self.b.store.sessions(user="alice")}
        result: list[SshResult] = []
        client = threading.Thread(target=lambda: result.append(
            self.ssh("alice", "alice+web-1", f"echo started; {LONG}")))  # fmt: skip
        client.start()
        deadline = time.monotonic() + 30
        while not self._on_target(LONG):  # the session is through to the target
            assert time.monotonic() < deadline, "alice's session never reached web-1"
            time.sleep(0.05)
        self.b.clock.set(self.b.clock.now() + timedelta(minutes=25))  # open a while (a wall step)
        assert self.b.server is not None
        self.b.call(self.b.server.stop())
        client.join(30)
        for pid in self._on_target(LONG):  # a command without a terminal outlives its channel
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        self.facts.sessions["interrupted"] = self._new_session("alice", before)
        self.b.server = Server(self.b.core)
        self.b.call(self.b.server.start())
        # On start, serve builds the week before (due since Monday 06:00) and mails it.
        previous = self.facts.week.previous().label
        deadline = time.monotonic() + 60
        while previous not in {w.week for w in self.b.store.report_weeks()}:
            run = self.b.store.report_run(previous, "build")
            assert run is None or not run.last_error, f"serve's build failed: {run.last_error}"
            assert time.monotonic() < deadline, f"serve did not build {previous}"
            time.sleep(0.1)
        self.facts.first_week = previous
        # Verified now: the CLI runs on the real clock, and the real today falls in that week
        # (the scenario's week is the next one), so a CLI event written later (a verify, a
        # listing) would land in it and rightly no longer match the pack's counts.
        self.facts.first_verified = self._verify(self.b.config.paths.reports / previous)

    def alice_dumps(self) -> None:
        """Two MiB through a command's output, as `ssh host pg_dump > x` would."""
        self.when(4, 11)
        self.session("dump", "alice", "alice+web-1", DUMP)

    def _verify(self, pack: Path) -> str:
        """`bastion report verify` on a pack, with the store: its output (it must pass)."""
        config = self.b.home / "bastion.toml"
        done = run_bastion("--config", str(config), "report", "verify", str(pack),
                           cwd=self.b.home)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def _on_target(self, command: str) -> list[int]:
        """The target's processes (as its login) running `command`, by id."""
        found = subprocess.run(["pgrep", "-u", self.sshd.login, "-f", command],
                               capture_output=True, text=True, check=False)  # fmt: skip
        return [int(pid) for pid in found.stdout.split()]

    def review(self) -> None:
        """On the next week's first day, after build_at: what serve's scheduler runs then.

        The doors are stopped first so that serve's own scheduler task (which looks every
        minute of real time) cannot build the same week beside this one."""
        week = self.facts.week
        self.b.clock.set(due_at(week, parse_build_at("06:00")) + timedelta(minutes=1))
        assert self.b.server is not None
        self.b.call(self.b.server.stop())
        self.b.server = None
        scheduler = ReportScheduler(self.b.core, pack_builder(self.b.core))
        self.b.call(scheduler.tick(), timeout=180)
        self.facts.pack = self.b.config.paths.reports / week.label


def local_day(moment: datetime) -> date:
    return moment.astimezone(ZONE).date()
