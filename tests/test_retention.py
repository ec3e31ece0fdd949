"""Retention with a legal hold on two months of history made under the test clock: what is past
its period goes (archived first), what the hold keeps stays, and `audit verify` still proves
everything kept from a signed checkpoint; the archive proves itself, and a tampered one fails.
Run on SQLite and on PostgreSQL."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bastion.audit.anchors import Anchor, anchor_key, parse_spec
from bastion.audit.qlogbind import EVERYTHING
from bastion.audit.queries import QueryEnd, QueryStart
from bastion.audit.sessions import RecordingInfo
from bastion.cli import build_parser
from bastion.clock import FakeClock, iso
from bastion.commands.app import App
from bastion.config import load_config
from bastion.config_policies import RecordingsPolicy
from bastion.errors import ConfigError, NotFound, StoreError, UsageError
from bastion.recording.fetch import object_name
from bastion.recording.objects import ObjectStore
from bastion.reports.facts import collect
from bastion.reports.gather import run_rules
from bastion.reports.week import week_of
from bastion.retention import LEASE, Runner
from bastion.retention_schedule import run_once
from tests.audit.first_form import write_first_form
from tests.harness import Bastion
from tests.reals3 import BUCKET, MotoS3
from tests.recording.helpers import make_writer

pytestmark = pytest.mark.both_stores

DAYS = 60
RETENTION = """
[retention]
recordings = "30d"
queries = "30d"
events = "40d"
archive_dir = "{archive}"
"""


@dataclass
class History:
    bst: Bastion
    start: datetime
    end: datetime
    archive_dir: Path

    def cli(self, *argv: str) -> tuple[int, str]:
        """A CLI command run as the admin would, on this bastion, with the clock at `end`."""
        args = build_parser().parse_args(["--config", str(self.bst.home / "bastion.toml"), *argv])
        if argv[:2] == ("audit", "verify"):
            self.anchor()
        out = io.StringIO()
        app = App(self.bst.home / "bastion.toml", as_json="--json" in argv, out=out,
                  clock=FakeClock(self.end))  # fmt: skip
        try:
            return int(args.handler(app, args)), out.getvalue()
        finally:
            if "store" in vars(app):
                app.store.close()

    def anchor(self) -> None:
        """The chain's head sent to the file anchor sinks, as `bastion serve` does (a store on
        PostgreSQL has one)."""
        seq, mac = self.bst.store.chain_head()
        line = Anchor("node-1", seq, mac, iso(self.end)).signed(anchor_key(self.bst.box))
        for spec in self.bst.config.audit.anchors:
            kind, where = parse_spec(spec)
            if kind == "file":
                with Path(where).open("a", encoding="utf-8") as sink:
                    sink.write(line + "\n")


def _recorded(bst: Bastion, user: str, day: int, when: datetime) -> None:
    """An SSH session with a real recording, closed with its hash chained."""
    sid = f"ssh-{user}-{day:02d}"
    writer = make_writer(bst.config.paths.recordings, bst.box, sid, when)
    bst.store.open_session(session_id=sid, user=user, target="web-1", grant_id=None,
                           protocol="ssh", client_addr="127.0.0.1:5000",
                           recording_path=str(writer.path))  # fmt: skip
    writer.output(f"day {day} of {user}\r\n".encode(), 0.5)
    summary = writer.close()
    info = RecordingInfo(str(summary.path), summary.sha256, summary.size)
    bst.store.close_session(sid, "closed", "client quit", info)


def _queried(bst: Bastion, user: str, day: int, when: datetime, legacy: bool) -> None:
    """A database session with two statements in the query log, bound by commit events (or,
    `legacy`, a chained event per statement, as stores wrote them before commit events)."""
    sid = f"pg-{user}-{day:02d}"
    bst.store.open_session(session_id=sid, user=user, target="db-1", grant_id=None,
                           protocol="postgres", client_addr="127.0.0.1:5001")  # fmt: skip
    for n in range(2):
        key = f"{sid}-{n}"
        records: list[QueryStart | QueryEnd] = [
            QueryStart(key, sid, user, "db-1", when, "simple", f"SELECT {n} FROM orders"),
            QueryEnd(key, sid, user, "db-1", when, 1, "SELECT 1", None, 120),
        ]
        if legacy:
            write_first_form(bst.store, records)
        else:
            bst.store.write_batch(records)
    bst.store.close_session(sid, "closed", "client quit")


@pytest.fixture
def history(tmp_path: Path) -> Iterator[History]:
    """alice works from day 0; carol (the one to be held) joins on day 10; 60 days in all."""
    yield from _history(tmp_path, legacy_days=0)


@pytest.fixture
def legacy_history(tmp_path: Path) -> Iterator[History]:
    """The same, the first 5 days' query log of the first form (from before commit events)."""
    yield from _history(tmp_path, legacy_days=5)


