"""`bastion doctor`'s host checks: the clock's sync (TOTP codes depend on it), free disk for
recordings and the store, the store reachable and migrated, every target reachable, and the
anchor sinks. Nothing is written: a sink is probed by connecting, never sent an anchor."""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import stat
import subprocess
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bastion.commands.doctor import Finding, Host, fail, ok, warn

STA_UNSYNC = 0x0040  # <sys/timex.h>: the kernel's clock is not synchronised
TIME_ERROR = 5  # adjtimex()'s answer when the clock is not synchronised
MAX_ERROR_OK = 1_000_000  # microseconds: the kernel's estimate of its worst error, at most 1 s
STORE_SKEW_WARN = 2.0  # seconds between this host and the PostgreSQL store
STORE_SKEW_FAIL = 30.0  # one TOTP step
_NTP_FIX = "run an NTP client (chrony or systemd-timesyncd: timedatectl set-ntp true)"
_SSL_REQUEST = (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")  # PostgreSQL's SSLRequest


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    """struct timex (<sys/timex.h>, Linux), read with modes = 0: nothing is set."""

    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long),
                ("status", ctypes.c_int), ("constant", ctypes.c_long),
                ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
                ("time", _Timeval), ("tick", ctypes.c_long), ("ppsfreq", ctypes.c_long),
                ("jitter", ctypes.c_long), ("shift", ctypes.c_int), ("stabil", ctypes.c_long),
                ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
                ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int),
                ("_reserved", ctypes.c_int * 11)]  # fmt: skip


def kernel_sync() -> tuple[bool, int] | None:
    """(synchronised, maximum error in µs) as the kernel's NTP state says; None if unknown."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        timex = _Timex()
        state = libc.adjtimex(ctypes.byref(timex))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    unsynced = state == TIME_ERROR or bool(timex.status & STA_UNSYNC)
    return not unsynced, int(timex.maxerror)


def timedatectl_sync() -> bool | None:
    """What systemd says (NTPSynchronized), where timedatectl runs; None if it cannot say."""
    tool = shutil.which("timedatectl")
    if tool is None:
        return None
    try:
        done = subprocess.run([tool, "show", "--property=NTPSynchronized", "--value"],
                              capture_output=True, text=True, timeout=5, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    answer = done.stdout.strip()
    return {"yes": True, "no": False}.get(answer) if done.returncode == 0 else None


def clock_sync(host: Host) -> list[Finding]:
    """TOTP codes are good for about 30 s either side: an unsynchronised clock refuses good
    codes or accepts old ones. Unknown is a warning, never a pass."""
    kernel = kernel_sync()
    if kernel is not None and kernel[0]:
        if kernel[1] > MAX_ERROR_OK:
            return [warn("clock", f"synchronised, but the kernel's maximum error is"
                         f" {kernel[1] / 1e6:.1f} s", _NTP_FIX)]  # fmt: skip
        return [ok("clock", f"synchronised (maximum error {kernel[1] / 1000:.0f} ms)")]
    systemd = timedatectl_sync()
    if systemd:
        return [ok("clock", "synchronised (timedatectl: NTPSynchronized=yes)")]
    if kernel is None and systemd is None:
        return [warn("clock", "its synchronisation cannot be read (adjtimex, timedatectl)",
                     f"check it by hand; TOTP depends on it: {_NTP_FIX}")]  # fmt: skip
    return [warn("clock", "not synchronised by NTP (the kernel says STA_UNSYNC); TOTP codes"
                 " fail once it drifts by 30 s", _NTP_FIX)]  # fmt: skip


def _below(limit: float | int, total: int) -> int:
    return int(limit * total) if isinstance(limit, float) else limit


def free_disk(host: Host) -> list[Finding]:
    """Free space where recordings (the spool) and the SQLite store are written: a full disk
    ends every session (no session runs unrecorded)."""
    places = [("recordings disk", host.config.paths.recordings)]
    if not host.config.store.on_postgresql:
        places.append(("store disk", host.config.paths.store.parent))
    found, seen = [], set()
    for check, path in places:
        try:
            device = path.stat().st_dev
        except FileNotFoundError:
            continue  # directories() said so
        if device in seen:
            continue
        seen.add(device)
        usage = shutil.disk_usage(path)
        free = f"{usage.free / (1 << 30):.1f} GiB free of {usage.total / (1 << 30):.1f} GiB"
        fix = f"free space on the volume of {path}, or move it to a larger one"
        if usage.free < _below(host.limits.fail_free, usage.total):
            found.append(fail(check, f"{path}: nearly full, {free}", fix))
        elif usage.free < _below(host.limits.warn_free, usage.total):
            found.append(warn(check, f"{path}: {free}", fix))
        else:
            found.append(ok(check, f"{path}: {free}"))
    return found


def store(host: Host) -> list[Finding]:
    """The store answers, is migrated to this bastion's schema, and (PostgreSQL) its clock
    agrees with this host's."""
    from bastion.audit.peek import Peek  # noqa: PLC0415 - the store's package only here

    config = host.config
    where = config.store.where(config.path, config.paths.store)
    peek = Peek(where, config.cluster.node_name())
    try:
        have, shipped = peek.versions()
        their = peek.database_time()
        tampered = peek.guard_problems() if have == shipped else None
    finally:
        peek.close()
    found: list[Finding] = []
    if have < shipped:
        found.append(fail("store", f"{where} is at schema {have}, this bastion needs {shipped}",
                          "back the store up (`bastion store backup`), then run any bastion"
                          " command as the service's user, or start the service: the store"
                          " is migrated when it is opened"))  # fmt: skip
    elif have > shipped:
        found.append(fail("store", f"{where} is at schema {have}, newer than this bastion"
                          f" ({shipped})", "install the bastion release that made it"))  # fmt: skip
    else:
        found.append(ok("store", f"{where} answers, schema {have} (current)"))
    if tampered:
        found.append(fail("store guards", "; ".join(tampered),
                          "someone with the store's password changed its append-only guards:"
                          " run `bastion audit verify`, find who (the database's own logs),"
                          " change the store's password, and restore the guards from a backup"
                          " or the migration's text"))  # fmt: skip
    elif tampered is not None:
        found.append(ok("store guards", "the append-only triggers are as the migrations made"
                        " them"))  # fmt: skip
    if their is not None:
        skew = abs((their - host.clock.now()).total_seconds())
        text = f"this host and the store's PostgreSQL differ by {skew:.1f} s"
        fix = f"synchronise both clocks: {_NTP_FIX}"
        found.append(fail("store clock", text, fix) if skew > STORE_SKEW_FAIL
                     else warn("store clock", text, fix) if skew > STORE_SKEW_WARN
                     else ok("store clock", text))  # fmt: skip
    return found


