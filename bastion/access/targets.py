"""Targets as admins manage them: add (the credential sealed at once), list, trust, remove.

The CLI (`bastion target ...`) and the web console both call this; the host key itself is
fetched by the caller (an SSH connection is a door's business) and handed in to be checked
against what the admin confirmed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bastion.audit import Store
from bastion.audit.records import Target
from bastion.config import TARGET_NAME, Config
from bastion.errors import Denied, UsageError
from bastion.identity.sealing import SecretBox


def check_target_name(name: str) -> None:
    if not TARGET_NAME.fullmatch(name):
        raise UsageError(
            f"bad target name {name!r}: use lower-case letters, digits, '.', '_' and '-'"
        )


def check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise UsageError(f"--port {port} is not a TCP port (1-65535)")


def port_of(text: str) -> int:
    """A port typed into a form or a JSON string."""
    if not text.strip().isascii() or not text.strip().isdigit():
        raise UsageError(f"port {text!r} is not a number")
    port = int(text.strip())
    check_port(port)
    return port


def ssh_private_key(text: str) -> bytes:
    """An unencrypted private key (OpenSSH or PEM), re-exported as OpenSSH for sealing."""
    import asyncssh  # noqa: PLC0415 - a heavy import most callers never need

    try:
        key = asyncssh.import_private_key(text)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise UsageError(f"not a usable unencrypted private key ({exc})") from exc
    exported: bytes = key.export_private_key("openssh")
    return exported


@dataclass
class Targets:
    store: Store
    config: Config
    box: SecretBox

    def add_ssh(self, *, name: str, host: str, port: int, login: str, private_key: bytes,
                actor: str) -> Target:  # fmt: skip
        """An SSH target reached as `login` with its own key; untrusted until its host key is
        pinned (`trust`)."""
        self._check(name, host, port, login)
        sealed = self.box.seal(private_key, context=f"target:{name}")
        return self.store.add_target(name=name, kind="ssh", host=host, port=port, login=login,
                                     database=None, secret_sealed=sealed, actor=actor)  # fmt: skip

    def add_postgres(self, *, name: str, host: str, port: int, user: str, database: str,
                     password: str, actor: str) -> Target:  # fmt: skip
        self._check(name, host, port, user)
        if not database.strip():
            raise UsageError("name the database the target's role connects to")
        if not password:
            raise UsageError("give the database role's password")
        sealed = self.box.seal(password.encode(), context=f"target:{name}")
        return self.store.add_target(name=name, kind="postgres", host=host, port=port,
                                     login=user, database=database, secret_sealed=sealed,
                                     actor=actor)  # fmt: skip

    def _check(self, name: str, host: str, port: int, login: str) -> None:
        check_target_name(name)
        check_port(port)
        if not host.strip() or any(c.isspace() for c in host):
            raise UsageError(f"bad host {host!r}")
        if not login.strip() or any(c.isspace() for c in login):
            raise UsageError(f"bad login {login!r}")

    def listed(self) -> list[dict[str, Any]]:
        return [self.row(t) for t in self.store.targets()]

    def row(self, target: Target) -> dict[str, Any]:
        """A target's row, with how a database target is reached and what is weak about it."""
        row = target.public()
        if target.kind == "postgres":
            policy = self.config.target_policy(target.name)
            row["tls"], row["upstream_auth"] = policy.tls, list(policy.upstream_auth)
            row["warnings"] = policy.database_warnings()
        return row

    def ssh_target(self, name: str) -> Target:
        """The SSH target whose host key is to be fetched (only SSH targets have one)."""
        target = self.store.target(name)
        if target.kind != "ssh":
            raise UsageError(f"{name} is a {target.kind} target; only SSH targets have host keys")
        return target

    def trust(self, name: str, presented: tuple[str, str], confirmed: str,
              actor: str) -> Target:  # fmt: skip
        """Pin the host key the target presented (its OpenSSH line and SHA256 fingerprint)
        when it is the one the admin confirmed; anything else is refused, nothing pinned."""
        line, fingerprint = presented
        self.ssh_target(name)
        if not confirmed or confirmed.strip() != fingerprint:
            raise Denied(f"{name} presents {fingerprint}, not {confirmed.strip()!r}; not trusted")
        return self.store.set_host_key(name, line, fingerprint, actor)

    def remove(self, name: str, actor: str) -> int:
        """Remove the target; its grants are revoked. Returns how many."""
        return self.store.remove_target(name, actor)