def _history(tmp_path: Path, legacy_days: int) -> Iterator[History]:
    archive = tmp_path / "archive"
    bst = Bastion(tmp_path / "b", RETENTION.format(archive=archive))
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=DAYS)
    bst.clock.set(start)
    bst.store.add_user("alice", "engineer", None, b"seed", "test")
    for name, kind in (("web-1", "ssh"), ("db-1", "postgres")):
        bst.store.add_target(name=name, kind=kind, host="127.0.0.1", port=1, login="x",
                             database="d" if kind == "postgres" else None,
                             secret_sealed=b"s", actor="test")  # fmt: skip
    for day in range(DAYS):
        bst.clock.set(start + timedelta(days=day, hours=9))
        if day == 10:
            bst.store.add_user("carol", "engineer", None, b"seed", "test")
        for user in ("alice", "carol") if day >= 10 else ("alice",):
            _recorded(bst, user, day, bst.clock.now())
            bst.clock.advance(60)
            _queried(bst, user, day, bst.clock.now(), day < legacy_days)
            bst.clock.advance(60)
    end = start + timedelta(days=DAYS, hours=8)  # retention's cuts fall at 08:00, between days
    bst.clock.set(end)
    made = History(bst, start, end, archive)
    made.anchor()  # a head from before retention: the checkpoint's archive vouches for it
    try:
        yield made
    finally:
        bst.release()


def _archive(history: History) -> Path:
    [found] = list(history.archive_dir.iterdir())
    return found


def _tampered(path: Path, name: str, data: bytes) -> Path:
    out = path.with_name(name)
    out.write_bytes(data)
    os.chmod(out, 0o600)
    return out


def test_retention_keeps_what_is_held_and_verify_proves_the_rest(history: History) -> None:
    bst = history.bst
    code, said = history.cli("hold", "add", "--user", "carol", "--reason", "litigation 42")
    assert code == 0 and "hold 1 on user carol" in said
    code, said = history.cli("retention", "run", "--dry-run")
    assert code == 0 and said.startswith("retention would delete:")
    assert not history.archive_dir.exists()  # a dry run writes nothing, deletes nothing

    code, said = history.cli("retention", "run", "--json")
    assert code == 0, said
    done = json.loads(said)
    # alice's recordings and query rows of days 0-29 go; carol's (held) stay.
    assert done["recordings_deleted"] == 30 and done["queries_deleted"] == 60
    assert done["events_deleted"] > 0 and done["warnings"] == []
    cut = done["plan"]["cut_to"]
    assert any("legal hold" in why for why in done["plan"]["stopped_by"])

    kept = {e.seq: e for e in bst.store.events()}
    assert min(kept) == cut + 1  # everything up to the cut is gone from the store
    assert all(e.at >= (history.start + timedelta(days=10)).isoformat()[:10] for e in kept.values())
    carol = [e.session_id for e in kept.values() if e.session_id and "carol" in e.session_id]
    assert min(s for s in carol if s) == "pg-carol-10"  # the held user's first day stays
    pruned_at = bst.store.recording_pruned_at()
    assert set(pruned_at) == {f"ssh-alice-{d:02d}" for d in range(30)}
    assert not any(Path(bst.store.session(s).recording_path or "").exists() for s in pruned_at)
    assert Path(bst.store.session("ssh-carol-10").recording_path or "").exists()
    sessions_left = {r["session_id"] for r in bst.store._rows("SELECT session_id FROM queries")}
    assert "pg-carol-10" in sessions_left and "pg-alice-00" not in sessions_left

    assert bst.store.verify_chain().ok
    point = bst.store.checkpoint()
    assert point is not None and point.seq == cut
    first_kept = kept[cut + 1].at  # a review pack's start head, that early: the checkpoint
    assert bst.store.chain_head_before(first_kept) == (point.seq, point.head)
    found, people = bst.store.commit_findings(EVERYTHING, EVERYTHING)
    assert found == [] and people is None
    code, said = history.cli("audit", "verify")
    assert code == 0, said
    assert f"chain starts at checkpoint seq {cut} of " in said
    assert f"archived in {_archive(history).name}" in said

    code, said = history.cli("audit", "verify", "--archive", str(_archive(history)))
    assert code == 0 and said.startswith("archive intact:"), said


