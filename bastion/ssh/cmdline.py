"""The command-line detector: command lines rebuilt from keystrokes and terminal echo (pure).

`CommandDetector` is fed what the engineer typed (`feed_input`) and what the target printed
(`feed_output`), in relay order, and returns a `ReconstructedCommand` per line submitted with
Enter. Keys are replayed on a line editor with a cursor (UTF-8, backspace, ^U ^W ^K ^Y ^A ^E,
arrows, Home/End, Delete, Alt-b/f/d, bracketed paste); Tab completion and history recall are
read back from the echo on the prompt's row. A line is reported with its typed text once its
characters were seen in the echo; else with the text on the prompt's row ("read from screen");
else with its typed text, flagged "not echoed" (``stty -echo; cat /etc/shadow`` is logged as
typed). Feed it input with secrets already masked (the SSH tap feeds what the recording kept,
see bastion.recording.redact): a password typed at a prompt arrives as ``*******``.

Limits, each shown by a test in tests/ssh/test_cmdline.py:

- Full-screen programs (vim, less, top) on the alternate screen: lines submitted there are
  reported as uncertain ("full-screen program"); a half-typed line is dropped when such a
  program starts or ends. Full-screen programs on the main screen are read like a shell.
- Shell aliases and functions are logged as typed, never expanded.
- Readline vi mode: ESC followed by a key is read as an Alt chord ("unsupported key"); the
  text is then usually "read from screen", which fails for lines that left the prompt's row.
- Multi-line commands (a trailing backslash, an open quote, `for ... do` blocks) are logged one
  line per Enter; continuation lines are separate commands. Multi-line bracketed pastes stay
  one command with newlines inside.
- Input the target does not echo (`stty -echo`) is logged as typed, flagged "not echoed";
  masked echo is logged as shown ("****"). A secret is only as masked as its input was: the
  tap masks what is typed at a password prompt. When echo lags more than a whole line behind
  typing (lines sent in one batch without bracketed paste), later lines may be "not echoed".
- Programs with their own line editing (psql, mysql, python) are read like a shell: their
  lines are logged, but their own key bindings (and inputrc macros anywhere) are unknown.
- Tab completion and history recall rely on the echo arriving before the next key and
  staying on the prompt's row: late echo, lines wider than the terminal, right-hand prompts
  and wide (East Asian) characters leave the line uncertain or its text approximate.
  History recall and ^R search are always marked uncertain.
- Lines longer than `max_line` characters are cut there and marked "line too long".
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

MAX_LINE = 64 * 1024  # characters kept per line; longer lines are cut and marked
MAX_WAITING = 16  # submitted lines waiting for their echo
ECHO_SLACK = 4096  # output characters kept beyond a line's own length while checking echo
_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[()*+#%].|.)?")
_ALT_SCREEN = re.compile(r"\x1b\[\?(?:1049|1047|47)([hl])")
_VERTICAL = frozenset("ABEFHJLMSTdfr")
_PRINTABLE = re.compile(r"[^\x00-\x1f\x7f]+")
_WORD_BEFORE = re.compile(r"[^\W_]*[\W_]*\Z")  # readline words: letters and digits
_WORD_AHEAD = re.compile(r"[\W_]*[^\W_]*")
_SPACED_WORD_BEFORE = re.compile(r"\S*\s*\Z")
_MASK_ECHO = frozenset("*\u2022\u25cf")  # what password prompts print per key: *, •, ●


@dataclass(frozen=True, slots=True)
class ReconstructedCommand:
    """One submitted line: when Enter was pressed, its text, and why it may be wrong."""

    at: float
    text: str
    uncertain: bool
    reason: str | None


class _Editor:
    """A single-line editor with a cursor and a one-entry kill ring, like readline's."""

    def __init__(self, cap: int) -> None:
        self.chars: list[str] = []
        self.cursor = 0
        self.cap = cap
        self.truncated = False
        self.killed = ""

    def text(self) -> str:
        return "".join(self.chars)

    def clear(self) -> None:
        self.chars, self.cursor, self.truncated = [], 0, False

    def set(self, text: str, cursor: int) -> None:
        self.clear()
        self.insert(text)
        self.cursor = max(0, min(cursor, len(self.chars)))

    def insert(self, text: str) -> None:
        room = self.cap - len(self.chars)
        if len(text) > room:
            text, self.truncated = text[: max(room, 0)], True
        self.chars[self.cursor : self.cursor] = text
        self.cursor += len(text)

    def _cut(self, start: int, end: int) -> None:
        self.killed = "".join(self.chars[start:end])
        del self.chars[start:end]
        self.cursor = start

    def backspace(self) -> None:
        if self.cursor:
            del self.chars[self.cursor - 1]
            self.cursor -= 1

    def delete(self) -> None:
        del self.chars[self.cursor : self.cursor + 1]

    def kill_to_start(self) -> None:
        self._cut(0, self.cursor)

    def kill_to_end(self) -> None:
        self._cut(self.cursor, len(self.chars))

    def _back(self, pattern: re.Pattern[str]) -> int:
        found = pattern.search("".join(self.chars[: self.cursor]))
        return found.start() if found else self.cursor

    def _word_end(self) -> int:
        found = _WORD_AHEAD.match(self.text(), self.cursor)
        return found.end() if found else self.cursor

    def kill_word_back(self) -> None:  # ^W: words end at whitespace
        self._cut(self._back(_SPACED_WORD_BEFORE), self.cursor)

    def kill_alnum_back(self) -> None:  # Alt-Backspace: words are letters and digits
        self._cut(self._back(_WORD_BEFORE), self.cursor)

    def kill_word_forward(self) -> None:
        self._cut(self.cursor, self._word_end())

    def word_left(self) -> None:
        self.cursor = self._back(_WORD_BEFORE)

    def word_right(self) -> None:
        self.cursor = self._word_end()

    def yank(self) -> None:
        self.insert(self.killed)

    def left(self) -> None:
        self.cursor = max(0, self.cursor - 1)

    def right(self) -> None:
        self.cursor = min(len(self.chars), self.cursor + 1)

    def home(self) -> None:
        self.cursor = 0

    def end(self) -> None:
        self.cursor = len(self.chars)


