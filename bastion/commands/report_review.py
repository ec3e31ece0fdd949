"""`bastion report review`, `report sign` and `report findings`: the weekly review's sign-off."""

from __future__ import annotations

import argparse

from bastion.access.reviews import Reviews
from bastion.commands.app import App, proven
from bastion.reports import signoff

FINDING_COLUMNS = ["id", "severity", "rule", "subject", "state", "reviewed_by", "title"]


def _reviews(app: App) -> Reviews:
    return Reviews(app.store, app.config, app.clock)


def review(app: App, args: argparse.Namespace) -> int:
    """A proven admin or reviewer marks one finding ok or flag, with a note."""
    _reviews(app).label(args.week)  # a typo costs no code
    reviewer = proven(app, args.as_user, "reviews")
    done = signoff.review(_reviews(app), app.identity, args.week, args.finding,
                          reviewer=reviewer, verdict=args.verdict, note=args.note, code=None,
                          via=app.actor)  # fmt: skip
    app.emit(done.public(), f"week {done.week}: finding {done.id} ({done.rule}) marked"
             f" {done.state} by {done.reviewed_by}")  # fmt: skip
    return 0


def sign(app: App, args: argparse.Namespace) -> int:
    """A proven admin or reviewer signs a fully reviewed week, bound to its pack's manifest."""
    _reviews(app).label(args.week)
    signer = proven(app, args.as_user, "signs")
    done = signoff.sign(_reviews(app), app.identity, args.week, signer, code=None, via=app.actor)
    app.emit(done.public(), f"week {done.week} signed by {done.signed_by}; manifest SHA-256"
             f" {done.manifest_sha256}")  # fmt: skip
    return 0


def findings(app: App, args: argparse.Namespace) -> int:
    """A week's findings and the decisions on them."""
    found = signoff.week_findings(_reviews(app), args.week, args.state)
    rows = [f.public() for f in found.findings]
    app.table(rows, FINDING_COLUMNS, f"week {found.week.week} has no findings")
    return 0
