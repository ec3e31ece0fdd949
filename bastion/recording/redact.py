"""Decide which typed input to record: echoed keys verbatim, unechoed keys (passwords) masked.

Pure: no I/O, no clock. Fed the session's input and output bytes in order, it returns the
input events to record, each ``Event(elapsed_of_the_key, "i", text)``.

The rule
--------
A terminal normally echoes every printable key it receives; at a password prompt (sudo,
``mysql -p``, passwd, ``read -s``) the target turns echo off, so the keys never come back.

* Typed input is cut into *lines* by the keys that end one: Enter (``\\r`` or ``\\n``), ^C, ^D.
* Control keys (Enter, ^C, backspace, tab, arrows and other escape sequences) are recorded
  as typed. Printable keys are held *pending* until the output shows their echo. Order is
  kept: nothing is recorded ahead of an earlier key that is still pending.
* An output chunk echoes pending keys when, skipping terminal escape sequences, it begins
  with them in typed order (typed control keys that come back literally may sit among
  them). Matching stops at the first other character; the rest of the chunk is ignored.
* While a line is still open, echoed keys are recorded at once, verbatim.
* Once a line has ended with keys still pending, the output that follows decides it: if it
  echoes all of them (then a line break, when Enter ended the line) they are recorded
  verbatim, so fast typing and pastes whose echo trails the Enter are kept; the first output
  chunk that does not masks every unrecorded printable key of that line.
* Masking writes one ``*`` per key; consecutive masked keys share one event, stamped with
  the first key's time (so keystroke timing is not kept).
* ``flush_pending()`` (session end) masks whatever is still pending: fail closed. More than
  ``max_pending`` keys waiting masks the oldest line.

Limits (each covered by a test)
-------------------------------
* Programs that do not echo keys literally (vim, less, top, tmux, shells that repaint the
  whole line, tab completion that rewrites it) get those keys masked: over-masking only; the
  output stream, recorded in full, still shows the screen.
* Programs that echo ``*`` for each key get the keys masked (their output shows the stars).
* Slow echo: once the line has ended, other output arriving before the echo masks it.
* Type-ahead and multi-line pastes: a line typed before the previous command finished is
  masked, because its echo comes after that command's output.
* Editing keys inside one packet (``ab<BS>c`` sent together) whose echo is not literal stop
  the matching: keys after them are masked (the whole line, if it had already ended).
* Coincidence: while a line is open, output that happens to begin with the very key just
  typed counts as its echo. A key typed at a no-echo prompt can so be recorded verbatim if
  unrelated output starting with that same character arrives before the next key.
* One ``*`` per key reveals a masked entry's length, as a terminal showing stars would.
* Alt+key (ESC and a character in one packet) is recorded as a control key, unchecked.
* Output is decoded per chunk, with no carry-over: an echo whose multibyte character is
  split across two chunks does not match (masked). Only the first 16 KiB of a chunk is read.
"""

from __future__ import annotations

import codecs

from bastion.recording.model import Event

MASK = "*"
ESC = "\x1b"
_LINE_END = frozenset("\r\n")
_BREAK = frozenset("\x03\x04")  # ^C, ^D: end the line without a line break in the echo
_STRING_INTRO = frozenset("]P_^X")  # OSC, DCS, APC, PM, SOS: run to BEL or ST
_MATCH_WINDOW = 16 * 1024
_NO, _KEY, _EOL = 0, 1, 2


def _is_printable(text: str) -> bool:
    if len(text) != 1:
        return False  # an escape sequence
    code = ord(text)
    return not (code < 0x20 or 0x7F <= code < 0xA0)


def _csi_end(text: str, i: int) -> int:
    n = len(text)
    while i < n and "\x20" <= text[i] <= "\x3f":
        i += 1
    return i + 1 if i < n and "\x40" <= text[i] <= "\x7e" else i


def _string_end(text: str, i: int) -> int:
    n = len(text)
    while i < n:
        if text[i] == "\x07":
            return i + 1
        if text[i] == ESC and text[i + 1 : i + 2] == "\\":
            return i + 2
        i += 1
    return n


def escape_end(text: str, start: int) -> int:
    """Index just past the escape sequence starting at text[start] (an ESC), within text."""
    i = start + 1
    if i >= len(text):
        return len(text)
    intro = text[i]
    if intro == "[":
        end = _csi_end(text, i + 1)
    elif intro in _STRING_INTRO:
        end = _string_end(text, i + 1)
    elif intro == "O":  # SS3: one more character (F1-F4, keypad)
        end = i + 2
    elif "\x20" <= intro <= "\x2f":  # nF: intermediates, then one final character
        while i < len(text) and "\x20" <= text[i] <= "\x2f":
            i += 1
        end = i + 1
    elif intro < " " or intro == "\x7f":  # a lone ESC key, then a control key
        end = i
    else:  # ESC and one character: Alt+key, or a two-character escape
        end = i + 1
    return min(end, len(text))


def split_keys(text: str) -> list[str]:
    """Cut typed text into keys: one character, or one whole escape sequence."""
    if ESC not in text:
        return list(text)
    keys: list[str] = []
    i, n = 0, len(text)
    while i < n:
        j = escape_end(text, i) if text[i] == ESC else i + 1
        keys.append(text[i:j])
        i = j
    return keys


def _skip_escapes(text: str, i: int) -> int:
    while i < len(text) and text[i] == ESC:
        i = escape_end(text, i)
    return i