def test_a_tampered_archive_fails_on_its_own(history: History) -> None:
    history.cli("hold", "add", "--user", "carol", "--reason", "litigation 42")
    assert history.cli("retention", "run")[0] == 0
    archive = _archive(history)
    data = archive.read_bytes()
    lines = data.splitlines(keepends=True)
    at = data.index(b"session.opened")
    byte = _tampered(archive, "byte", data[:at] + b"S" + data[at + 1 :])
    dropped = _tampered(archive, "dropped", b"".join(lines[:3] + lines[4:]))
    seal = json.loads(lines[-1])
    seal["seal"]["sig"] = "0" * 64
    forged = _tampered(archive, "forged",
                       b"".join(lines[:-1]) + json.dumps(seal).encode() + b"\n")  # fmt: skip
    for bad, why in ((byte, "edited"), (dropped, "edited"), (forged, "not signed")):
        code, said = history.cli("audit", "verify", "--archive", str(bad))
        assert code != 0 and said.startswith("ARCHIVE DOES NOT VERIFY") and why in said, said


def test_replay_of_a_pruned_recording_says_pruned_and_the_review_lists_it(
    history: History,
) -> None:
    history.cli("hold", "add", "--user", "carol", "--reason", "litigation 42")
    assert history.cli("retention", "run")[0] == 0
    with pytest.raises(UsageError, match="pruned by retention at"):
        history.cli("replay", "ssh-alice-00")
    week = week_of(history.end.date(), "UTC")
    facts = collect(history.bst.store, week, history.end)
    config = load_config(history.bst.home / "bastion.toml")
    titles = [f.title for f in run_rules(facts, config)]  # the weekly review's rules
    assert any("put a legal hold on user carol" in t and "litigation 42" in t for t in titles)
    assert any(t.startswith("retention deleted 30 recordings") for t in titles)
    assert any(t.startswith("retention deleted 60 queries") for t in titles)
    assert any(" events (archived in bastion-archive-" in t for t in titles)


def test_a_planted_checkpoint_fails_verify(history: History) -> None:
    """Someone with the store's files plants a checkpoint to excuse deleting the chain's start:
    no chained retention.checkpoint names it, so verify fails."""
    bst = history.bst
    head = bst.store.events(after=4, limit=1)[0]
    with bst.store._write(chained=False) as conn:
        conn.execute(
            "INSERT INTO chain_checkpoints (seq, head, cut_at, made_at, archive,"
            " archive_sha256, node, sig) VALUES (?,?,?,?,?,?,?,?)",
            (head.seq, head.row_hash, head.at, head.at, "x", "0" * 64, "n", "0" * 64),
        )
        conn.execute("DELETE FROM audit_events WHERE seq <= ?", [head.seq])
    verdict = bst.store.verify_chain()
    assert not verdict.ok and "checkpoint" in verdict.problem
    assert history.cli("audit", "verify")[0] != 0


