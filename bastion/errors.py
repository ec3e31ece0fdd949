"""Errors that reach people, each with the exit code the CLI returns for it."""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    """Process exit codes; distinct so scripts can tell failures apart."""

    OK = 0
    FAILURE = 1  # an unexpected internal error (a bug): traceback is logged
    USAGE = 2  # the command line itself was wrong (argparse uses 2 too)
    CONFIG = 3  # the configuration file is missing or invalid
    NOT_FOUND = 4  # a named user, target, grant or session does not exist
    CONFLICT = 5  # it exists already, or the state forbids the change
    DENIED = 6  # a check refused: bad code, locked user, no grant
    TAMPERED = 7  # audit verification found an edited, deleted or reordered row
    STORE = 8  # the store or the secrets key could not be used
    UNREACHABLE = 9  # a target could not be reached or refused the bastion's login


class BastionError(Exception):
    """A failure explained in one line, shown without a traceback."""

    exit_code: Exit = Exit.FAILURE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(BastionError):
    """The configuration names a file, a key and what is wrong with it."""

    exit_code = Exit.CONFIG

    def __init__(self, path: str, key: str, problem: str) -> None:
        super().__init__(f"{path}: {key}: {problem}")
        self.path = path
        self.key = key
        self.problem = problem


class NotFound(BastionError):
    exit_code = Exit.NOT_FOUND


class Conflict(BastionError):
    exit_code = Exit.CONFLICT


class Denied(BastionError):
    exit_code = Exit.DENIED


class StoreLost(Denied):
    """This node has not reached its store for longer than [cluster] store_grace: no login."""


class UsageError(BastionError):
    exit_code = Exit.USAGE


class StoreError(BastionError):
    """The store cannot be read or written; callers must fail closed."""

    exit_code = Exit.STORE


class SealError(BastionError):
    """A secret could not be sealed or opened (wrong key, damaged blob)."""

    exit_code = Exit.STORE


class Unreachable(BastionError):
    """A target could not be reached, or refused the bastion's own login."""

    exit_code = Exit.UNREACHABLE
