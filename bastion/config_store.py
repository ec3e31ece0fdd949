"""The [store] section: the store on PostgreSQL (`url`), or, without it, the SQLite file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bastion.errors import ConfigError

if TYPE_CHECKING:
    from bastion.audit.location import PgLocation


@dataclass(frozen=True)
class StoreConfig:
    """`url` empty: the store is the SQLite file paths.store. Otherwise a PostgreSQL URL
    without a password (the password is the first line of `password_file`, mode 0600)."""

    url: str = ""
    password_file: str = ""  # relative to the config file's directory; "": no password
    schema: str = "public"
    head_file: str = "store.head"  # relative to the config file's directory

    @property
    def on_postgresql(self) -> bool:
        return bool(self.url)

    def problem(self) -> tuple[str, str] | None:
        """(key, what is wrong) for the first value that cannot work, else None. The password
        file is read only when the store is opened (a command that needs no store never does)."""
        if not self.url:
            if self.password_file:
                return "password_file", "is set, but [store] url is not: the store is SQLite"
            return None
        from bastion.audit.location import SCHEMA, check_url  # noqa: PLC0415 - no driver in it

        try:
            check_url(self.url)
        except ConfigError as exc:
            return exc.key.removeprefix("store."), exc.problem
        if not self.head_file.strip():
            return "head_file", "must not be empty"
        if not SCHEMA.fullmatch(self.schema):
            return "schema", f"{self.schema!r} is not a plain schema name"
        return None

    def where(self, config_file: Path, sqlite_file: Path) -> Path | PgLocation:
        """Where the store is: url's PostgreSQL location (its password file read now), else
        the SQLite file (paths.store)."""
        return self.location(config_file) if self.on_postgresql else sqlite_file

    def location(self, config_file: Path) -> PgLocation:
        """The PostgreSQL store's location (reads the password file now; ConfigError)."""
        from bastion.audit.location import PgLocation  # noqa: PLC0415

        password = None
        if self.password_file:
            password = config_file.parent / Path(self.password_file).expanduser()
        return PgLocation(
            self.url,
            password_file=password,
            schema=self.schema,
            head_file=config_file.parent / Path(self.head_file).expanduser(),
            source=str(config_file),
        )