class _Line:
    """Keys typed since the last line end; decided once echoed, ended and fully matched."""

    __slots__ = ("closed", "eol_seen", "masked", "unechoed", "want_eol")

    def __init__(self) -> None:
        self.closed = False
        self.masked = False
        self.unechoed = 0  # printable keys still waiting for their echo
        self.want_eol = False  # ended by Enter while keys waited: the echo needs a line break
        self.eol_seen = False

    def decided(self) -> bool:
        """True for an ended line whose keys were all echoed, or a masked one."""
        return self.masked or (
            self.closed and self.unechoed == 0 and (self.eol_seen or not self.want_eol)
        )


class _Key:
    __slots__ = ("echoed", "elapsed", "ends_line", "enter", "line", "printable", "text")

    def __init__(self, text: str, elapsed: float, line: _Line) -> None:
        self.text = text
        self.elapsed = elapsed
        self.line = line
        self.printable = _is_printable(text)
        self.enter = text in _LINE_END
        self.ends_line = self.enter or text in _BREAK
        self.echoed = False


class EchoRedactor:
    """Records typed input verbatim only when the target echoed it; masks the rest."""

    def __init__(self, max_pending: int = 4096) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self._max = max_pending
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._keys: list[_Key] = []  # typed keys not yet both recorded and passed by the echo
        self._emitted = 0  # keys[:emitted] are recorded
        self._cursor = 0  # keys[:cursor] are passed by the echo
        self._line = _Line()
        self._last_elapsed = 0.0
        self._pieces: list[tuple[float, list[str]]] = []
        self._last_masked = False

    @property
    def pending(self) -> int:
        """How many typed keys are held, not yet recorded."""
        return len(self._keys) - self._emitted

    def input(self, data: bytes, elapsed: float) -> list[Event]:
        """Take typed bytes; return the input events that can be recorded now."""
        self._last_elapsed = elapsed
        for text in split_keys(self._decoder.decode(data)):
            self._type(text, elapsed)
        self._prune()
        return self._drain()

    def output(self, data: bytes, elapsed: float) -> list[Event]:
        """Take output bytes (the target's reply); return input events their echo released."""
        if not self._keys:
            return []  # nothing waits for an echo: bulk output costs nothing here
        text = data[:_MATCH_WINDOW].decode("utf-8", errors="replace")
        i = 0
        while self._emitted < len(self._keys):
            i = _skip_escapes(text, i)
            if i >= len(text):
                break
            matched, at = self._echo(text[i])
            if matched != _NO:
                i += 1
                if matched == _EOL and text[i - 1] == "\r" and text[i : i + 1] == "\n":
                    i += 1
                self._release()
            elif at >= 0 and self._keys[at].line.closed:
                self._mask(self._keys[at].line)
            else:
                break
        self._prune()
        return self._drain()

    def flush_pending(self) -> list[Event]:
        """Session end: mask everything still pending (fail closed) and return it."""
        for text in split_keys(self._decoder.decode(b"", final=True)):
            self._type(text, self._last_elapsed)
        while self._emitted < len(self._keys):
            self._mask(self._keys[self._emitted].line)
        self._prune()
        return self._drain()

    def _type(self, text: str, elapsed: float) -> None:
        line = self._line
        if line.closed or line.masked:
            line = self._line = _Line()
        key = _Key(text, elapsed, line)
        self._keys.append(key)
        if key.ends_line:
            line.closed = True
            line.want_eol = key.enter and line.unechoed > 0
        elif key.printable:
            line.unechoed += 1
        self._release()
        while self.pending > self._max:
            self._mask(self._keys[self._emitted].line)

    def _echo(self, char: str) -> tuple[int, int]:
        """Match one output character with the next expected echo; also say which key decided."""
        keys, k = self._keys, self._cursor
        while k < len(keys):
            key = keys[k]
            if key.printable:
                if key.text != char:
                    return _NO, k
                key.echoed = True
                key.line.unechoed -= 1
                self._cursor = k + 1
                return _KEY, k
            mandatory = key.enter and key.line.want_eol and not key.line.eol_seen
            if key.text == char or (key.enter and char in _LINE_END):
                key.line.eol_seen = key.line.eol_seen or key.enter
                self._cursor = k + 1
                return (_EOL if key.enter else _KEY), k
            if mandatory:
                return _NO, k
            k += 1  # a control key need not be echoed literally
        return _NO, -1

    def _release(self) -> None:
        """Record, in typed order, every key at the front that no longer waits for an echo."""
        keys = self._keys
        while self._emitted < len(keys):
            key = keys[self._emitted]
            line = key.line
            if line.closed or line.masked:
                if not line.decided():
                    return
            elif key.printable and not key.echoed:
                return
            hide = line.masked and key.printable
            self._emit(key.elapsed, MASK if hide else key.text, masked=hide)
            self._emitted += 1

    def _mask(self, line: _Line) -> None:
        """Record a line now with its printable keys masked; stop expecting its echo."""
        line.masked = True
        k = self._emitted
        while k < len(self._keys) and self._keys[k].line is not line:
            k += 1
        while k < len(self._keys) and self._keys[k].line is line:
            k += 1
        self._cursor = max(self._cursor, k)
        self._release()

    def _prune(self) -> None:
        """Forget keys recorded and passed by the echo; all of them once nothing waits."""
        if self._emitted == len(self._keys):
            done = len(self._keys)
        else:
            done = min(self._emitted, self._cursor)
        if done:
            del self._keys[:done]
            self._emitted -= done
            self._cursor = max(0, self._cursor - done)

    def _emit(self, elapsed: float, text: str, masked: bool) -> None:
        pieces = self._pieces
        if pieces and (pieces[-1][0] == elapsed or (masked and self._last_masked)):
            pieces[-1][1].append(text)
        else:
            pieces.append((elapsed, [text]))
        self._last_masked = masked

    def _drain(self) -> list[Event]:
        events = [Event(elapsed, "i", "".join(parts)) for elapsed, parts in self._pieces]
        self._pieces = []
        self._last_masked = False
        return events
