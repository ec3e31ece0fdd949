"""`bastion doctor`'s file checks: the config, the state directories, the private keys, the
public TLS files and the certificate's expiry. Only stat() and reads; nothing is changed.

A key file that is a symlink is judged by what it points to (a link to a world-readable file
fails, and says it is a link), and its directory too: whoever may write there may swap it.
"""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path

from cryptography import x509

from bastion.commands.doctor import Finding, Host, fail, ok, warn
from bastion.config import SECRETS_KEY_ENV

EXPIRY_WARN = timedelta(days=14)
_CERT_LIMIT = 1 << 20  # a certificate chain is a few KiB; read no more than this
_RESTORE = "restore it from the backup of the state directory"


def _uid() -> int:
    return os.geteuid()


def _owner_differs(check: str, shown: str, info: os.stat_result, host: Host) -> Finding | None:
    """A warning when a file is not owned by the state directory's owner (the service user)."""
    try:
        home_uid = host.home.stat().st_uid
    except OSError:
        return None
    if info.st_uid == home_uid:
        return None
    return warn(check, f"{shown} is owned by uid {info.st_uid}, the state directory {host.home}"
                f" by uid {home_uid}", f"chown {home_uid} {shown}")  # fmt: skip


def config_file(host: Host) -> list[Finding]:
    path = host.config.path
    info = path.stat()
    if stat.S_IMODE(info.st_mode) & 0o022:
        return [fail("config file", f"{path} can be changed by other users (mode"
                     f" {stat.S_IMODE(info.st_mode):04o})", f"chmod go-w {path}")]  # fmt: skip
    return [ok("config file", f"{path} can be changed by its owner only")]


def _directory(
    check: str, path: Path, host: Host, *, private: bool, later: bool = False
) -> list[Finding]:
    """A directory only the service writes (and, `private`, reads); `later`: one the bastion
    makes when it first needs it, so only its parent must be writable while it is missing."""
    try:
        info = path.stat()
    except FileNotFoundError:
        if later and os.access(path.parent, os.W_OK):
            return [ok(check, f"{path} will be made when first needed")]
        return [fail(check, f"{path} does not exist", f"mkdir -m 700 {path} (as the service user)")]
    problem = _directory_problem(check, path, info, private=private)
    if problem is not None:
        return [problem]
    differs = _owner_differs(check, str(path), info, host)
    return [differs] if differs else [ok(check, f"{path} (mode {stat.S_IMODE(info.st_mode):04o})")]


def _directory_problem(
    check: str, path: Path, info: os.stat_result, *, private: bool
) -> Finding | None:
    if not stat.S_ISDIR(info.st_mode):
        return fail(check, f"{path} is not a directory", "point [paths] at a directory")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o022:
        return fail(check, f"{path} can be written by other users (mode {mode:04o})",
                    f"chmod go-w {path}")  # fmt: skip
    if private and mode & 0o007:
        return fail(check, f"{path} can be read by other users (mode {mode:04o})",
                    f"chmod 700 {path}")  # fmt: skip
    if not os.access(path, os.W_OK):
        return fail(check, f"{path} cannot be written by uid {_uid()}",
                    "chown it to the service's user, or run doctor as it")  # fmt: skip
    return None


def directories(host: Host) -> list[Finding]:
    """The state directory, the store's (SQLite), recordings and reports: they exist, only the
    service writes them, and recordings (session contents) only it reads."""
    paths = host.config.paths
    found = _directory("state directory", host.home, host, private=False)
    if not host.config.store.on_postgresql and paths.store.parent != host.home:
        found += _directory("store directory", paths.store.parent, host, private=True)
    found += _directory("recordings", paths.recordings, host, private=True)
    found += _directory("reports", paths.reports, host, private=True, later=True)
    return found


def private_file(check: str, path: Path, host: Host, missing: str) -> list[Finding]:
    """A file only the service may read: present, regular, mode 0600 or stricter (through a
    symlink, its target's), its directory not writable by others, readable by this user."""
    try:
        linked = stat.S_ISLNK(os.lstat(path).st_mode)
        info = path.stat()
    except PermissionError:
        return [fail(check, f"{path} cannot be reached by uid {_uid()} (permission denied)",
                     "run doctor as the service's user, or chown the file to it")]  # fmt: skip
    except FileNotFoundError:
        if path.is_symlink():
            return [fail(check, f"{path} is a symlink to {os.path.realpath(path)}, which does"
                         " not exist", missing)]  # fmt: skip
        return [fail(check, f"{path} is missing", missing)]
    real = Path(os.path.realpath(path))
    shown = f"{path} (a symlink to {real})" if linked else str(path)
    mode = stat.S_IMODE(info.st_mode)
    problem = _private_problem(check, shown, real, info, missing)
    if problem is not None:
        return [problem]
    if linked:
        return [warn(check, f"{shown} is a symlink (mode {mode:04o}): whoever can change the"
                     f" link can swap the file", f"replace the link by the file: mv {real}"
                     f" {path}")]  # fmt: skip
    differs = _owner_differs(check, shown, info, host)
    return [differs] if differs else [ok(check, f"{shown} (mode {mode:04o})")]


