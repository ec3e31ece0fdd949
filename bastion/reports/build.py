"""One week's review built whole: verified, gathered, rendered, signed into a pack, recorded.

`build_week` is what `bastion report weekly` and `bastion serve`'s scheduler both call. The
pack is written beside its final place and renamed into it, so a half-built week is never
found; a week already signed is never rebuilt (its pack is what the sign-off is bound to).
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bastion.audit import Store
from bastion.clock import Clock
from bastion.config import Config
from bastion.errors import Conflict, UsageError
from bastion.identity.sealing import SecretBox
from bastion.progress import Progress, quiet, terminal_progress  # noqa: F401 - moved there
from bastion.recording.fetch import Fetcher
from bastion.reports.carry import carry
from bastion.reports.gather import gather
from bastion.reports.model import Verification, WeeklyReport
from bastion.reports.pack import manifest_sha256, write_pack
from bastion.reports.querycheck import query_log_problem
from bastion.reports.recordcheck import recording_problems
from bastion.reports.render_csv import render_csv
from bastion.reports.render_html import render_html
from bastion.reports.render_json import render_json
from bastion.reports.render_sqlite import render_sqlite
from bastion.reports.resend import PackOnDisk
from bastion.reports.sessioncheck import session_log_problem
from bastion.reports.signing import ensure_key
from bastion.reports.week import Week

FORMATS = ("html", "json", "csv", "sqlite")


class Sources(Protocol):
    """What a build reads: the store, the settings, the secrets box, the clock (Core or App)."""

    @property
    def store(self) -> Store: ...

    @property
    def config(self) -> Config: ...

    @property
    def box(self) -> SecretBox: ...

    @property
    def clock(self) -> Clock: ...


@dataclass(frozen=True)
class Built(PackOnDisk):
    """A week's review as written: its pack, what delivery sends of it, how many findings."""

    findings: int


def verify_week(
    store: Store, box: SecretBox, week: Week, fetcher: Fetcher | None = None
) -> Verification:
    """The whole chain, the week's query log and sessions against it, and every recording of
    the week against the hash the chain holds."""
    with ThreadPoolExecutor(3, thread_name_prefix="verify") as pool:
        return verifying(pool, store, box, week, fetcher)()


def verifying(
    pool: ThreadPoolExecutor, store: Store, box: SecretBox, week: Week,
    fetcher: Fetcher | None = None,
) -> Callable[[], Verification]:  # fmt: skip
    """Start verifying the week in the pool (the chain's walk and the query log's comparison
    run in compiled code beside the gathering, off the GIL on a SQLite store); the returned
    call waits for the verdict."""
    verdict = pool.submit(store.verify_chain)
    query_log = pool.submit(query_log_problem, store, week)
    session_log = pool.submit(session_log_problem, store, week)
    indexes = pool.submit(store.index_problem)

    def result() -> Verification:
        walked = verdict.result()
        chain = "intact" if walked.ok else walked.problem or "the chain does not verify"
        differs = query_log.result() or session_log.result() or indexes.result()
        if walked.ok and differs:
            chain = differs
        checked, failed = recording_problems(store, box, week, walked.head_seq, fetcher)
        return Verification(chain, checked, failed)

    return result


def render(report: WeeklyReport, formats: Sequence[str] = FORMATS) -> dict[str, bytes]:
    """The pack's files, by name, in the formats asked for."""
    files: dict[str, bytes] = {}
    if "html" in formats:
        files["report.html"] = render_html(report)
    if "json" in formats:
        files["report.json"] = render_json(report)
    if "csv" in formats:
        files.update(render_csv(report))
    if "sqlite" in formats:
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "evidence.db"
            render_sqlite(report, path)
            files["evidence.db"] = path.read_bytes()
    return files


def summary_line(report: WeeklyReport) -> str:
    """Counts only, never names: it goes to the webhook and the mail's subject."""
    values = {m.key: m.this_week for m in report.summary}
    high = sum(1 for f in report.findings if f.severity == "high")
    sessions = sum(values.get(f"sessions_{door}", 0) for door in ("ssh", "postgres", "web"))
    people = int(values.get("people_active", 0))
    return (f"{report.provenance.week}: {people} people, {int(sessions)} sessions,"
            f" {len(report.findings)} findings ({high} high)")  # fmt: skip


def build_week(
    sources: Sources, week: Week, *, actor: str = "bastion", out: Path | None = None,
    formats: Sequence[str] = FORMATS, progress: Progress = quiet,
) -> Built:  # fmt: skip
    """Build, sign and record one week's review; its pack lands in `out` or paths.reports."""
    store, config = sources.store, sources.config
    if any(f not in FORMATS for f in formats) or not formats:
        raise UsageError(f"formats are {', '.join(FORMATS)}")
    signed = {w.week: w for w in store.report_weeks()}.get(week.label)
    if signed is not None and signed.signed_at is not None:
        raise Conflict(f"week {week.label} is signed already; its pack stands as signed")
    key = ensure_key(config.paths.report_signing_key, store, actor)
    progress(f"{week.label}: verifying the audit chain and the week's recordings,"
             " and gathering the week")  # fmt: skip
    with ThreadPoolExecutor(3, thread_name_prefix="verify") as pool, Fetcher(config) as fetcher:
        verification = verifying(pool, store, sources.box, week, fetcher)
        report = gather(store, config, week, now=sources.clock.now(), verification=verification,
                        carried=carry(store, config, sources.clock, week.label))  # fmt: skip
    progress(f"{week.label}: rendering {', '.join(formats)}")
    files = render(report, formats)
    recordings = {str(row[0]): str(row[10]) for row in report.tables["sessions"].rows
                  if row[10]}  # fmt: skip
    target = Path(out) if out is not None else config.paths.reports / week.label
    progress(f"{week.label}: signing the pack into {target}")
    building = target.parent / f".{target.name}.building-{secrets.token_hex(4)}"
    write_pack(building, files, week=week.label, chain_start=report.provenance.chain_start,
               chain_end=report.provenance.chain_end, counts=report.provenance.counts,
               recordings=recordings, key=key, now=sources.clock.now())  # fmt: skip
    _put_in_place(building, target)
    digest = manifest_sha256(target)
    store.record_report_week(week.label, report.findings, manifest_sha256=digest,
                             pack_path=str(target.resolve()))  # fmt: skip
    csvs = {name: data for name, data in files.items() if name.endswith(".csv")}
    return Built(week.label, target, files.get("report.html", b""), files.get("report.json", b""),
                 csvs, digest, summary_line(report), len(report.findings))  # fmt: skip


def _put_in_place(building: Path, target: Path) -> None:
    """Rename the new pack to its place; an earlier (unsigned) build there is replaced."""
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.replaced-{secrets.token_hex(4)}"
        target.rename(old)
    building.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
