"""The prompt redactor: a secret typed at a password prompt is masked, nothing else; its limits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.recording import PromptRedactor
from bastion.recording.redact import is_secret_prompt


def typed(prompt: bytes, keys: bytes) -> bytes:
    redactor = PromptRedactor()
    redactor.output(prompt)
    return redactor.input(keys)


@pytest.mark.parametrize("prompt", [
    b"[sudo] password for alice: ", b"Password: ", b"\r\nPassword:", b"Enter passphrase for key"
    b" '/home/a/.ssh/id_ed25519': ", b"Enter PEM pass phrase:", b"Verification code: ",
    b"Password for user postgres: ", b"mysql: Enter password: ", b"Enter PIN for 'card':",
    b"\x1b[1mPassword:\x1b[0m ", b"(current) UNIX password: ", b"Vault token? ",
])  # fmt: skip
def test_a_secret_at_a_prompt_is_masked_until_the_line_ends(prompt: bytes) -> None:
    assert typed(prompt, b"hunter2\rls\r") == b"*******\rls\r"


@pytest.mark.parametrize("output", [
    b"$ ", b"alice@web-1:~/passwords$ ", b"Password changed.\r\n$ ", b"user: ",
    b"Password:\r\n", b"",
])  # fmt: skip
def test_input_without_a_secret_prompt_is_kept(output: bytes) -> None:
    assert typed(output, b"stty -echo; cat /etc/shadow\r") == b"stty -echo; cat /etc/shadow\r"


def test_typing_a_prompt_like_line_at_a_shell_masks_nothing() -> None:
    redactor = PromptRedactor()
    redactor.output(b"$ ")
    line = b"echo password: x\r"
    got = b""
    for key in line:
        got += redactor.input(bytes([key]))
        redactor.output(bytes([key]))  # the terminal's echo
    assert got == line


def test_keys_one_by_one_and_utf8_count_as_characters() -> None:
    redactor = PromptRedactor()
    redactor.output(b"Password: ")
    got = b"".join(redactor.input(bytes([b])) for b in "p\u00e4ss\r".encode())
    assert got == b"****\r"
    assert redactor.input(b"next\r") == b"next\r"  # no new prompt: recorded as typed
    redactor.output(b"\r\nSorry, try again.\r\nPassword: ")
    assert redactor.input(b"again\r") == b"*****\r" and redactor.masked_lines == 2


def test_arm_masks_the_first_line_of_stdin_without_a_prompt() -> None:
    redactor = PromptRedactor()
    redactor.arm()
    assert redactor.input(b"s3cret\nrest\n") == b"******\nrest\n"


def test_limit_type_ahead_before_the_prompt_is_kept() -> None:
    redactor = PromptRedactor()
    assert redactor.input(b"hunter2\n") == b"hunter2\n"
    redactor.output(b"Password: ")


def test_limit_a_masked_line_stops_after_max_secret_bytes() -> None:
    got = typed(b"Password: ", b"x" * 5000)
    assert got.startswith(b"*" * 4096) and got.endswith(b"x" * 903)


def test_the_prompt_is_read_from_the_last_line_only() -> None:
    assert is_secret_prompt(b"Password: ")
    assert not is_secret_prompt(b"Password: \r\nok\r\n$ ")


@settings(deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=40)), max_size=30))
def test_masking_keeps_line_ends_and_never_adds_input(steps: list[tuple[bool, bytes]]) -> None:
    redactor = PromptRedactor()
    for is_output, data in steps:
        if is_output:
            redactor.output(data)
            continue
        got = redactor.input(data)
        assert len(got) <= len(data)
        assert [b for b in got if b in b"\r\n\x03\x04"] == [b for b in data if b in b"\r\n\x03\x04"]
