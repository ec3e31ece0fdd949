"""Whether a logged command line destroys (rm -rf, shutdown, a firewall flush, mkfs, dd to a
device) or escalates (sudo, su, doas, pkexec, sudoedit, systemd-run); read as a shell splits
it, wherever the flags stand, through wrappers and `sh -c`, each line of a pasted block, after
shell keywords (`do`, `then`), and after an editor's, pager's or client's shell escape (vi's
`:!cmd`, `:r !cmd`, `:w !cmd`; less's and ftp's `!cmd`; psql's `\\! cmd`; gdb's `shell cmd`);
pure."""

from __future__ import annotations

import re

from bastion.ssh.streams import command_argvs

ESCALATION = frozenset({"sudo", "su", "doas", "pkexec", "runuser", "sudoedit", "systemd-run",
                        "machinectl"})  # fmt: skip
_POWER = frozenset({"shutdown", "reboot", "halt", "poweroff"})
_SYSTEMCTL_POWER = frozenset({"poweroff", "reboot", "halt", "kexec", "emergency", "rescue"})
_FALLBACK = (  # lines that cannot be split: the plain spellings at least
    (re.compile(r"\brm\s+-\w*[rR]\w*f|\brm\s+-\w*f\w*[rR]"), "rm -rf"),
    (re.compile(r"\b(?:shutdown|reboot|halt|poweroff)\b"), "shutdown"),
    (re.compile(r"\b(?:ip6?tables\S*)\b.*\s(?:-F|--flush)\b"), "firewall flush"),
)


def _short(args: list[str], letters: str) -> bool:
    """A short-option cluster (-rvf) anywhere in args holds one of the letters."""
    return any(a.startswith("-") and not a.startswith("--") and set(a[1:]) & set(letters)
               for a in args)  # fmt: skip


def _rm(name: str, args: list[str]) -> bool:
    recursive = _short(args, "rR") or "--recursive" in args
    return name == "rm" and recursive and (_short(args, "f") or "--force" in args)


def _power(name: str, args: list[str]) -> bool:
    return (name in _POWER or (name in ("init", "telinit") and bool({"0", "6"} & set(args)))
            or (name == "systemctl" and bool(_SYSTEMCTL_POWER & set(args))))  # fmt: skip


def _flush(name: str, args: list[str]) -> bool:
    tables = re.fullmatch(r"ip6?tables(?:-\w+)?", name) is not None
    return (tables and (_short(args, "FX") or "--flush" in args)) or (
        name == "nft" and "flush" in args)  # fmt: skip


def _disk(name: str, args: list[str]) -> bool:
    return name.startswith("mkfs") or (name == "wipefs" and bool(args)) or (
        name == "dd" and any(a.startswith("of=/dev/") for a in args))  # fmt: skip


# A shell escape at the start of a line typed into a program: what follows runs in a shell.
_ESCAPE = re.compile(r"^\s*(?::[\s%.,$\d'<>+-]*(?:r(?:ead)?|w(?:rite)?)?\s*!+|!+|\\!|shell\s)"
                     r"\s*(?P<command>\S.*)$", re.DOTALL)  # fmt: skip


def shell_texts(command: str) -> list[str]:
    """The line, and what it runs in a shell when it is a program's shell escape."""
    escape = _ESCAPE.match(command)
    return [command, escape["command"]] if escape else [command]


_CHECKS = (("rm -rf", _rm), ("shutdown", _power), ("firewall flush", _flush),
           ("disk overwrite", _disk))  # fmt: skip


def _argv_destroys(argv: list[str]) -> str | None:
    name, args = argv[0].rsplit("/", 1)[-1], argv[1:]
    return next((what for what, check in _CHECKS if check(name, args)), None)


def destructive_command(line: str) -> str | None:
    """What makes the command destructive ("rm -rf", "shutdown", ...), or None."""
    return next((found for text in shell_texts(line) if (found := _destroys(text))), None)


def _destroys(command: str) -> str | None:
    argvs = command_argvs(command)
    if argvs is None:
        return next((name for pattern, name in _FALLBACK if pattern.search(command)), None)
    return next((found for argv in argvs if argv and (found := _argv_destroys(argv))), None)


def escalating(line: str) -> list[str]:
    """The programs in the command that run as another user (sudo, su, ...), sorted."""
    return sorted({name for text in shell_texts(line) for name in _escalates(text)})


def _escalates(command: str) -> list[str]:
    argvs = command_argvs(command)
    if argvs is None:
        return sorted(name for name in ESCALATION if re.search(rf"\b{name}\b", command))
    return sorted({argv[0].rsplit("/", 1)[-1] for argv in argvs if argv} & ESCALATION)
