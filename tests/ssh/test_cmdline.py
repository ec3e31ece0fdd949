"""The command detector on keystrokes and echo: editing keys, Tab, history, every listed limit."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from bastion.ssh import cmdline
from bastion.ssh.cmdline import CommandDetector, ReconstructedCommand

UP, LEFT, RIGHT, HOME, END, DELETE = "\x1b[A", "\x1b[D", "\x1b[C", "\x1b[H", "\x1b[F", "\x1b[3~"
PROMPT = "user@web-1:~$ "


class Tty:
    """A scripted terminal: keys go in, the target's echo comes back, commands are collected."""

    def __init__(self, prompt: str = PROMPT, max_line: int = cmdline.MAX_LINE) -> None:
        self.detector = CommandDetector(max_line)
        self.now = 0.0
        self.got: list[ReconstructedCommand] = []
        self.out(prompt)

    def key(self, keys: str | bytes, echo: str | bytes | None = None) -> Tty:
        """Type keys; the target echoes `echo` (by default the keys themselves)."""
        self.now += 1
        data = keys.encode() if isinstance(keys, str) else keys
        self.got += self.detector.feed_input(data, self.now)
        return self.out(data if echo is None else echo)

    def typed(self, text: str) -> Tty:
        """Type printable text one key at a time, each echoed as a shell would."""
        for ch in text:
            self.key(ch)
        return self

    def out(self, data: str | bytes) -> Tty:
        raw = data.encode() if isinstance(data, str) else data
        if raw:
            self.got += self.detector.feed_output(raw, self.now)
        return self

    def enter(self, output: str = "\r\n" + PROMPT) -> Tty:
        return self.key("\r", output)

    def lines(self) -> list[tuple[str, bool, str | None]]:
        return [(c.text, c.uncertain, c.reason) for c in self.got]


def test_a_typed_line_is_reported_with_the_time_enter_was_pressed() -> None:
    tty = Tty().typed("ls -la /etc").enter()
    assert tty.got == [
        ReconstructedCommand(at=12.0, text="ls -la /etc", uncertain=False, reason=None)
    ]


def test_an_empty_enter_is_no_command() -> None:
    assert Tty().enter().enter().typed("   ").enter().got == []


def test_utf8_split_across_chunks() -> None:
    tty = Tty()
    word = "échelle €".encode()
    for i in range(len(word)):
        tty.key(word[i : i + 1])
    assert tty.enter().lines() == [("échelle €", False, None)]


def test_backspace_both_codes() -> None:
    tty = Tty().typed("lsx").key("\x7f", "\b \b").typed(" -lz").key("\x08", "\b \b").typed("a")
    assert tty.enter().lines() == [("ls -la", False, None)]


def test_ctrl_u_kills_the_line_before_the_cursor_and_ctrl_y_yanks_it() -> None:
    tty = Tty().typed("rm -rf /").key("\x15", "\r\x1b[K" + PROMPT).typed("echo ")
    tty.key("\x19", "rm -rf /")
    assert tty.enter().lines() == [("echo rm -rf /", False, None)]


def test_ctrl_w_kills_the_word_before_the_cursor() -> None:
    tty = Tty().typed("git push --force  ").key("\x17", "\b" * 9 + "\x1b[K").typed("origin")
    assert tty.enter().lines() == [("git push origin", False, None)]


def test_ctrl_k_kills_to_the_end() -> None:
    tty = Tty().typed("ls /etc /tmp").key(LEFT * 5, "\b" * 5).key("\x0b", "\x1b[K")
    assert tty.enter().lines() == [("ls /etc", False, None)]


def test_ctrl_c_discards_the_line() -> None:
    tty = Tty().typed("shutdown now").key("\x03", "^C\r\n" + PROMPT).typed("uptime").enter()
    assert tty.lines() == [("uptime", False, None)]


def test_ctrl_d_on_an_empty_line_is_no_command_and_mid_line_deletes() -> None:
    assert Tty().key("\x04", "logout\r\n").got == []
    tty = Tty().typed("lxs").key(LEFT * 2, "\b\b").key("\x04", "s\x1b[K\b")
    assert tty.enter().lines() == [("ls", False, None)]


