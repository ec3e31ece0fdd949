"""Mask what is plainly a secret typed at a prompt; record every other input byte as sent.

Pure: no I/O, no clock. Fed a session's output (stdout and stderr) and input in relay order,
``input()`` returns the bytes to record in place of what was typed.

The rule
--------
A secret is being typed when the target's output, at the moment input arrives, ends with a
prompt that asks for one: its last line (escape sequences removed) names a password,
passphrase, pass phrase, passcode, PIN, verification or one-time code, OTP, token or secret
and ends with ``:``, ``>`` or ``?`` (``[sudo] password for alice:``, ``Password:``, ``Enter
passphrase for key '...':``, ``Enter PEM pass phrase:``, ``Verification code:``). From
there every input character is recorded as one ``*`` until the line ends (Enter, a newline,
^C or ^D), which is recorded as typed. A further line is masked only after new output asks
again. The recording marks each masked line with the prompt that caused it, so a fake
prompt used to hide typed commands shows to a reviewer. ``arm()`` masks the next line
without a prompt (``sudo -S``, which reads its password
from the first line of stdin, often sent before the prompt shows).

Input that is merely not echoed is recorded as typed: ``stty -echo; cat /etc/shadow`` is
kept whole. Nothing else is masked.

Limits
------
* A secret typed without such a prompt (a program that asks in other words, a prompt sent
  after the secret, type-ahead before the prompt) is recorded as typed.
* Output that happens to end with such a line (``cat`` of a file whose last line is
  ``password:``) masks the next input line: over-masking only.
* One ``*`` per character shows the secret's length, as a terminal showing stars would.
* A masked line is cut after ``MAX_SECRET`` bytes without a line end: what follows is
  recorded (a stream, not a typed secret).
"""

from __future__ import annotations

import re

MASK = b"*"
MAX_SECRET = 4096  # bytes masked at most without a line end
_TAIL = 256  # bytes of output kept to read the prompt from
_LINE_END = frozenset(b"\r\n\x03\x04")
_ESCAPES = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|.)?")
SECRET_PROMPT = re.compile(
    r"(?i)(?:pass(?:word|phrase|code)|pass phrase|\bpin\b|verification code"
    r"|one[- ]time (?:code|password)|\botp\b|\btoken\b|\bsecret\b)[^\r\n]{0,160}[:>?]\s*\Z"
)


def last_line(output_tail: bytes) -> str:
    """The output's last line, escape sequences removed."""
    text = _ESCAPES.sub(b"", output_tail).decode("utf-8", "replace")
    return re.split(r"[\r\n]", text)[-1]


def is_secret_prompt(output_tail: bytes) -> bool:
    """True when the last line of output asks for a secret."""
    return SECRET_PROMPT.search(last_line(output_tail)) is not None


class PromptRedactor:
    """Tracks the output's last line; masks an input line typed at a secret prompt."""

    def __init__(self) -> None:
        self._tail = b""
        self._fresh = False  # output other than an echo arrived since the prompt was read
        self._last_input = b""  # the last input, up to 64 bytes, to tell its echo
        self._secret = False  # inside a masked line
        self._armed = False  # arm(): mask the next line whatever the output says
        self._masked = 0  # bytes masked in the current line
        self.masked_lines = 0
        self.prompt = ""  # the prompt of the last masked line (its last 80 characters)

    def output(self, data: bytes) -> None:
        """Note output (stdout or stderr) the target sent; the plain echo of the last input
        is not a new prompt (typing ``echo password:`` at a shell masks nothing)."""
        if data:
            self._tail = (self._tail + data[-_TAIL:])[-_TAIL:]
            self._fresh = self._fresh or data != self._last_input
            self._last_input = b""

    def arm(self) -> None:
        """Mask the next input line, prompt or not (a program known to read a secret first)."""
        self._armed = True

    def input(self, data: bytes) -> bytes:
        """The bytes to record for this input: as typed, or masked inside a secret line."""
        self._last_input = data if len(data) <= 64 else b""
        if not self._secret and not self._starts_secret():
            return data
        out = bytearray()
        start = 0
        for i, byte in enumerate(data):
            if not self._secret:
                out += data[i:] if not self._starts_secret() else self.input(data[i:])
                return bytes(out)
            if byte in _LINE_END or self._masked >= MAX_SECRET:
                out += self._mask(data[start:i])
                out.append(byte)
                start = i + 1
                self._end_line()
            else:
                self._masked += 1
        if self._secret:
            out += self._mask(data[start:])
        return bytes(out)

    def _starts_secret(self) -> bool:
        prompted, self._fresh = self._fresh and is_secret_prompt(self._tail), False  # read once
        if self._armed or prompted:
            self.prompt = "(first line of stdin)" if self._armed else last_line(self._tail)[-80:]
            self._armed = False
            self._secret = True
            self._masked = 0
            self.masked_lines += 1
        return self._secret

    def _end_line(self) -> None:
        self._secret = False
        self._masked = 0

    @staticmethod
    def _mask(data: bytes) -> bytes:
        """One star per UTF-8 character (continuation bytes do not count)."""
        return MASK * sum(1 for byte in data if byte & 0xC0 != 0x80)
