"""What a reload (SIGHUP, `bastion reload`) may change in a running bastion, and how it says so.

A reload reads the configuration file with the same checks as a start (load_config) and the
TLS certificate and key. A changed setting that only a restart can apply (a listener, a path,
the store, the node's name, what is built once at start) keeps its running value, and the
outcome line names it; the rest is applied to sessions that start from then on."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import ssl
import stat
import tempfile
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.config import Config, Paths, load_config
from bastion.config_cluster import host_node_name
from bastion.config_schema import SETTINGS
from bastion.errors import ConfigError
from bastion.privatefiles import write_new

STOPPING = "node stopping: the bastion is shutting down"  # a stop's end of a live session

# Keys (or whole sections) a running node cannot change: what they configure is built once at
# start (listeners, the store, the uploader, the anchorer, the notifier, the report scheduler,
# the doors' limiters and logging, the metrics listener and its token).
RESTART_ONLY: tuple[str, ...] = (
    "listeners", "paths", "store", "cluster", "recordings", "ssh", "postgres", "logging",
    "notify", "reports", "audit.anchors", "audit.anchor_every", "sessions.drain", "metrics",
    "retention",  # its schedule starts with serve, or not at all
)  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """A reload's outcome before it is applied: the config to run with (restart-only keys
    keep their running values), what changed, and what needs a restart."""

    config: Config
    changed: tuple[str, ...]
    needs_restart: tuple[str, ...]

    def line(self) -> str:
        """The one line the operator reads."""
        if self.needs_restart:
            keys = ", ".join(self.needs_restart)
            return f"reloaded: {keys} changed: needs a restart; the rest applied"
        if not self.changed:
            return "reloaded: no setting changed (TLS material re-read)"
        return f"reloaded: {len(self.changed)} setting(s) changed, applied to new sessions"


def _restart_only(key: str) -> bool:
    return any(key == prefix or key.startswith(prefix + ".") for prefix in RESTART_ONLY)


def _get(config: object, key: str) -> object:
    value = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _carry(new: Any, old: Any, parts: Sequence[str]) -> Any:
    """`new` with the value at `parts` taken from `old` (frozen dataclasses, nested)."""
    head = parts[0]
    if len(parts) == 1:
        return dataclasses.replace(new, **{head: getattr(old, head)})
    inner = _carry(getattr(new, head), getattr(old, head), parts[1:])
    return dataclasses.replace(new, **{head: inner})


def plan(running: Config, read: Config) -> Plan:
    """Compare the running config with the one just read: every setting by its key, the
    [targets.NAME] tables by name."""
    changed: list[str] = []
    restart: list[str] = []
    config = read
    for setting in SETTINGS:
        if _get(running, setting.key) == _get(read, setting.key):
            continue
        if _restart_only(setting.key):
            restart.append(setting.key)
            config = _carry(config, running, setting.key.split("."))
        else:
            changed.append(setting.key)
    if running.export != read.export:  # the [export.NAME] sinks' workers start with serve
        restart.append("export")
        config = dataclasses.replace(config, export=running.export)
    names = sorted(set(running.targets) | set(read.targets))
    changed += [f"targets.{n}" for n in names if running.targets.get(n) != read.targets.get(n)]
    return Plan(config, tuple(changed), tuple(restart))


def tls_context(paths: Paths) -> ssl.SSLContext | None:
    """A server context with the certificate and key on disk now (None: no certificate);
    ssl.SSLError or OSError when they cannot be used."""
    if not paths.tls_cert.exists():
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(paths.tls_cert, paths.tls_key)
    return context


@contextmanager
def tls_snapshot(paths: Paths) -> Iterator[Paths]:
    """`paths` with the TLS certificate and key read once into private copies for this
    reload, so the check and every door load the very same pair (a renewal writing the files
    meanwhile cannot hand one door a mismatched pair); the originals when there is no
    certificate or no copy can be made (the check then reads them and says why)."""
    try:
        cert, key = paths.tls_cert.read_bytes(), paths.tls_key.read_bytes()
        folder = Path(tempfile.mkdtemp(prefix=".reload-", dir=paths.tls_key.parent))
    except OSError:
        yield paths
        return
    try:
        write_new(folder / "cert.pem", cert, 0o600)
        write_new(folder / "key.pem", key, 0o600)
        yield dataclasses.replace(paths, tls_cert=folder / "cert.pem", tls_key=folder / "key.pem")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def tls_problem(paths: Paths) -> str | None:
    """Why the TLS certificate and key on disk cannot be loaded, in one line, else None."""
    try:
        tls_context(paths)
    except ssl.SSLError as exc:
        return f"paths.tls_key: the certificate and key cannot be used: {exc.reason or exc}"
    except OSError as exc:
        return f"paths.tls_key: cannot read the certificate or key: {exc.strerror or exc}"
    return None


def file_bytes(path: Path) -> bytes | None:
    """A file's bytes, read once (None: it cannot be read; load_config then says why)."""
    try:
        return path.read_bytes()
    except OSError:
        return None


def file_digest(path: Path) -> str | None:
    """SHA-256 of a file's bytes (None: it cannot be read), to tell a changed host key."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


# --- the serve file: how `bastion reload` finds the running server and reads its answer ---


def serve_file(config: Config) -> Path:
    """Beside the store (the node's state directory), named after the node."""
    return _serve_file(config.paths.store, config.cluster.node_name())


def _serve_file(store: Path, node: str) -> Path:
    return store.parent / f"bastion-serve.{node}.json"


def serve_file_of(path: Path) -> Path:
    """The serve file for the configuration at `path`, found even while the file fails its
    checks (the running server is to read it and refuse it, in its own words): only the
    store's path and the node's name are read. ConfigError when the file is no TOML at all."""
    try:
        return serve_file(load_config(path))
    except ConfigError as exc:
        problem = exc
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8-sig"))
        store = raw.get("paths", {}).get("store", str(Paths().store))
        node = raw.get("cluster", {}).get("node", "") or host_node_name()
        base = Path(os.path.abspath(path.expanduser())).parent
        return _serve_file(Path(os.path.abspath(base / Path(str(store)).expanduser())), node)
    except (OSError, ValueError, AttributeError, TypeError):
        raise problem from None


def write_serve_file(path: Path, state: dict[str, object]) -> None:
    """Replace the serve file in one step (written new beside it, then renamed over it)."""
    part = path.with_name(f".{path.name}.{os.getpid()}")
    part.unlink(missing_ok=True)
    write_new(part, json.dumps(state).encode(), 0o600)
    os.replace(part, path)


def read_serve_file(path: Path) -> dict[str, Any] | None:
    """The serve file's state, or None when there is none (or it is not what serve wrote)."""
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) and isinstance(found.get("pid"), int) else None


def is_bastion_serve(pid: int, serve_file: Path) -> bool:
    """Whether `pid` is a `bastion serve` of this user, or (for root) of the user who owns
    the serve file: a stale or planted serve file must not make `bastion reload` signal
    another process."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        owner = os.stat(f"/proc/{pid}").st_uid
        found = os.lstat(serve_file)  # a link would lend it the owner of what it names
    except OSError:
        return False
    if not stat.S_ISREG(found.st_mode):
        return False
    wrote = found.st_uid
    mine = owner == os.getuid() or (os.getuid() == 0 and owner == wrote)
    return mine and b"serve" in argv and any(b"bastion" in a for a in argv)