def test_cursor_moves_make_inserts_land_in_the_middle() -> None:
    tty = Tty().typed("cat /etc/passwd").key(HOME, "\r" + PROMPT)
    tty.key("sudo ", "sudo cat /etc/passwd" + "\b" * 15).key(END, "\x1b[15C")
    tty.key(LEFT * 6, "\b" * 6).key(DELETE, "\x1b[P").key("P", "Passwd" + "\b" * 5)
    tty.key("\x01", "\r" + PROMPT).key(RIGHT, "s").key("\x05", "\x1b[26C").typed(" | head")
    assert tty.enter().lines() == [("sudo cat /etc/Passwd | head", False, None)]


def test_word_moves_and_alt_keys() -> None:
    tty = Tty().typed("echo one two").key("\x1b[1;5D", "").key("\x1bb", "").typed("zero ")
    tty.key("\x1bf", "").key("\x1bd", "").key("\x1b\x7f", "")
    assert tty.enter().lines() == [("echo zero ", False, None)]


def test_escape_sequence_split_across_chunks() -> None:
    tty = Tty().typed("abc").key("\x1b", "").key("[", "").key("D", "\b").key("X", "Xc\b")
    assert tty.enter().lines() == [("abXc", False, None)]


def test_other_escape_sequences_are_skipped_and_unknown_ones_flagged() -> None:
    tty = Tty().typed("ls").key("\x1bOP", "").key("\x1b[5~", "").enter()
    tty.typed("pwd").key("\x1b[15~", "").enter()
    assert tty.lines() == [("ls", False, None), ("pwd", True, "unsupported key")]


def test_tab_completion_is_learnt_from_the_echo() -> None:
    tty = Tty().typed("sys").key("\t", "temctl ").typed("status").enter()
    assert tty.lines() == [("systemctl status", False, None)]


def test_tab_completion_in_the_middle_of_the_line() -> None:
    tty = Tty().typed("ls /et -l").key(LEFT * 3, "\b\b\b")
    tty.key("\t", "c/ -l\b\b\b").enter()
    assert tty.lines() == [("ls /etc/ -l", False, None)]


def test_tab_with_only_a_bell_changes_nothing() -> None:
    tty = Tty().typed("ls x").key("\t", "\x07").enter()
    assert tty.lines() == [("ls x", False, None)]


def test_tab_without_echo_is_uncertain() -> None:
    tty = Tty().typed("cat /var/log/sys").key("\t\r", "log\r\n")
    assert tty.lines() == [("cat /var/log/sys", True, "tab completion")]


def test_tab_listing_candidates_on_new_rows_is_uncertain() -> None:
    tty = Tty().typed("ls /b").key("\t", "\r\nbin/  boot/\r\n" + PROMPT + "ls /b").enter()
    assert tty.lines() == [("ls /b", True, "tab completion")]


def test_history_recall_takes_the_text_from_the_echo_but_stays_uncertain() -> None:
    tty = Tty().typed("old").key(UP, "\b\b\bsystemctl restart nginx").typed(" -q").enter()
    assert tty.lines() == [("systemctl restart nginx -q", True, "history recall")]


def test_history_recall_without_echo_is_unknown() -> None:
    assert Tty().key(UP + "\r", "").out("\r\n").lines() == [("", True, "history recall")]


def test_reverse_search_is_uncertain() -> None:
    tty = Tty().key("\x12", "\r(reverse-i-search)`': ").typed("ssh").enter()
    assert tty.lines() == [("ssh", True, "history search")]


def test_bracketed_paste_is_literal_text_even_with_newlines() -> None:
    paste = "\x1b[200~for h in a b\r\ndo echo $h\rdone\x1b[201~"
    tty = Tty().key(paste, "for h in a b\r\n> do echo $h\r\n> done").enter()
    assert tty.lines() == [("for h in a b\ndo echo $h\ndone", False, None)]


def test_long_lines_are_cut_and_marked() -> None:
    tty = Tty(max_line=8).typed("echo 0123456789").enter()
    assert tty.lines() == [("echo 012", True, "line too long")]


def test_echo_arriving_after_enter_settles_the_line() -> None:
    tty = Tty().key("whoami\r", "").out("who").out("ami\r\nroot\r\n")
    assert tty.lines() == [("whoami", False, None)]


