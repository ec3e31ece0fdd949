"""What a command line and a non-terminal stdin say: scripts read from stdin, raw tunnels; pure.

`StdinCommands` rebuilds the command log of a session without a terminal whose program reads
its commands from stdin (``ssh host bash -s < script``, ``ssh -T host`` with commands piped
in): each non-blank line of stdin is one command, flagged as reconstructed from stdin.

`raw_tunnel` says whether an exec command (or one such line) opens a raw network tunnel
through the target: nc/ncat/netcat/socat/telnet run as a command, ``ssh -W``/``-L``/``-R``
/``-D``/``-J`` or a ProxyCommand, or a bash ``/dev/tcp`` / ``/dev/udp`` redirection.

Limits, each covered by a test in tests/ssh/test_streams.py:

- Lines are what the program was sent, not what it ran: a heredoc's body, a multi-line
  string and lines after ``exit`` are logged as lines too, and shell expansion is not done.
- Stdin that is not UTF-8 text (a NUL byte, invalid UTF-8) stops the rebuild: the stream is
  data, recorded and hashed, and one line says so.
- Lines longer than MAX_LINE characters are cut there and flagged.
- The tunnel check reads the command as the shell would split it (quotes, ``;``, ``|``,
  ``&&``, ``$(...)``, ``bash -c '...'`` two levels down, wrappers such as sudo, env, exec,
  timeout). It does not expand anything: a program named through a variable, ``eval`` or
  base64, a program that opens a socket itself (python, perl, curl) or a copied binary
  renamed is not seen. It stops the plain tools, not a determined insider, whose bytes are
  recorded all the same. A command that cannot be split (unbalanced quotes) is treated as
  a tunnel: refused where tunnels are.
- `TunnelGuard` checks what a shell without a terminal is sent: each line, lines joined by
  a trailing backslash, and the unfinished last line; stdin that is not text is refused.
  Lines typed at a terminal are not checked (they are recorded and logged).
"""

from __future__ import annotations

import codecs
import re
import shlex
from dataclasses import dataclass

MAX_LINE = 4096
FROM_STDIN = "from stdin, no terminal"
TUNNEL_TOOLS = frozenset({"nc", "ncat", "netcat", "nc.openbsd", "nc.traditional", "socat",
                          "telnet", "cryptcat", "pwncat"})  # fmt: skip
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish"})
INTERPRETERS = SHELLS | {"python", "python3", "perl", "ruby", "php", "node"}
_WRAPPERS = frozenset({"sudo", "doas", "env", "exec", "command", "nohup", "nice", "ionice",
                       "timeout", "stdbuf", "setsid", "time", "xargs", "busybox", "chroot",
                       "su", "runuser", "unbuffer", "script"})  # fmt: skip
_USER_SWITCH = frozenset({"sudo", "doas", "su", "runuser"})
_SSH_TUNNEL_FLAGS = re.compile(r"^-[A-Za-z]*[WLRDJ]|^-oProxy|^ProxyCommand|^ProxyJump", re.I)
_SEPARATORS = frozenset({";", "|", "||", "&", "&&", "(", ")", "\n", "$(", "`", "{", "}", "!"})
_DEV_NET = re.compile(r"/dev/(?:tcp|udp)/")
_KEYWORDS = frozenset({"if", "then", "else", "elif", "do", "while", "until"})
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True, slots=True)
class StdinLine:
    """One line of a non-terminal stdin: its text, and why it may be off (None: as sent)."""

    text: str
    note: str