_Action = Callable[[_Editor], None] | str
_HOME, _END = _Editor.home, _Editor.end
_KEYS: dict[str, _Action] = {
    "\r": "submit", "\n": "submit", "\x03": "cancel", "\x04": "eof", "\t": "tab",
    "\x7f": _Editor.backspace, "\x08": _Editor.backspace, "\x15": _Editor.kill_to_start,
    "\x17": _Editor.kill_word_back, "\x0b": _Editor.kill_to_end, "\x19": _Editor.yank,
    "\x01": _HOME, "\x05": _END, "\x02": _Editor.left, "\x06": _Editor.right,
    "\x10": "history recall", "\x0e": "history recall", "\x12": "history search",
    "\x07": "ignore", "\x0c": "ignore", "\x11": "ignore", "\x13": "ignore", "\x1a": "ignore",
    "\x1b[A": "history recall", "\x1b[B": "history recall", "\x1bOA": "history recall",
    "\x1bOB": "history recall", "\x1b[C": _Editor.right, "\x1bOC": _Editor.right,
    "\x1b[D": _Editor.left, "\x1bOD": _Editor.left, "\x1b[H": _HOME, "\x1bOH": _HOME,
    "\x1b[1~": _HOME, "\x1b[7~": _HOME, "\x1b[F": _END, "\x1bOF": _END, "\x1b[4~": _END,
    "\x1b[8~": _END, "\x1b[3~": _Editor.delete, "\x1b[1;5C": _Editor.word_right,
    "\x1b[1;3C": _Editor.word_right, "\x1b[1;5D": _Editor.word_left,
    "\x1b[1;3D": _Editor.word_left, "\x1bb": _Editor.word_left, "\x1bf": _Editor.word_right,
    "\x1bd": _Editor.kill_word_forward, "\x1b\x7f": _Editor.kill_alnum_back,
    "\x1b\x08": _Editor.kill_alnum_back, "\x1b[200~": "paste", "\x1b[201~": "ignore",
    "\x1b[2~": "ignore", "\x1b[5~": "ignore", "\x1b[6~": "ignore", "\x1bOP": "ignore",
    "\x1bOQ": "ignore", "\x1bOR": "ignore", "\x1bOS": "ignore",
}  # fmt: skip