def test_feeding_in_any_chunks_gives_the_same_commands() -> None:
    script = [
        ("ec", "ec"), ("ho", "ho"), ("\t", "\x07"), (" ü\x1b[D", " ü\b"), ("\x1b[3~", "\x1b[P"),
        ("é\r", "é\r\n" + PROMPT), ("\x1b[A", "echo é"), ("\r", "\r\n" + PROMPT),
        ("ls\x15pwd\r", "ls\r\x1b[K$ pwd\r\n"),
    ]  # fmt: skip
    whole = Tty()
    for keys, echo in script:
        whole.key(keys, echo)
    assert [c.text for c in whole.got] == ["echo é", "echo é", "pwd"]
    check_chunking(script, whole.got)


@given(st.data())
def test_random_chunk_boundaries(data: st.DataObject) -> None:
    script = [("vi", "vi"), ("m\x1b[D\x1b[C", "m\b\x1b[C"), ("\x1b[200~a\rb\x1b[201~\r", "ab\r\n")]
    whole = Tty()
    for keys, echo in script:
        whole.key(keys, echo)
    check_chunking(script, whole.got, data)


def check_chunking(
    script: list[tuple[str, str]],
    expected: list[ReconstructedCommand],
    data: st.DataObject | None = None,
) -> None:
    """Feed the script one byte at a time (or at drawn cut points) and compare."""
    detector, now, got = CommandDetector(), 0.0, []
    got += detector.feed_output(PROMPT.encode(), now)
    for keys, echo in script:
        now += 1
        for raw, feed in (
            (keys.encode(), detector.feed_input),
            (echo.encode(), detector.feed_output),
        ):
            cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(raw) - 1))))) if data else []
            pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
            for piece in pieces if data else [raw[i : i + 1] for i in range(len(raw))]:
                got += feed(piece, now)
    assert got == expected


# The limits listed in the module docstring, one test each: what actually happens.


def test_limit_full_screen_programs_are_marked_and_their_half_lines_dropped() -> None:
    tty = Tty().typed("vim notes").enter("\r\n\x1b[?1049h\x1b[H\x1b[2J~\r\n~\x1b[H")
    tty.key("ihello", "hello").key("\r", "\r\n").key("\x1b", "").typed(":!id").enter("\x1b[H")
    tty.key(":wq\r", ":wq\x1b[?1049l" + PROMPT)  # settled once a later line is echoed
    tty.typed("less log").enter("\r\n\x1b[?1049hline 1\r\n")
    tty.key("/err", "/err").key("q", "\x1b[?1049l" + PROMPT).typed("id").enter()
    assert tty.lines() == [
        ("vim notes", False, None),
        ("hello", True, "full-screen program; read from screen"),  # "i" was not text
        ("!id", True, "unsupported key; full-screen program"),  # ESC : read as Alt-:
        (":wq", True, "full-screen program"),
        ("less log", False, None),
        ("id", False, None),
    ]


def test_limit_full_screen_program_on_the_main_screen_reads_like_a_shell() -> None:
    tty = Tty().typed("nano f").enter("\r\n\x1b[H\x1b[2J  GNU nano\r\n").typed("text").enter("\r\n")
    assert tty.lines() == [("nano f", False, None), ("text", False, None)]


def test_limit_aliases_and_functions_are_logged_as_typed() -> None:
    assert Tty().typed("ll").enter("\r\ntotal 0\r\n" + PROMPT).lines() == [("ll", False, None)]


def test_limit_readline_vi_mode_gives_unsupported_keys() -> None:
    tty = Tty().typed("ls -l").key("\x1b", "\b").key("0", "\r" + PROMPT).key("i", "")
    tty.key("sudo ", "sudo ls -l" + "\b" * 5).enter()
    assert tty.lines() == [("sudo ls -l", True, "unsupported key; read from screen")]


def test_limit_continuation_lines_are_separate_commands() -> None:
    tty = Tty().typed("echo one \\").enter("\r\n> ").typed("two").enter()
    tty.typed("for i in 1 2; do").enter("\r\n> ").typed("echo $i").enter("\r\n> ")
    tty.typed("done").enter()
    assert [c.text for c in tty.got] == [
        "echo one \\",
        "two",
        "for i in 1 2; do",
        "echo $i",
        "done",
    ]