class StdinCommands:
    """Feed stdin bytes; get back each complete non-blank line as a command."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self.binary = False
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
        self._partial = ""

    def feed(self, data: bytes) -> list[StdinLine]:
        """Lines completed by data; one "binary" note the first time data is not text."""
        if self.binary or not data:
            return []
        try:
            text = self._decoder.decode(data)
        except UnicodeDecodeError:
            text = None
        if text is None or "\x00" in text:
            self.binary = True
            return [StdinLine("", f"{FROM_STDIN}; binary data from here on, not read as lines")]
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        if len(self._partial) > self.max_line:  # keep memory bounded on a huge line
            lines.append(self._partial)
            self._partial = ""
        return [line for raw in lines if (line := self._line(raw)) is not None]

    @property
    def partial(self) -> str:
        """The line being sent, not yet ended by a newline."""
        return "" if self.binary else self._partial

    def flush(self) -> list[StdinLine]:
        """The last line, if stdin ended without a newline."""
        rest, self._partial = self._partial, ""
        found = None if self.binary else self._line(rest)
        return [found] if found is not None else []

    def _line(self, raw: str) -> StdinLine | None:
        text = raw.rstrip("\r")
        if not text.strip():
            return None
        if len(text) > self.max_line:
            return StdinLine(text[: self.max_line], f"{FROM_STDIN}; line too long")
        return StdinLine(text, FROM_STDIN)


class TunnelGuard:
    """Reads what a non-terminal stdin tells a shell; says why a line opens a raw tunnel.

    Checks each line as it completes, lines joined by a trailing backslash as one, and the
    unfinished last line too (a shell runs it at end of input). Stdin that is not text
    cannot be checked and is refused: a shell runs lines around a NUL byte all the same.
    """

    def __init__(self) -> None:
        self._lines = StdinCommands(max_line=1 << 20)
        self._continued = ""

    def feed(self, data: bytes) -> str | None:
        """Why the data sends the shell a raw tunnel (or unreadable input), else None."""
        found = self._lines.feed(data)
        if self._lines.binary:
            return "input to a shell that is not text, which cannot be checked"
        for line in found:
            text = self._continued + line.text
            if _continues(text):
                self._continued = text[:-1]
                continue
            self._continued = ""
            if why := raw_tunnel(text):
                return why
        why = raw_tunnel(self._continued + self._lines.partial)
        return why if why and "cannot be split" not in why else None


def _continues(text: str) -> bool:
    """True when a line ends with an unescaped backslash (the shell joins the next one)."""
    return (len(text) - len(text.rstrip("\\"))) % 2 == 1


def _words(command: str) -> list[str] | None:
    """The command split as a shell would, separators as their own words; None if it can't."""
    text = command.replace("\\\n", " ").replace("$(", " ( ").replace("`", " ` ")
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|()\n")
    lexer.whitespace = " \t\r"  # a newline ends a command (a pasted block, a script)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        return list(lexer)
    except ValueError:
        return None


def _simple_commands(words: list[str]) -> list[list[str]]:
    """The words of each simple command, split at ;, |, &&, ||, &, (, ), $( and `."""
    found: list[list[str]] = []
    current: list[str] = []
    for word in [*words, ";"]:
        if word in _SEPARATORS or set(word) <= set(";&|()\n"):
            if current:
                found.append(current)
            current = []
        else:
            current.append(word)
    return found


def _program_at(simple: list[str], i: int = 0) -> int:
    """Index of the first word from i on that is not an assignment, flag, number or a shell
    keyword before a command (`do rm -rf`, `then nc`)."""
    while i < len(simple) and (
        _ASSIGNMENT.match(simple[i]) or simple[i].startswith("-") or simple[i].isdigit()
        or simple[i] in _KEYWORDS
    ):  # fmt: skip
        i += 1
    return i


def _candidates(simple: list[str]) -> list[list[str]]:
    """Where the program may start: after wrappers (sudo -u root, timeout 5s, env X=1),
    the first word and, since a wrapper's option may take a value, the one after it."""
    i = _program_at(simple)
    wrapped = False
    while i < len(simple) and simple[i].rsplit("/", 1)[-1] in _WRAPPERS:
        i, wrapped = _program_at(simple, i + 1), True
    found = [simple[i:]] if i < len(simple) else []
    after = _program_at(simple, i + 1) if wrapped else len(simple)
    if after < len(simple):
        found.append(simple[after:])
    return found