def _escape_complete(seq: str) -> bool:
    """Whether an input escape sequence (starting with ESC) has all its characters."""
    if len(seq) < 2:
        return False
    if seq[1] == "[":
        return len(seq) > 2 and "@" <= seq[-1] <= "~"
    return seq[1] != "O" or len(seq) > 2


def _shown(text: str, echo: str) -> bool:
    """Whether the visible characters of text appear, in order, in the (stripped) echo."""
    remaining = iter(_ESCAPES.sub("", echo))
    return all(ch in remaining for ch in text if not ch.isspace())


class _Row:
    """The terminal row the cursor is on, replayed from output: cells, column, screen mode."""

    def __init__(self, cap: int) -> None:
        self.cells: list[str] = []
        self.col = 0
        self.moves = 0  # newlines and vertical moves seen: the row stops being the prompt's
        self.alt_screen = False
        self.alt_toggles = 0
        self.cap = cap
        self._esc: str | None = None

    def text_from(self, col: int) -> str:
        return "".join(self.cells[col:])

    def feed(self, text: str) -> None:
        start = 0
        while self._esc is not None and start < len(text):  # a sequence split across chunks
            self._char(text[start])
            start += 1
        last = text.rfind("\n", start)
        if last >= 0:  # only the last row matters: skip bulk output at C speed
            for mode in _ALT_SCREEN.findall(text, start, last):
                self._alt(mode == "h")
            self.cells, self.col, self.moves, start = [], 0, self.moves + 1, last + 1
        while start < len(text):
            run = None if self._esc is not None else _PRINTABLE.match(text, start)
            if run:  # plain text is written in one go: progress bars stay cheap
                self._put(run.group())
                start = run.end()
            else:
                self._char(text[start])
                start += 1

    def _char(self, ch: str) -> None:
        if self._esc is not None:
            self._escape(self._esc + ch)
        elif ch == "\x1b":
            self._esc = ""
        elif ch == "\r":
            self.col = 0
        elif ch == "\n":
            self.cells, self.col, self.moves = [], 0, self.moves + 1
        elif ch == "\b":
            self.col = max(0, self.col - 1)
        elif ch == "\t":
            self.col = (self.col // 8 + 1) * 8

    def _put(self, text: str) -> None:
        if self.col + len(text) > self.cap:  # no terminal is this wide: the row is lost
            self.cells, self.col, self.moves, text = [], 0, self.moves + 1, text[-self.cap :]
        if self.col > len(self.cells):
            self.cells.extend(" " * (self.col - len(self.cells)))
        self.cells[self.col : self.col + len(text)] = text
        self.col += len(text)

    def _escape(self, seq: str) -> None:
        self._esc = None
        if seq[0] == "[":
            if len(seq) > 1 and "@" <= seq[-1] <= "~":
                self._csi(seq[1:-1], seq[-1])
            elif len(seq) < 64:
                self._esc = seq
        elif seq[0] in "]PX^_":  # string sequences end with BEL or ESC \
            if seq[-1] != "\x07" and not seq.endswith("\x1b\\") and len(seq) < 4096:
                self._esc = seq
        elif seq[0] in "()*+#%" and len(seq) < 2:
            self._esc = seq

    def _alt(self, on: bool) -> None:
        self.alt_screen, self.alt_toggles, self.moves = on, self.alt_toggles + 1, self.moves + 1

    def _csi(self, params: str, final: str) -> None:
        first = params.split(";", maxsplit=1)[0]
        n = min(int(first), self.cap) if first.isdigit() else 0
        count, cells, col = max(n, 1), self.cells, self.col
        if final in "hl":
            if params in ("?1049", "?1047", "?47"):
                self._alt(final == "h")
        elif final == "K":  # erase to the end, from the start, or the whole row
            if n == 1:
                cells[: col + 1] = " " * min(col + 1, len(cells))
            else:
                del cells[col if n == 0 else 0 :]
        elif final == "C":
            self.col = col + count
        elif final == "D":
            self.col = max(0, col - count)
        elif final in "`G":
            self.col = count - 1
        elif final == "P":
            del cells[col : col + count]
        elif final == "@":
            cells[col:col] = " " * count
        elif final == "X":
            cells[col : col + count] = " " * len(cells[col : col + count])
        elif final in _VERTICAL:
            self._vertical(final, params)

    def _vertical(self, final: str, params: str) -> None:
        """The cursor leaves the row (or jumps to an absolute place): the row is no longer known."""
        self.moves += 1
        if final in "Hf":
            column = params.split(";")[1:2]
            self.col = int(column[0]) - 1 if column and column[0].isdigit() else 0


@dataclass(slots=True)
class _Line:
    """A line being typed, or submitted and waiting for its echo: where it sits, what was shown."""

    prompt_col: int
    moves: int
    cap: int
    reasons: list[str] = field(default_factory=list)
    echo: list[str] = field(default_factory=list)
    echo_size: int = 0
    at: float = 0.0
    text: str = ""

    def add_echo(self, text: str) -> None:
        if self.echo_size < self.cap:
            self.echo.append(text)
        self.echo_size += len(text)  # past the cap the target is printing: not a silent prompt

    def shown(self) -> bool:
        return self.echo_size >= self.cap or _shown(self.text, "".join(self.echo))

    def settle(self, row: _Row, shown: bool) -> ReconstructedCommand:
        """The typed text if shown; else what the prompt's row shows after Tab or history keys,
        or when it shows stars; else the typed text, flagged "not echoed"."""
        screen = row.text_from(self.prompt_col).rstrip() if row.moves == self.moves else ""
        if shown:
            return _command(self.at, self.text, self.reasons)
        if screen and (self.reasons or set(screen) <= _MASK_ECHO):  # Tab, history; "****"
            return _command(self.at, screen, [*self.reasons, "read from screen"])
        return _command(self.at, self.text, [*self.reasons, "not echoed"])


def _command(at: float, text: str, reasons: list[str]) -> ReconstructedCommand:
    reason = "; ".join(dict.fromkeys(reasons)) or None
    return ReconstructedCommand(at=at, text=text, uncertain=bool(reasons), reason=reason)


class CommandDetector:
    """Keystrokes and echo in, reconstructed command lines out (see the module's limits)."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._editor = _Editor(max_line)
        self._row = _Row(max_line + ECHO_SLACK)
        self._in = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._out = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._esc = ""  # an input escape sequence still arriving
        self._paste: list[str] | None = None  # characters of a bracketed paste in progress
        self._line: _Line | None = None  # None until the first key of a line
        self._waiting: list[_Line] = []  # submitted, echo not seen yet
        self._pending: str | None = None  # "tab" or "history recall": the echo will tell
        self._before = ("", 0)  # line and cursor when the pending key was pressed
        self._output_since_key = False

    def feed_input(self, data: bytes, at: float) -> list[ReconstructedCommand]:
        """Take bytes the engineer typed; return the lines they submitted with Enter."""
        commands: list[ReconstructedCommand] = []
        for key in self._keys(self._in.decode(data)):
            commands.extend(self._key(key, at))
        return commands

    def feed_output(self, data: bytes, at: float) -> list[ReconstructedCommand]:
        """Take bytes the target printed; return earlier lines whose echo this settles.

        `at` is accepted for symmetry: commands keep the time their Enter was pressed.
        """
        text = self._out.decode(data)
        commands: list[ReconstructedCommand] = []
        while self._waiting and "\n" in text:  # each newline settles the oldest waiting line
            cut = text.index("\n")
            for line in self._waiting:
                line.add_echo(text[: cut + 1])
            self._take_output(text[:cut])
            commands.extend(self._settle(everything=False))
            self._take_output("\n")
            text = text[cut + 1 :]
        for line in self._waiting:
            line.add_echo(text)
        self._take_output(text)
        return commands

    def flush(self) -> list[ReconstructedCommand]:
        """Settle every line still waiting for its echo; call when the channel closes."""
        settled = [line.settle(self._row, line.shown()) for line in self._waiting]
        self._waiting.clear()
        return settled

    def _settle(self, everything: bool) -> list[ReconstructedCommand]:
        """Settle the waiting lines that were shown and the oldest one, or all of them."""
        settled: list[ReconstructedCommand] = []
        for index, line in enumerate(list(self._waiting)):
            shown = line.shown()
            if shown or everything or index == 0:
                settled.append(line.settle(self._row, shown))
                self._waiting.remove(line)
        return settled

    def _take_output(self, text: str) -> None:
        if not text:
            return
        toggles = self._row.alt_toggles
        self._row.feed(text)
        self._output_since_key = True
        if self._line is not None:
            self._line.add_echo(text)
        if self._row.alt_toggles != toggles:  # a full-screen program started or ended
            self._reset_line()

    def _reset_line(self) -> None:
        self._editor.clear()
        self._line, self._pending = None, None

    def _keys(self, text: str) -> Iterator[str]:
        """Split typed text into keys: single characters and whole escape sequences."""
        for ch in text:
            if self._esc:
                self._esc += ch
                if _escape_complete(self._esc) or len(self._esc) > 32:
                    key, self._esc = self._esc, ""
                    yield key
            elif ch == "\x1b":
                self._esc = ch
            else:
                yield ch

    def _key(self, key: str, at: float) -> list[ReconstructedCommand]:
        if self._line is None:
            row = self._row
            self._line = _Line(row.col, row.moves, self._editor.cap + ECHO_SLACK)
        caught_up, self._output_since_key = self._output_since_key, False
        if self._paste is not None:
            self._paste_key(key)
            return []
        self._resync(self._line, caught_up)
        if len(key) == 1 and key >= " " and key != "\x7f":
            self._editor.insert(key)
            return []
        action = _KEYS.get(key, "unsupported key")
        if not isinstance(action, str):
            action(self._editor)
        elif action == "submit":
            return self._submit(self._line, at, caught_up)
        elif action == "cancel" or (action == "eof" and not self._editor.chars):
            self._reset_line()
        elif action == "eof":
            self._editor.delete()
        elif action in ("tab", "history recall"):
            self._pending, self._before = action, (self._editor.text(), self._editor.cursor)
        elif action == "paste":
            self._paste = []
        if action in ("history recall", "history search", "unsupported key"):
            self._line.reasons.append(action)
        return []

    def _paste_key(self, key: str) -> None:
        """Inside a bracketed paste everything is literal text, CR LF becoming one newline."""
        paste = self._paste
        if paste is None:
            return
        if key == "\x1b[201~":
            self._paste = None
            text = "".join(paste).replace("\r\n", "\n").replace("\r", "\n")
            self._editor.insert(text)
        elif not key.startswith("\x1b") and len(paste) <= self._editor.cap:
            paste.append(key)

    def _resync(self, line: _Line, caught_up: bool) -> None:
        """After Tab or history recall, read the line back from the echo on the prompt row."""
        kind, self._pending = self._pending, None
        if kind is None:
            return
        row, col = self._row, line.prompt_col
        usable = caught_up and row.moves == line.moves and row.col >= col
        echo, cursor = row.text_from(col), row.col - col
        if kind == "history recall":
            if usable:
                self._editor.set(echo[:cursor], cursor)
            return
        text, before = self._before
        kept = echo[:before] == text[:before] and echo[cursor:].startswith(text[before:])
        if usable and cursor >= before and kept:  # text was inserted at the cursor, nothing else
            self._editor.set(echo[:cursor] + text[before:], cursor)
        else:
            line.reasons.append("tab completion")

    def _submit(self, line: _Line, at: float, caught_up: bool) -> list[ReconstructedCommand]:
        line.at, line.text = at, self._editor.text()
        line_unknown = bool(line.reasons)
        if self._editor.truncated:
            line.reasons.append("line too long")
        if self._row.alt_screen:
            line.reasons.append("full-screen program")
        self._reset_line()
        if not line.text.strip():  # an empty Enter is no command, unless the line is unknown
            return [_command(at, line.text, line.reasons)] if line_unknown else []
        shown = line.shown()
        if not shown and not caught_up:  # the echo may still be on its way
            self._waiting.append(line)
            if len(self._waiting) <= MAX_WAITING:
                return []
            oldest = self._waiting.pop(0)
            return [oldest.settle(self._row, oldest.shown())]
        # echo arrives in order: lines still waiting from before have had their chance
        return [*self._settle(everything=True), line.settle(self._row, shown)]