def _private_problem(
    check: str, shown: str, real: Path, info: os.stat_result, missing: str
) -> Finding | None:
    mode = stat.S_IMODE(info.st_mode)
    if not stat.S_ISREG(info.st_mode):
        return fail(check, f"{shown} is not a regular file", missing)
    if mode & 0o077:
        what = "readable" if mode & 0o044 else "accessible"
        return fail(check, f"{shown} is {what} by other users (mode {mode:04o})",
                    f"chmod 600 {real}")  # fmt: skip
    folder = real.parent.stat()
    if stat.S_IMODE(folder.st_mode) & 0o022 and not folder.st_mode & stat.S_ISVTX:
        return fail(check, f"{shown} is in {real.parent}, which other users can write (they"
                    " can replace the file)", f"chmod go-w {real.parent}")  # fmt: skip
    if not os.access(real, os.R_OK):
        return fail(check, f"{shown} cannot be read by uid {_uid()}",
                    "chown it to the service's user, or run doctor as it")  # fmt: skip
    return None


def _optional(config_path: Path, value: str) -> Path | None:
    return config_path.parent / Path(value).expanduser() if value else None


def key_files(host: Host) -> list[Finding]:
    """The secrets key (TOTP seeds and target credentials are sealed with it, outside the
    store), the SSH host key, the TLS key, the report signing key, password files, and the
    SQLite store itself."""
    config, paths = host.config, host.config.paths
    found: list[Finding] = []
    if os.environ.get(SECRETS_KEY_ENV):
        found.append(ok("secrets key", f"from the environment ({SECRETS_KEY_ENV})"))
    else:
        found += private_file("secrets key", paths.secrets_key, host,
                              f"{_RESTORE} (without it no TOTP seed or target credential"
                              f" opens), or set {SECRETS_KEY_ENV}")  # fmt: skip
    if config.listeners.ssh.enabled:
        found += private_file("ssh host key", paths.ssh_host_key, host,
                              f"{_RESTORE} (engineers' known_hosts pin it); a new one:"
                              f" ssh-keygen -t ed25519 -N '' -f {paths.ssh_host_key}, then"
                              " tell engineers its fingerprint")  # fmt: skip
    found += private_file("tls key", paths.tls_key, host, f"{_RESTORE}, with its certificate")
    found += private_file(
        "report signing key",
        paths.report_signing_key,
        host,
        f"{_RESTORE}; auditors check review packs with its public half",
    )
    extra = [
        ("store password file", _optional(config.path, config.store.password_file)),
        ("object store credentials", _optional(config.path, config.recordings.credentials_file)),
        ("smtp password file", _optional(config.path, config.reports.smtp_password_file)),
    ]
    for check, path in extra:  # fmt: skip
        if path is not None:
            found += private_file(check, path, host, f"write it again (mode 0600) at {path}")
    if not config.store.on_postgresql:
        found += private_file("store file", paths.store, host, "run `bastion init`, or restore"
                              f" {paths.store} from its backup")  # fmt: skip
    return found


def public_files(host: Host) -> list[Finding]:
    """The TLS certificate and its CA: present, and not writable by other users."""
    found = []
    for check, path in (("tls certificate file", host.config.paths.tls_cert),
                        ("tls ca file", host.config.paths.tls_ca)):  # fmt: skip
        try:
            info = path.stat()
        except FileNotFoundError:
            found.append(fail(check, f"{path} is missing", _RESTORE))
            continue
        mode = stat.S_IMODE(info.st_mode)
        if not stat.S_ISREG(info.st_mode):
            found.append(fail(check, f"{path} is not a regular file", _RESTORE))
        elif mode & 0o022:
            found.append(fail(check, f"{path} can be changed by other users (mode {mode:04o})",
                              f"chmod go-w {path}"))  # fmt: skip
        else:
            found.append(ok(check, f"{path} (mode {mode:04o})"))
    return found


def _read_regular(path: Path) -> bytes | None:
    """The file's first bytes, or None if it is missing or not a regular file (opened
    without blocking, so a FIFO in its place cannot hang doctor)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, _CERT_LIMIT)
    finally:
        os.close(fd)


def tls_certificate(host: Host) -> list[Finding]:
    """The certificate the web console and the PostgreSQL door present: valid now, and for
    more than two weeks."""
    path = host.config.paths.tls_cert
    try:
        data = _read_regular(path)
        if data is None:  # missing, or not a file: public_files said so
            return []
        cert = x509.load_pem_x509_certificate(data)
    except ValueError:
        return [fail("tls certificate", f"{path} holds no PEM certificate",
                     f"put the certificate chain (PEM) in {path}")]  # fmt: skip
    now = host.clock.now()
    until, since = cert.not_valid_after_utc, cert.not_valid_before_utc
    renew = f"renew it (the same names) in {path}, then `systemctl reload bastion`"
    if until <= now:
        return [fail("tls certificate", f"{path} expired on {until:%Y-%m-%d %H:%M} UTC", renew)]
    if since > now:
        return [fail("tls certificate", f"{path} is not valid before {since:%Y-%m-%d %H:%M} UTC"
                     " (or this host's clock is behind)", "check the clock, or the"
                     " certificate's dates")]  # fmt: skip
    left = until - now
    if left < EXPIRY_WARN:
        return [warn("tls certificate", f"{path} expires in {left.days} days, on"
                     f" {until:%Y-%m-%d} UTC", renew)]  # fmt: skip
    return [ok("tls certificate", f"{path} is valid until {until:%Y-%m-%d} UTC")]