def raw_tunnel(command: str, depth: int = 0) -> str | None:
    """Why the command opens a raw network tunnel through the target, or None."""
    if _DEV_NET.search(command):
        return "a /dev/tcp or /dev/udp redirection"
    words = _words(command)
    if words is None:
        return "a command line that cannot be split (unbalanced quotes)"
    for simple in _simple_commands(words):
        for argv in _candidates(simple):
            found = _tunnel_program(argv)
            if found:
                return found
    for i, word in enumerate(words[:-1]):
        if word == "-c" and depth < 2 and (found := raw_tunnel(words[i + 1], depth + 1)):
            return found
    return None


def command_argvs(command: str, depth: int = 0) -> list[list[str]] | None:
    """Every argv a command line may run: each simple command from its program on, each
    wrapper's (sudo, env, doas) and what it runs, and what a `-c` argument runs, two levels
    down; None when the line cannot be split (unbalanced quotes)."""
    words = _words(command)
    if words is None:
        return None
    found: list[list[str]] = []
    for simple in _simple_commands(words):
        at = _program_at(simple)
        while at < len(simple):  # wrappers and what they run, each as its own argv
            found.append(simple[at:])
            if simple[at].rsplit("/", 1)[-1] not in _WRAPPERS:
                break
            at = _program_at(simple, at + 1)
        found += _candidates(simple)
    for i, word in enumerate(words[:-1]):
        if word == "-c" and depth < 2:
            found += command_argvs(words[i + 1], depth + 1) or []
    return found


def programs(command: str) -> set[str]:
    """The programs a command line may run (see command_argvs); empty when it cannot be split."""
    return {argv[0].rsplit("/", 1)[-1] for argv in command_argvs(command) or [] if argv}


def _tunnel_program(argv: list[str]) -> str | None:
    name = argv[0].rsplit("/", 1)[-1] if argv else ""
    if name in TUNNEL_TOOLS:
        return f"the raw network tool {name}"
    if name == "ssh" and any(_SSH_TUNNEL_FLAGS.search(arg) for arg in argv[1:]):
        return "ssh forwarding or proxying (-W, -L, -R, -D, -J, ProxyCommand)"
    return None


def reads_commands_from_stdin(command: str | None) -> bool:
    """True when the exec runs a shell or interpreter that takes its script from stdin."""
    if command is None:
        return True  # a shell channel
    simple = _simple_commands(_words(command) or [])
    return len(simple) == 1 and _reads_stdin(simple[0])


def _reads_stdin(simple: list[str]) -> bool:
    start, switch = _program_at(simple), ""
    while start < len(simple) and simple[start].rsplit("/", 1)[-1] in _WRAPPERS:
        name = simple[start].rsplit("/", 1)[-1]
        switch = name if name in _USER_SWITCH else switch
        start = _program_at(simple, start + 1)
    argv = simple[start:]
    login_shell = not argv or (switch in ("su", "runuser") and len(argv) == 1)
    if switch and "-c" not in simple and login_shell:  # sudo -i, sudo su -, su - bob
        return True
    if not argv or argv[0].rsplit("/", 1)[-1] not in INTERPRETERS:
        return False
    rest = argv[1:]
    return "-c" not in rest and "-e" not in rest and all(arg.startswith("-") for arg in rest)


def reads_secret_first(command: str | None) -> bool:
    """True for sudo -S (and --stdin): the first line of stdin is a password."""
    words = _words(command or "") or []
    for i, word in enumerate(words):
        if word.rsplit("/", 1)[-1] == "sudo":
            for flag in words[i + 1 :]:
                if flag == "--stdin" or re.fullmatch(r"-[A-Za-z]*S[A-Za-z]*", flag):
                    return True
                if not flag.startswith("-"):
                    break
    return False