def test_releasing_a_hold_needs_a_reason_and_lets_retention_go_on(history: History) -> None:
    history.cli("hold", "add", "--user", "carol", "--reason", "litigation 42")
    with pytest.raises(UsageError, match="reason"):
        history.cli("hold", "release", "1", "--reason", " ")
    code, said = history.cli("hold", "release", "1", "--reason", "case closed")
    assert code == 0 and "released" in said
    code, said = history.cli("hold", "list", "--all", "--json")
    [hold] = json.loads(said)
    assert hold["release_reason"] == "case closed" and hold["released_by"].startswith("cli:")
    assert history.cli("retention", "run")[0] == 0
    assert "ssh-carol-10" in history.bst.store.recording_pruned_at()
    assert history.cli("audit", "verify")[0] == 0


def test_a_period_under_thirty_days_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bastion.toml"
    path.write_text('[retention]\nevents = "1d"\narchive_dir = "/tmp/a"\n'
                    'recordings = "1d"\nqueries = "1d"\n')  # fmt: skip
    with pytest.raises(ConfigError, match=r"retention\.recordings: '1d' is under the 30-day"):
        load_config(path)
    path.write_text('[retention]\nevents = "40d"\narchive_dir = "/tmp/a"\nrecordings = "90d"\n')
    with pytest.raises(ConfigError, match=r"retention\.recordings: must be set and at most"):
        load_config(path)
    path.write_text('[retention]\nqueries = "40d"\n')
    with pytest.raises(ConfigError, match=r"retention\.archive_dir: must be set"):
        load_config(path)


def test_serve_prunes_on_one_node_at_a_time(history: History) -> None:
    bst = history.bst
    assert bst.store.take_lease(LEASE, "node-2", timedelta(hours=1)) is not None
    run_once(bst.core)  # node-2 holds the lease: this node leaves it alone
    assert bst.store.recording_pruned_at() == {} and not history.archive_dir.exists()
    assert bst.store.release_lease(LEASE, "node-2")
    run_once(bst.core)
    assert len(bst.store.recording_pruned_at()) == 30 + 20  # no hold: carol's days 10-29 too
    assert bst.store.take_lease(LEASE, "node-2", timedelta(hours=1)) is not None  # let go


def test_a_chain_that_does_not_verify_is_never_pruned(history: History) -> None:
    """Fail closed: with an old event edited (by someone with the store), nothing goes."""
    bst = history.bst
    with bst.store._write(chained=False) as conn:
        conn.execute("DROP TRIGGER audit_events_no_update" if conn.dialect == "sqlite" else
                     "ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update")  # fmt: skip
        conn.execute("UPDATE audit_events SET actor = 'mallory' WHERE seq = 5")
    with pytest.raises(StoreError, match="retention refused: the audit chain does not verify"):
        history.cli("retention", "run")
    assert bst.store.recording_pruned_at() == {} and not history.archive_dir.exists()
    assert bst.store.checkpoint() is None


def test_the_export_low_water_holds_the_cut_back(history: History) -> None:
    """The hook for the SIEM export: events not yet delivered are never cut."""
    bst = history.bst
    runner = Runner(bst.store, bst.box, bst.config.retention, "node-1", "test",
                    low_water=lambda: 12)  # fmt: skip
    done = runner.run()
    assert done.plan.cut_to == 12 and done.events_deleted == 12
    assert any("not yet exported" in why for why in done.plan.stopped_by)
    assert bst.store.verify_chain().ok


def test_an_export_sink_behind_holds_the_cut_back(history: History) -> None:
    """An enabled [export] sink's cursor (bastion/audit/exporting.py) limits every run, the
    CLI's included: an event the SIEM has not taken is never cut; a sink taken out of the
    config no longer holds retention back."""
    bst = history.bst
    bst.store.export_sinks_configured([("siem", "syslog")])
    assert bst.store.advance_export("siem", 0, 9, None)
    history.cli("retention", "run")
    point = bst.store.checkpoint()
    assert point is not None and point.seq == 9
    bst.store.export_sinks_configured([])  # the sink is gone from the config
    history.cli("retention", "run")
    point = bst.store.checkpoint()
    assert point is not None and point.seq > 9
    assert bst.store.verify_chain().ok


