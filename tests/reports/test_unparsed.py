"""Sessions whose input the command log did not read as shell command lines are named (store
level; the real door's cases are in tests/ssh/test_weekly_commands.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.audit import CommandLine, FileOp
from bastion.reports.gather import gather
from tests.reports.test_gather import INTACT, WEEK, Week, at, by_rule, load_config_text


def _session(w: Week, grant: int, sid: str, lines: list[CommandLine], stdin: int) -> None:
    w.session(sid, "alice", "web-1", grant, start=at(18, 10), minutes=5)
    w.store.log_commands(sid, lines)
    w.store.log_file_ops(sid, [FileOp(at(18, 10, 5), "stream", "stdin", None, stdin, "ab" * 32)])


@pytest.mark.parametrize(("lines", "why"), [
    ([CommandLine(at(18, 10), 0, "python3"),
      CommandLine(at(18, 10), 0, "import os; os.system('rm -rf /srv')", True, "from stdin")],
     "python3"),
    ([CommandLine(at(18, 10), 0, "perl -w"), CommandLine(at(18, 10), 0, "unlink glob '*'", True)],
     "perl"),
    ([CommandLine(at(18, 10), 0, "vim /etc/hosts"),
      CommandLine(at(18, 10), 0, "ihello", True, "full-screen program")], "full-screen program"),
    ([CommandLine(at(18, 10), 0, "", True, "from stdin, no terminal; binary data from here on")],
     "binary data"),
    ([CommandLine(at(18, 10), 0, "cat > /tmp/run.sh")], "cat > /tmp/run.sh"),
])  # fmt: skip
def test_input_not_read_as_shell_lines_is_named(
    tmp_path: Path, lines: list[CommandLine], why: str
) -> None:
    w = Week(tmp_path)
    grant = w.grant("alice", "web-1", at(16, 8), 100, "INC-9 look at the hosts file")
    _session(w, grant, "s-in", lines, 4096)
    w.when(at(24, 9))
    report = gather(w.store, load_config_text(tmp_path), WEEK, now=w.clock.now(),
                    verification=INTACT)  # fmt: skip
    [unread] = by_rule(report)["unparsed_input"]
    [listed] = [e for e in unread.evidence if e.kind == "session"]
    assert listed.ref == "s-in" and why in listed.text and "4096 bytes" in listed.text
    assert unread.grants == (grant,) and "carol" in unread.involved


@pytest.mark.parametrize("lines", [
    [CommandLine(at(18, 10), 0, "bash -s"), CommandLine(at(18, 10), 0, "ls", True, "from stdin")],
    [CommandLine(at(18, 10), 0, "ls -la", True)],
    [CommandLine(at(18, 10), 0, "scp -t /srv/upload")],
    [CommandLine(at(18, 10), 0, "rsync --server -vlogDtpre.iLsfxCIvu . /srv/x")],
])  # fmt: skip
def test_input_read_as_shell_lines_or_transfer_data_is_not_named(
    tmp_path: Path, lines: list[CommandLine]
) -> None:
    w = Week(tmp_path)
    grant = w.grant("alice", "web-1", at(16, 8), 100, "INC-9 look at the hosts file")
    _session(w, grant, "s-in", lines, 4096)
    w.when(at(24, 9))
    report = gather(w.store, load_config_text(tmp_path), WEEK, now=w.clock.now(),
                    verification=INTACT)  # fmt: skip
    assert "unparsed_input" not in by_rule(report)