def test_unechoed_input_is_logged_as_typed_and_flagged() -> None:
    tty = Tty().typed("stty -echo").enter().key("cat /etc/shadow", "").key("\r", "")
    tty.out("\r\nroot:*:19000:0:99999:7:::\r\n" + PROMPT)
    assert tty.lines()[1] == ("cat /etc/shadow", True, "not echoed")


def test_a_password_arrives_masked_and_is_logged_masked() -> None:
    tty = Tty().typed("sudo -i").enter("\r\n[sudo] password for alice: ")
    tty.key("*******", "").key("\r", "").out("\r\n").out("root@web-1:~# ")  # as the tap feeds it
    assert tty.lines() == [("sudo -i", False, None), ("*******", True, "not echoed")]


def test_masked_echo_is_read_from_the_screen_never_the_keys() -> None:
    tty = Tty().typed("sudo -s").enter("\r\n[sudo] password for alice: ")
    for ch in "hunter2":
        tty.key(ch, "*")
    assert tty.enter("\r\n").lines()[1] == ("*******", True, "read from screen")


def test_limit_background_output_while_a_password_is_typed_passes_for_echo() -> None:
    tty = Tty().typed("mysql -p").enter("\r\nEnter password: ")
    tty.key("s3cret", "[1]+ Done   sleep 3; echo status report text").enter("\r\n")
    assert tty.lines() == [("mysql -p", False, None), ("s3cret", False, None)]


def test_limit_lines_sent_in_one_batch_with_late_echo() -> None:
    tty = Tty().key("uptime\rdate\r", "").out("uptime\r\n 10:00 up 1 day\r\n" + PROMPT + "date\r\n")
    assert tty.lines() == [("uptime", False, None), ("date", True, "not echoed")]


def test_limit_programs_with_their_own_line_editing_are_read_as_lines() -> None:
    tty = Tty().typed("psql").enter("\r\norders=> ").typed("select 1;").enter("\r\n 1\r\norders=> ")
    tty.typed("\\q").enter()
    assert [c.text for c in tty.got] == ["psql", "select 1;", "\\q"]


def test_limit_wrapped_lines_and_right_prompts_confuse_the_echo() -> None:
    wrapped = Tty().typed("echo aaaa").out("\r\n").typed("bb").key("\t", "bbb ").enter()
    assert wrapped.lines() == [("echo aaaabb", True, "tab completion")]
    right_prompt = Tty().key(UP, "git status" + " " * 20 + "[main]" + "\b" * 26).enter()
    assert right_prompt.lines() == [("git status", True, "history recall")]


def test_limit_wide_characters_confuse_cursor_columns() -> None:
    tty = Tty().typed("vi 日").key(LEFT, "\b\b").key("\t", "x日\b\b").enter()
    assert tty.lines() == [("vi 日", True, "tab completion")]


def test_flush_settles_lines_still_waiting_for_echo() -> None:
    detector = CommandDetector()
    detector.feed_output(PROMPT.encode(), 0)
    assert detector.feed_input(b"exit\r", 1) == []
    assert detector.flush() == [ReconstructedCommand(1, "exit", True, "not echoed")]
    assert detector.flush() == []


def test_lines_waiting_for_echo_are_bounded() -> None:
    detector = CommandDetector()
    settled = detector.feed_input(b"x\r" * (cmdline.MAX_WAITING + 3), 1)
    assert len(settled) == 3 and all(c.reason == "not echoed" for c in settled)


def test_bulk_output_is_cheap_and_keeps_only_the_last_row() -> None:
    tty = Tty().typed("cat big").enter("\r\n" + "x" * 80 + "\r\n" * 10_000 + PROMPT)
    tty.typed("ls").key("\t", "\x07").enter()
    assert tty.lines() == [("cat big", False, None), ("ls", False, None)]


def test_the_detector_is_pure() -> None:
    assert imported_modules(cmdline.__file__) <= {"codecs", "re", "collections", "dataclasses"}


def imported_modules(path: str | None) -> set[str]:
    """Top-level modules a source file imports; all must be standard library."""
    assert path is not None
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    names = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    names |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    top = {name.split(".")[0] for name in names} - {"__future__"}
    assert top <= sys.stdlib_module_names
    return top
