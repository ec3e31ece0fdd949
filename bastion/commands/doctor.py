"""`bastion doctor`: check a host before (and while) it serves, one line per check.

Each check is a small function from the `Host` (the configuration `serve` reads, the clock
and the thresholds) to findings; `CHECKS` lists them in the order they print, so a check is
added by writing one more function and naming it there. Doctor only reads: it never opens a
file for writing, never migrates the store, never sends an anchor, and never prints a secret
(keys and passwords are checked by their files' modes, never read out).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from bastion.clock import Clock
from bastion.commands.app import App
from bastion.config import Config, load_config
from bastion.errors import BastionError, Exit, UsageError

Status = Literal["ok", "warn", "FAIL"]


@dataclass(frozen=True)
class Finding:
    """One check's verdict: what was found, and for anything not ok, what to do about it."""

    check: str
    status: Status
    text: str
    fix: str = ""


def ok(check: str, text: str) -> Finding:
    return Finding(check, "ok", text)


def warn(check: str, text: str, fix: str) -> Finding:
    return Finding(check, "warn", text, fix)


def fail(check: str, text: str, fix: str) -> Finding:
    return Finding(check, "FAIL", text, fix)


@dataclass(frozen=True)
class Thresholds:
    """Free space below which a recordings or store volume warns, and fails: a fraction of
    the volume (0.10) or a number of bytes."""

    warn_free: float | int = 0.10
    fail_free: float | int = 0.02
    connect_timeout: float = 3.0  # seconds, for each target and sink


@dataclass(frozen=True)
class Host:
    """What every check reads."""

    config: Config
    clock: Clock
    limits: Thresholds

    @property
    def home(self) -> Path:
        """The state directory: the config file's, which relative paths are taken from."""
        return self.config.path.parent


Check = Callable[[Host], list[Finding]]


def checks() -> list[Check]:
    """Every check, in the order they print (imported here: each module imports Finding)."""
    from bastion.commands import doctor_export, doctor_files, doctor_host  # noqa: PLC0415

    return [
        doctor_files.config_file,
        doctor_files.directories,
        doctor_files.key_files,
        doctor_files.public_files,
        doctor_files.tls_certificate,
        doctor_host.clock_sync,
        doctor_host.free_disk,
        doctor_host.store,
        doctor_host.targets,
        doctor_host.anchor_sinks,
        doctor_export.export_sinks,
        doctor_host.service_unit,
    ]


def run_checks(host: Host, selected: Sequence[Check] | None = None) -> list[Finding]:
    """Every check's findings; a check that breaks is a FAIL of its own, never a traceback."""
    found: list[Finding] = []
    for check in selected if selected is not None else checks():
        name = check.__name__.replace("_", " ")
        try:
            found.extend(check(host))
        except BastionError as exc:
            found.append(fail(name, exc.message, "fix what it says, then run doctor again"))
        except OSError as exc:
            found.append(fail(name, f"could not be checked: {exc.strerror or exc}",
                              "fix what it says, then run doctor again"))  # fmt: skip
    return found


def size_limit(text: str) -> float | int:
    """A threshold from the command line: "10%" (of the volume) or bytes with a unit
    ("500M", "20G"); UsageError otherwise."""
    value = text.strip().upper()
    try:
        if value.endswith("%"):
            share = float(value[:-1]) / 100
            if not 0 <= share <= 1:
                raise ValueError
            return share
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
        scale = units.get(value.rstrip("IB")[-1:], 1) if value[-1:].isalpha() else 1
        number = int(value.rstrip("KMGTIB")) * scale
        if number < 0:
            raise ValueError
        return number
    except (ValueError, IndexError):
        raise UsageError(f"{text!r} is not a free-space threshold: use 10% or 5G") from None


def line(finding: Finding) -> str:
    text = f"{finding.status:<4}  {finding.check}: {finding.text}"
    return text if not finding.fix else f"{text}\n      fix: {finding.fix}"


def doctor(app: App, args: argparse.Namespace) -> int:
    """Check the host, print one line per finding (and the fix for each that is not ok);
    non-zero exit when any check fails."""
    if not 0 < args.connect_timeout <= 60:
        raise UsageError(f"--connect-timeout {args.connect_timeout:g}: give 0 < seconds <= 60")
    limits = Thresholds(size_limit(args.warn_free), size_limit(args.fail_free),
                        args.connect_timeout)  # fmt: skip
    try:
        config = load_config(app.config_path)
    except BastionError as exc:
        findings = [
            fail("config", exc.message, f"correct {app.config_path}, then run doctor again")
        ]
    else:
        findings = [
            ok("config", f"{config.path} is valid"),
            *run_checks(Host(config, app.clock, limits)),
        ]
    failed = sum(1 for f in findings if f.status == "FAIL")
    warned = sum(1 for f in findings if f.status == "warn")
    summary = f"{failed} failed, {warned} warnings, {len(findings)} checks (uid {os.geteuid()})"
    app.emit({"findings": [asdict(f) for f in findings], "failed": failed, "warnings": warned},
             "\n".join([*(line(f) for f in findings), summary]))  # fmt: skip
    return Exit.DENIED if failed else Exit.OK
