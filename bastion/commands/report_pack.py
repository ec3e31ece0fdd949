"""`bastion report verify DIR` and `bastion report key`: check a review pack; show the key."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bastion.audit.chain import Verdict
from bastion.commands.app import App
from bastion.commands.audit import walk_chain
from bastion.commands.reviewing import record_verification
from bastion.errors import Exit, NotFound
from bastion.progress import Progress, quiet, terminal_progress
from bastion.reports.facts import collect
from bastion.reports.pack import Manifest, PackVerdict, Recount, head_problem, verify_pack
from bastion.reports.signing import (
    ensure_key,
    key_id,
    load_private_key,
    load_public_key,
    public_pem,
)
from bastion.reports.tables import build_tables
from bastion.reports.week import parse_week

AUDITOR_GUIDE = """\
To check a review pack without the bastion, save the key above as report-key.pem, then in
the pack's directory:
  openssl pkeyutl -verify -pubin -inkey report-key.pem -rawin -in manifest.json \\
      -sigfile manifest.sig
  jq -r '.files[] | "\\(.sha256)  \\(.name)"' manifest.json | sha256sum --strict -c -
The first prints "Signature Verified Successfully"; the second "OK" for every file. Also check
that the directory holds nothing the manifest does not list (besides manifest.json and
manifest.sig). The key's id, which each manifest names as key_id:
  openssl pkey -pubin -in report-key.pem -outform DER | sha256sum
"""


def report_key(app: App, args: argparse.Namespace) -> int:
    """Print the public half of the report signing key (made now if this bastion has none)."""
    key = ensure_key(app.config.paths.report_signing_key, app.store, app.actor).public_key()
    pem = public_pem(key)
    app.emit({"public_key_pem": pem, "key_id": key_id(key), "guide": AUDITOR_GUIDE}, pem)
    if not app.as_json:  # on stderr, so `bastion report key > report-key.pem` is the key alone
        sys.stderr.write(f"key id {key_id(key)}\n{AUDITOR_GUIDE}")
    return Exit.OK


def _public_key(app: App, args: argparse.Namespace) -> Ed25519PublicKey:
    if args.key is not None:
        return load_public_key(args.key)
    return load_private_key(app.config.paths.report_signing_key).public_key()


def week_counts(app: App, progress: Progress = quiet) -> Recount:
    """The week's counts as the store holds them now, to compare with the pack's: each
    table's rows gathered again, and the findings recorded when the week was built."""

    def recount(label: str) -> dict[str, int]:
        progress(f"{label}: counting the week's rows in the store again")
        policy = app.config.reports
        week = parse_week(label, policy.timezone, policy.week_starts)
        tables = build_tables(collect(app.store, week, app.clock.now()))
        counts = {key: len(table.rows) for key, table in tables.items()}
        counts["findings"] = len(app.store.report_findings(label))
        return counts

    return recount


@dataclass
class Walked:
    """The store as verify_pack reads it, the chain walk shown as progress and its verdict
    kept (to know whether the chain's end is in doubt before anything is written to it)."""

    app: App
    progress: Progress
    verdict: Verdict | None = None

    def verify_chain(self) -> Verdict:
        self.verdict = walk_chain(self.app, self.progress)
        return self.verdict

    def mac_at(self, seq: int) -> str | None:
        return self.app.store.mac_at(seq)

    def chained_recordings(
        self, up_to: int, session_id: str | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        return self.app.store.chained_recordings(up_to, session_id)


def report_verify(app: App, args: argparse.Namespace) -> int:
    """Check a pack's signature and files and, unless --no-store, the store behind it; with
    the store, the check is chained as `audit.verified`."""
    directory = Path(args.directory)
    if not directory.is_dir():
        raise NotFound(f"{directory} is not a directory")
    public = _public_key(app, args)
    progress = quiet if app.as_json else terminal_progress()
    store = None if args.no_store else Walked(app, progress)
    recount = None if args.no_store else week_counts(app, progress)
    progress(f"{directory}: checking the signature and every file of the pack")
    verdict = verify_pack(directory, public, store, recount)
    data = _verdict_data(verdict, directory, public)
    if store is not None:
        _record(app, verdict, store.verdict, directory)
    if not verdict.ok:
        app.emit(data, f"REVIEW PACK NOT INTACT: {verdict.problem}")
        return Exit.TAMPERED
    app.emit(data, _intact_text(verdict, public))
    return Exit.OK


def _record(app: App, verdict: PackVerdict, chain: Verdict | None, directory: Path) -> None:
    """`audit.verified` for this pack and its result."""
    manifest = verdict.manifest
    detail = {"command": "report verify", "ok": verdict.ok,
              "result": "intact" if verdict.ok else verdict.problem,
              "week": manifest.week if manifest else None, "pack": str(directory.resolve()),
              "from_seq": manifest.chain_start.seq if manifest else None,
              "to_seq": manifest.chain_end.seq if manifest else None,
              "chain_walked_to": chain.head_seq if chain else None,
              "counts_checked": verdict.counts_checked}  # fmt: skip
    record_verification(app, detail, end_in_doubt=_end_in_doubt(app, manifest, chain))


def _end_in_doubt(app: App, manifest: Manifest | None, chain: Verdict | None) -> bool:
    """The walk found the chain broken, or without the pack's heads (cut or rewritten): it
    is left as found. Not walked (the pack failed first): the store is as in any command."""
    if chain is None or manifest is None:
        return False
    if not chain.ok:
        return True
    heads = (("start", manifest.chain_start), ("end", manifest.chain_end))
    return any(head_problem(which, head, chain.head_seq, app.store.mac_at)
               for which, head in heads)  # fmt: skip


def _verdict_data(
    verdict: PackVerdict, directory: Path, public: Ed25519PublicKey
) -> dict[str, object]:
    manifest = verdict.manifest
    return {
        "ok": verdict.ok,
        "problem": verdict.problem,
        "directory": str(directory),
        "key_id": key_id(public),
        "week": manifest.week if manifest else None,
        "files": len(manifest.files) if manifest else None,
        "chain_start": manifest.chain_start.seq if manifest else None,
        "chain_end": manifest.chain_end.seq if manifest else None,
        "store_checked": verdict.store_checked,
        "counts_checked": verdict.counts_checked,
    }


def _intact_text(verdict: PackVerdict, public: Ed25519PublicKey) -> str:
    manifest = verdict.manifest
    assert manifest is not None
    text = (
        f"review pack {manifest.week} intact: signed by key {key_id(public)[:16]},"
        f" {len(manifest.files)} files match the manifest"
    )
    if verdict.store_checked:
        text += (
            f"; the chain holds its heads (events {manifest.chain_start.seq} and"
            f" {manifest.chain_end.seq}) and its {len(manifest.recordings)} recording hashes"
        )
    else:
        text += "; the store was not checked"
    if not verdict.counts_checked:
        text += "; counts not re-counted from the store"
    return text