def test_a_hold_on_a_session_keeps_its_recording(history: History) -> None:
    assert history.cli("hold", "add", "--session", "ssh-alice-03", "--reason", "incident 7")[0] == 0
    with pytest.raises(NotFound):
        history.cli("hold", "add", "--target", "nope", "--reason", "x")
    with pytest.raises(UsageError, match="exactly one"):
        history.cli("hold", "add", "--user", "alice", "--target", "web-1", "--reason", "x")
    assert history.cli("retention", "run")[0] == 0
    pruned = history.bst.store.recording_pruned_at()
    assert "ssh-alice-03" not in pruned and "ssh-alice-04" in pruned
    assert history.cli("audit", "verify")[0] == 0


def test_a_hold_deleted_from_the_table_behind_the_chain_stops_retention(history: History) -> None:
    """An admin with the store's files deletes the hold's row to have carol's evidence pruned:
    the chain still shows the hold, so retention refuses and deletes nothing."""
    history.cli("hold", "add", "--user", "carol", "--reason", "litigation 42")
    with history.bst.store._write(chained=False) as conn:
        conn.execute("DELETE FROM legal_holds")
    with pytest.raises(StoreError, match="hold 1 on user carol was never released"):
        history.cli("retention", "run")
    assert history.bst.store.recording_pruned_at() == {} and not history.archive_dir.exists()


def test_pruned_recordings_leave_the_object_store_too(history: History, tmp_path: Path) -> None:
    """Each recording uploaded to S3 (moto_server, a real S3 API) goes from the bucket when it
    is pruned; a held one stays."""
    bst = history.bst
    with MotoS3(tmp_path) as moto:
        moto.start()
        moto.write_credentials(tmp_path / "s3.credentials")
        policy = RecordingsPolicy(url=f"s3://{BUCKET}/node-a", endpoint=moto.endpoint,
                                  credentials_file="s3.credentials")  # fmt: skip
        objects = ObjectStore.from_policy(policy, tmp_path)
        keys = {}
        for sid in ("ssh-alice-01", "ssh-carol-12", "ssh-alice-40"):
            recorded = Path(bst.store.session(sid).recording_path or "")
            name = object_name(recorded)
            assert name is not None
            keys[sid] = objects.key(name)
            objects.put(keys[sid], recorded.read_bytes())
        bst.store.add_hold("user", "carol", "litigation 42", "cli:test")
        Runner(bst.store, bst.box, bst.config.retention, "node-1", "test", objects).run()
        assert objects.head(keys["ssh-alice-01"]) is None  # pruned: gone from the bucket
        assert objects.head(keys["ssh-carol-12"]) is not None  # held
        assert objects.head(keys["ssh-alice-40"]) is not None  # within the period


def test_first_form_query_rows_stay_and_hold_the_cut_back(legacy_history: History) -> None:
    """Rows from before commit events are proven by their own statement events, which would
    call them deleted: retention keeps them, and the chain is not cut past them."""
    history = legacy_history
    code, said = history.cli("retention", "run", "--json")
    assert code == 0, said
    done = json.loads(said)
    assert done["queries_deleted"] == 2 * (30 + 20) - 2 * 5  # days 0-4 are of the first form
    assert any("kept evidence" in why for why in done["plan"]["stopped_by"])
    left = {r["session_id"] for r in history.bst.store._rows("SELECT session_id FROM queries")}
    assert {f"pg-alice-{d:02d}" for d in range(5)} <= left and "pg-alice-05" not in left
    assert history.cli("audit", "verify")[0] == 0


def test_a_short_period_allowed_by_override_is_a_high_finding(history: History) -> None:
    """allow_short lets an admin prune after days instead of months: allowed, but the weekly
    review raises every deletion made under it as high."""
    bst = history.bst
    policy = replace(bst.config.retention, recordings="1d", queries="1d", events="2d",
                     allow_short=True)  # fmt: skip
    assert policy.problem() is None
    Runner(bst.store, bst.box, policy, "node-1", "cli:mallory").run()
    facts = collect(bst.store, week_of(history.end.date(), "UTC"), history.end)
    found = [f for f in run_rules(facts, bst.config) if f.rule == "retention_pruned"]
    assert found and all(f.severity == "high" and "allow_short" in f.title for f in found)