def _probe(host: str, port: int, timeout: float, kind: str) -> str:
    """What the address answers: the SSH banner, or PostgreSQL's answer to an SSLRequest;
    OSError when it cannot be reached."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        if kind == "postgres":
            sock.sendall(_SSL_REQUEST)
            answer = sock.recv(1)
            if answer not in (b"S", b"N"):
                raise OSError(f"it answered {answer[:1]!r}, not as a PostgreSQL server")
            return "answers as PostgreSQL"
        banner = sock.recv(256).split(b"\r\n", 1)[0].split(b"\n", 1)[0]
        if not banner.startswith(b"SSH-"):
            raise OSError("it does not answer as an SSH server")
        return f"answers {banner.decode('ascii', 'replace')[:60]}"


def targets(host: Host) -> list[Finding]:
    """A TCP connection to every SSH and PostgreSQL target (as the store lists them)."""
    from bastion.audit.peek import Peek  # noqa: PLC0415

    config = host.config
    peek = Peek(config.store.where(config.path, config.paths.store), config.cluster.node_name())
    try:
        listed = peek.targets()
    finally:
        peek.close()
    if not listed:
        return [ok("targets", "none in the store yet")]

    def check(target: object) -> Finding:
        from bastion.audit.peek import TargetAddress  # noqa: PLC0415

        assert isinstance(target, TargetAddress)
        name = f"target {target.name} ({target.kind}, {target.host}:{target.port})"
        try:
            return ok(name, _probe(target.host, target.port, host.limits.connect_timeout,
                                   target.kind))  # fmt: skip
        except TimeoutError:
            what = f"no answer within {host.limits.connect_timeout:g} s"
        except OSError as exc:
            what = exc.strerror or str(exc)
        return fail(name, f"cannot be reached: {what}", "check the target is up and that this"
                    " host may reach it (firewall), or fix its address in the store")  # fmt: skip

    with ThreadPoolExecutor(max_workers=min(16, len(listed))) as pool:
        return list(pool.map(check, listed))


def _file_sink(path: Path) -> Finding:
    name = f"anchor sink file:{path}"
    if path.is_symlink():
        return fail(name, f"{path} is a symlink to {os.path.realpath(path)}",
                    "name the file itself in [audit] anchors")  # fmt: skip
    if path.exists():
        if not stat.S_ISREG(path.stat().st_mode) or not os.access(path, os.W_OK):
            return fail(name, f"{path} cannot be appended to by uid {os.geteuid()}",
                        f"chown {path} to the service's user")  # fmt: skip
        return ok(name, "the file can be appended to")
    if not os.access(path.parent, os.W_OK):
        return fail(name, f"{path.parent} cannot be written by uid {os.geteuid()}",
                    f"create {path.parent} for the service's user")  # fmt: skip
    return ok(name, "the file will be made at the first anchor")


def _syslog_sink(path: str) -> Finding:
    name = f"anchor sink syslog:{path}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(path)  # nothing is sent
        except OSError as exc:
            return fail(name, f"cannot reach {path}: {exc.strerror or exc}",
                        "start the local syslog daemon (rsyslog, journald's /dev/log)")  # fmt: skip
    return ok(name, "the local syslog socket takes datagrams")


def _network_sink(kind: str, where: str, timeout: float) -> Finding:
    from bastion.audit.anchors import WebhookSink  # noqa: PLC0415

    if kind == "udp":
        name, (address, number) = f"anchor sink syslog:udp://{where}", where.rsplit(":", 1)
        try:
            socket.getaddrinfo(address.strip("[]"), int(number), type=socket.SOCK_DGRAM)
        except OSError as exc:
            return fail(name, f"{address} does not resolve: {exc.strerror or exc}",
                        "fix the name in [audit] anchors")  # fmt: skip
        return warn(name, "resolves; UDP delivery cannot be confirmed without sending",
                    "check the syslog server's log holds bastion-anchor lines")  # fmt: skip
    parts = urllib.parse.urlsplit(where)
    name = f"anchor sink {WebhookSink(where).name}"  # no credentials, no query
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "", port), timeout=timeout).close()
    except OSError as exc:
        return fail(name, f"cannot be reached: {exc.strerror or exc}",
                    "check the receiver is up and reachable from this host")  # fmt: skip
    return ok(name, "accepts connections")


def anchor_sinks(host: Host) -> list[Finding]:
    """Each `[audit] anchors` sink can take a signed head (probed, never sent one)."""
    from bastion.audit.anchors import parse_spec  # noqa: PLC0415

    specs = host.config.audit.anchors
    if not specs:
        if host.config.store.on_postgresql:
            return [fail("anchor sinks", "none, and the store is on PostgreSQL (serve refuses"
                         " to start)", "add a sink to [audit] anchors")]  # fmt: skip
        return [warn("anchor sinks", "none: whoever has the store's files can cut events from"
                     " the chain's end unseen", "add a sink on another machine or mount to"
                     " [audit] anchors")]  # fmt: skip
    probes: dict[str, Callable[[str], Finding]] = {
        "file": lambda where: _file_sink(Path(where)),
        "syslog": _syslog_sink,
    }
    found = []
    for spec in specs:
        kind, where = parse_spec(spec)
        probe = probes.get(kind)
        found.append(probe(where) if probe else
                     _network_sink(kind, where, host.limits.connect_timeout))  # fmt: skip
    return found


def service_unit(host: Host) -> list[Finding]:
    """What the shipped unit lets the bastion write: only under the state directory
    (ProtectSystem=strict, ReadWritePaths); doctor itself runs outside that sandbox."""
    config, home = host.config, host.home
    found: list[Finding] = []
    written = [("recordings", config.paths.recordings), ("reports", config.paths.reports)]
    if not config.store.on_postgresql:
        written.append(("store", config.paths.store.parent))
    if config.retention.archive_dir:
        written.append(("retention archive", home / Path(config.retention.archive_dir)))
    from bastion.audit.anchors import parse_spec  # noqa: PLC0415

    for spec in config.audit.anchors:
        kind, where = parse_spec(spec)
        if kind == "file":
            written.append((f"anchor sink file:{where}", Path(where).parent))
    written += [(f"export sink {sink.name}", sink.path.parent) for sink in config.export
                if sink.enabled and sink.kind == "file" and sink.path is not None]  # fmt: skip
    for what, path in written:
        absolute = Path(os.path.abspath(path))
        if not absolute.is_relative_to(os.path.abspath(home)):
            fix = f"systemctl edit bastion: [Service] ReadWritePaths={absolute}"
            found.append(warn(f"unit writes {what}", f"{absolute} is outside the state"
                              f" directory {home}, which alone the service unit lets the"
                              " bastion write", fix))  # fmt: skip
    return found
