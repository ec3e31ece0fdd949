"""The echo redactor: echoed input is kept, unechoed input (passwords) is masked; its limits."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.identity.sealing import SecretBox
from bastion.recording import EchoRedactor, Event, export_asciicast, read_recording
from bastion.recording.redact import split_keys
from tests.recording.helpers import make_writer

Step = tuple[str, str]  # ("i", typed) or ("o", output)


def run(steps: list[Step], redactor: EchoRedactor | None = None) -> list[Event]:
    """Feed the steps in order, one time tick apart; return every input event, session end too."""
    redactor = redactor or EchoRedactor()
    events: list[Event] = []
    for tick, (kind, text) in enumerate(steps):
        feed = redactor.input if kind == "i" else redactor.output
        events += feed(text.encode(), float(tick))
    events += redactor.flush_pending()
    assert redactor.pending == 0
    return events


def recorded(steps: list[Step]) -> str:
    return "".join(event.data for event in run(steps))


def keystrokes(text: str, echo: bool = True) -> list[Step]:
    """Type text one key at a time; with echo, each printable key comes straight back."""
    steps: list[Step] = []
    for key in text:
        steps.append(("i", key))
        if echo and key == "\r":
            steps.append(("o", "\r\n"))
        elif echo and not (key < " " or "\x7f" <= key < "\xa0"):
            steps.append(("o", key))
    return steps


def test_echoed_keystrokes_are_recorded_verbatim_at_their_own_time() -> None:
    events = run(keystrokes("ls -la\r"))
    assert "".join(e.data for e in events) == "ls -la\r"
    assert events[0] == Event(0.0, "i", "l")  # released by the echo at tick 1, stamped tick 0
    assert events[1] == Event(2.0, "i", "s")


def test_sudo_password_is_masked() -> None:
    steps = [("o", "[sudo] password for alice: ")]
    steps += keystrokes("hunter2\r", echo=False)
    steps += [("o", "\r\n")]
    events = run(steps)
    assert "".join(e.data for e in events) == "*******\r"
    assert events[0] == Event(1.0, "i", "*******")  # one event, at the first key's time
    assert all("hunter2" not in e.data and "h" not in e.data for e in events)


def test_sudo_password_never_reaches_the_recording_file(tmp_path: Path, box: SecretBox) -> None:
    writer = make_writer(tmp_path, box)
    writer.output(b"[sudo] password for alice: ", 0.5)
    for i, key in enumerate(b"hunter2\r"):
        writer.input(bytes([key]), 1.0 + i / 10)
    writer.output(b"\r\n", 2.0)
    writer.output(b"root@web-1:~# ", 2.1)
    path = writer.close().path
    out = io.StringIO()
    export_asciicast(path, box, out)
    assert "hunter2" not in out.getvalue() and "hunter" not in out.getvalue()
    inputs = [e for e in read_recording(path, box).events if e.code == "i"]
    assert inputs == [Event(1.0, "i", "*******"), Event(1.7, "i", "\r")]


def test_password_typed_in_one_packet_is_masked() -> None:
    assert recorded([("o", "Password: "), ("i", "hunter2\r"), ("o", "\r\n")]) == "*******\r"


def test_mysql_prompt_followed_by_a_banner_is_masked() -> None:
    steps = [("o", "Enter password: "), *keystrokes("s3cret\r", echo=False)]
    steps += [("o", "\r\nWelcome to the MySQL monitor.")]
    assert recorded(steps) == "******\r"


def test_output_starting_with_the_password_after_enter_is_still_masked() -> None:
    # The password's first keys match, the rest do not: the whole line is masked.
    assert recorded([*keystrokes("Sxyz\r", echo=False), ("o", "Sorry, try again.")]) == "****\r"
    # Every key matches, but no line break follows: still masked.
    assert recorded([*keystrokes("Sor\r", echo=False), ("o", "Sorry, try again.")]) == "***\r"


def test_fast_typing_whose_echo_trails_the_enter_is_kept() -> None:
    assert recorded([("i", "ls\r"), ("o", "ls\r\nfile-a  file-b\r\n$ ")]) == "ls\r"
    assert recorded([("i", "ls -l\r"), ("o", "ls"), ("o", " -l"), ("o", "\r\n")]) == "ls -l\r"


def test_control_keys_are_recorded_as_typed() -> None:
    keys = ["\x1b[A", "\x1b[B", "\x1bOP", "\t", "\x7f", "\x15", "\x17", "\x1b", "\x03", "\x04"]
    assert recorded([("i", key) for key in keys]) == "".join(keys)


def test_backspace_between_echoed_keys() -> None:
    steps = [("i", "l"), ("o", "l"), ("i", "z"), ("o", "z"), ("i", "\x7f"), ("o", "\b \b")]
    steps += [("i", "s"), ("o", "s"), ("i", "\r"), ("o", "\r\n")]
    assert recorded(steps) == "lz\x7fs\r"


def test_ctrl_c_abandons_a_no_echo_line_and_masks_it() -> None:
    steps = [*keystrokes("hun", echo=False), ("i", "\x03"), ("o", "^C\r\n$ ")]
    steps += keystrokes("ls\r")
    assert recorded(steps) == "***\x03ls\r"


def test_escape_sequences_around_the_echo_are_skipped() -> None:
    steps = [("i", "l"), ("o", "\x1b[31ml\x1b[39m"), ("i", "s"), ("o", "\x1b[32ms")]
    steps += [("i", "\r"), ("o", "\x1b[?2004l\r\r\n")]
    assert recorded(steps) == "ls\r"


def test_bracketed_paste_is_kept_when_echoed() -> None:
    paste = "\x1b[200~echo hi\x1b[201~"
    assert recorded([("i", paste), ("o", "\x1b[7mecho hi\x1b[27m"), ("i", "\r")]) == paste + "\r"


def test_typed_multibyte_key_split_across_packets() -> None:
    data = "\u00e9".encode()
    redactor = EchoRedactor()
    assert redactor.input(data[:1], 1.0) == []
    assert redactor.input(data[1:], 1.1) == []
    assert redactor.output(data, 1.2) == [Event(1.1, "i", "\u00e9")]


def test_unresolved_input_at_session_end_is_masked() -> None:
    redactor = EchoRedactor()
    redactor.input(b"secret", 1.0)  # never echoed, line never ended
    redactor.input(b"\xe2\x9c", 1.1)  # and an incomplete character
    assert redactor.pending == 6
    assert redactor.flush_pending() == [Event(1.0, "i", "*******")]
    redactor.input(b"pw\r", 2.0)  # ended, but no output ever came
    assert redactor.flush_pending() == [Event(2.0, "i", "**\r")]


def test_nothing_is_recorded_ahead_of_a_pending_key() -> None:
    redactor = EchoRedactor()
    assert redactor.input(b"a", 1.0) == []
    assert redactor.input(b"\t", 1.1) == []  # waits behind "a"
    assert redactor.output(b"a", 1.2) == [Event(1.0, "i", "a"), Event(1.1, "i", "\t")]


def test_pending_input_is_bounded() -> None:
    redactor = EchoRedactor(max_pending=8)
    events = redactor.input(b"x" * 20, 1.0)
    assert redactor.pending <= 8
    assert "".join(e.data for e in events) == "*" * (20 - redactor.pending)
    with pytest.raises(ValueError, match="max_pending"):
        EchoRedactor(max_pending=0)


def test_output_without_pending_input_costs_nothing() -> None:
    redactor = EchoRedactor()
    assert redactor.output(b"\xff" * 100_000, 1.0) == []


def test_split_keys_keeps_escape_sequences_whole() -> None:
    assert split_keys("a\x1b[1;5Cb\x1bOPc\x1b]0;t\x07d\x1b") == [
        "a",
        "\x1b[1;5C",
        "b",
        "\x1bOP",
        "c",
        "\x1b]0;t\x07",
        "d",
        "\x1b",
    ]
    assert split_keys("\x1b\r") == ["\x1b", "\r"]
    assert split_keys("\x1bx") == ["\x1bx"]  # Alt+x


# --- limits (documented in bastion/recording/redact.py) ---------------------------------


def test_limit_vim_keys_are_masked() -> None:
    steps = [("i", "j"), ("o", "\x1b[2;1H"), ("i", "i"), ("o", "\x1b[24;1H-- INSERT --")]
    steps += [("i", "hi"), ("o", "\x1b[2;1Hhi"), ("i", "\x1b"), ("i", ":wq\r")]
    steps += [("o", "\x1b[24;1H:wq\r\n")]
    assert recorded(steps) == "****\x1b***\r"


def test_limit_programs_echoing_stars_are_masked() -> None:
    assert recorded([("i", "abc\r"), ("o", "***\r\n")]) == "***\r"
    assert recorded([("i", "a"), ("o", "*"), ("i", "b"), ("o", "*"), ("i", "\r")]) == "**\r"


def test_limit_slow_echo_after_other_output_is_masked() -> None:
    steps = [("i", "ls\r"), ("o", "[1]+  Done   sleep 1\r\n"), ("o", "ls\r\n")]
    assert recorded(steps) == "**\r"


def test_limit_type_ahead_lines_are_masked() -> None:
    steps = [("i", "ls\rpwd\r"), ("o", "ls\r\nfile\r\n$ "), ("o", "pwd\r\n/root\r\n")]
    assert recorded(steps) == "ls\r***\r"


def test_limit_editing_keys_in_one_packet_stop_the_match() -> None:
    # The line is still open: keys echoed before the backspace's echo are kept.
    steps = [("i", "lz\x7fs"), ("o", "lz\b \bs"), ("i", "\r"), ("o", "\r\n")]
    assert recorded(steps) == "lz\x7f*\r"
    # The line had ended: the whole line is masked.
    assert recorded([("i", "lz\x7fs\r"), ("o", "lz\b \bs\r\n")]) == "**\x7f*\r"


def test_limit_coincident_output_counts_as_echo_while_the_line_is_open() -> None:
    steps = [("o", "Password: "), ("i", "h"), ("o", "hello from a background job\r\n")]
    steps += [*keystrokes("unter2\r", echo=False), ("o", "\r\n")]
    assert recorded(steps) == "h******\r"


def test_limit_mask_reveals_the_length() -> None:
    assert recorded([*keystrokes("12345678\r", echo=False), ("o", "\r\n")]) == "********\r"


def test_limit_echo_with_a_character_split_across_chunks_is_masked() -> None:
    echo = "\u00e9".encode()
    steps = [("i", "\u00e9\r")]
    redactor = EchoRedactor()
    redactor.input(steps[0][1].encode(), 1.0)
    events = redactor.output(echo[:1], 1.1) + redactor.output(echo[1:] + b"\r\n", 1.2)
    assert "".join(e.data for e in events) == "*\r"


def test_limit_alt_key_is_recorded_unchecked() -> None:
    steps = [("o", "Password: "), ("i", "\x1bh"), ("i", "unter2\r"), ("o", "\r\n")]
    assert recorded(steps) == "\x1bh******\r"


def test_limit_only_the_first_16_kib_of_an_output_chunk_is_read() -> None:
    long_preamble = "\x1b[0m" * 5000  # 20,000 characters of escape sequences
    assert recorded([("i", "ls\r"), ("o", long_preamble + "ls\r\n")]) == "**\r"


# --- property: with echo on, the recorded input is exactly what was typed -----------------

TYPED = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Zs"]),
        st.sampled_from(["\r", "\n", "\t", "\x7f", "\x15"]),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(TYPED)
def test_echoed_keystrokes_are_recorded_exactly(typed: str) -> None:
    assert recorded(keystrokes(typed)) == typed


@settings(max_examples=300, deadline=None)
@given(TYPED, st.data())
def test_echo_of_any_chunking_is_recorded_exactly(typed: str, data: st.DataObject) -> None:
    """Typed in arbitrary packets, echoed back exactly in arbitrary packets after each."""
    steps: list[Step] = []
    rest = typed
    while rest:
        size = data.draw(st.integers(1, len(rest)))
        packet, rest = rest[:size], rest[size:]
        steps.append(("i", packet))
        while packet:
            cut = data.draw(st.integers(1, len(packet)))
            steps.append(("o", packet[:cut]))
            packet = packet[cut:]
    assert recorded(steps) == typed


ANY_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(["\r", "\n", "\x03", "\x1b", "[", "A", "\x7f", "*"]),
    ),
    max_size=20,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("io"), ANY_TEXT), max_size=12))
def test_input_is_never_lost_reordered_or_invented(steps: list[Step]) -> None:
    """Whatever the output does, each typed key is recorded once, in order, as is or masked."""
    typed = "".join(text for kind, text in steps if kind == "i")
    got = recorded(steps)
    assert len(got) == len(typed)
    for want, have in zip(typed, got, strict=True):
        assert have == want or (have == "*" and not (want < " " or "\x7f" <= want < "\xa0"))


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.characters(codec="utf-8", categories=["L", "N", "P", "S"]), min_size=1),
    st.booleans(),
    ANY_TEXT,
)
def test_a_password_typed_without_echo_is_always_masked(
    password: str, one_packet: bool, after: str
) -> None:
    steps: list[Step] = [("o", "Password: ")]
    if one_packet:
        steps.append(("i", password + "\r"))
    else:
        steps += keystrokes(password + "\r", echo=False)
    steps.append(("o", "\r\n" + after))
    assert recorded(steps) == "*" * len(password) + "\r"
