"""The review's finding about what its command rules could not judge: SSH sessions whose input
the command log did not read as commands; pure.

The command rules (destructive commands, escalation) read the SSH door's command log: lines
typed at a terminal, an exec's command line, and the lines of a script sent to a shell on
stdin (`ssh host bash < script`). Input that is not in it: keys typed into a full-screen
program (an editor's or pager's shell escape typed there is logged, but the rest of what was
typed is not a command line), stdin that was binary or had lines too long, stdin read by an
interpreter that is not a shell (`ssh host python3 < x.py`: logged, but as code), and stdin
an exec sent to a program that does not take it as shell lines (`ssh host 'tee s | sh' <
script`, `cat > run.sh`). The weekly review does not decrypt recordings to read them again:
with 20,000 sessions a week, that would cost the size of every recording (a copied dump
included), unbounded, against a build that must stay in seconds. Instead each person with
such sessions gets one low finding listing them (at most MOST, with the input's size and
why), so the reviewer knows what was not judged and can replay it.

Known file-transfer programs whose stdin is data (legacy scp, rsync's server, sftp-server,
git's packs) are not listed: that data is counted as bytes moved instead.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from bastion.clock import parse_iso
from bastion.config import Config
from bastion.reports.facts import Facts
from bastion.reports.findings import grant_people
from bastion.reports.model import Evidence, Finding, utc
from bastion.ssh.streams import INTERPRETERS, SHELLS, command_argvs

MOST = 20  # sessions listed per person
_NOT_READ = ("full-screen program", "binary data", "line too long")
_DATA = {"scp": ("-t", "-f"), "rsync": ("--server",), "sftp-server": (),
         "git-upload-pack": (), "git-receive-pack": (), "git-upload-archive": ()}  # fmt: skip


def _data_transfer(command: str) -> bool:
    """An exec of a file-transfer program alone, whose stdin is its protocol's data."""
    argvs = command_argvs(command)
    if not argvs or len({tuple(a) for a in argvs}) != 1:
        return False
    name, args = argvs[0][0].rsplit("/", 1)[-1], argvs[0][1:]
    flags = _DATA.get(name)
    return flags is not None and (not flags or any(f in args for f in flags))


def _code_reader(command: str) -> str | None:
    """The interpreter other than a shell (python, perl ...) an exec runs, if any: the lines
    it reads from stdin are logged, but they are its code, not shell command lines."""
    names = {argv[0].rsplit("/", 1)[-1] for argv in command_argvs(command) or [] if argv}
    return next(iter(sorted(names & (INTERPRETERS - SHELLS))), None)


def _why(size: int, commands: list[dict[str, Any]]) -> str | None:
    read = [c for c in commands if c["reconstructed"]]
    notes = sorted({n for c in read for n in _NOT_READ if n in (c["uncertain"] or "")})
    if notes:
        return f"{size} bytes of input, not all read as command lines ({', '.join(notes)})"
    ran = next((c["command"] for c in commands if not c["reconstructed"]), None)
    if ran is not None and (code := _code_reader(ran)):
        return f"{size} bytes of input were {code} code, not shell command lines"
    if not read and ran is not None and not _data_transfer(ran):
        shown = ran if len(ran) <= 200 else ran[:200] + "..."
        return f"{size} bytes of input went to {shown!r}, which does not read it as command lines"
    return None


def unparsed_input(facts: Facts, config: Config) -> list[Finding]:
    """One low finding per person listing their sessions whose input was not judged."""
    commands: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in facts.commands:
        commands[row["session_id"]].append(row)
    stdin = {op["session_id"]: int(op["bytes"] or 0) for op in facts.file_ops
             if op["operation"] == "stream" and op["path"] == "stdin"}  # fmt: skip
    per_person: dict[str, list[tuple[dict[str, Any], str]]] = defaultdict(list)
    for session in facts.sessions:
        size = stdin.get(session["id"], 0)
        why = _why(size, commands.get(session["id"], [])) if size > 0 else None
        if why:
            per_person[session["person"] or "?"].append((session, why))
    return [_finding(facts, person, found) for person, found in sorted(per_person.items())]


def _finding(facts: Facts, person: str, found: list[tuple[dict[str, Any], str]]) -> Finding:
    listed = [Evidence("session", s["id"], utc(parse_iso(s["started_at"])),
                       f"{s['target']}: {why}", s["id"], 0.0, f"bastion replay {s['id']}")
              for s, why in found[:MOST]]  # fmt: skip
    more = f" ({len(found) - MOST} more not listed)" if len(found) > MOST else ""
    summary = Evidence("report", f"unparsed_input:{person}:{facts.week.label}", None,
                       f"{len(found)} session(s) with input not judged{more}")  # fmt: skip
    grants = sorted({int(s["grant_id"]) for s, _ in found if s["grant_id"]})
    return Finding(
        "unparsed_input", "low",
        f"{person} had {len(found)} session(s) whose input the command log did not read:"
        " their commands were not judged", "Replay them (bastion replay SESSION) to see what"
        " ran; the weekly review reads the command log, not the recordings.",
        (summary, *listed), subject=person, grants=tuple(grants),
        involved=tuple(sorted({who for g in grants for who in grant_people(facts, g)})),
    )  # fmt: skip
