"""`bastion doctor`'s check of the [export] sinks: each enabled one can take events (a TLS
handshake with the sink's own CA and name, a folder the file can be written in, a webhook
that accepts connections); nothing is ever sent, and no URL, path or token is printed."""

from __future__ import annotations

import os
import socket
import ssl
import urllib.parse
from pathlib import Path

from bastion.commands.doctor import Finding, Host, fail, ok, warn
from bastion.config_export import ExportSink
from bastion.export.sinks import SinkConfigError, SyslogSink, reason


def export_sinks(host: Host) -> list[Finding]:
    """One line per enabled `[export.NAME]` sink (none configured: one ok line)."""
    sinks = [sink for sink in host.config.export if sink.enabled]
    if not sinks:
        return [ok("export sinks", "none configured (the audit trail stays in the store)")]
    timeout = host.limits.connect_timeout
    probes = {"syslog": _syslog, "webhook": _webhook}
    return [_file(sink, host) if sink.kind == "file" else probes[sink.kind](sink, timeout)
            for sink in sinks]  # fmt: skip


def _syslog(sink: ExportSink, timeout: float) -> Finding:
    name = f"export sink {sink.name} (syslog)"
    host, port = sink.host_port
    try:
        context = SyslogSink(sink, socket.gethostname()).context
    except SinkConfigError as exc:
        return fail(name, str(exc), "fix that key in the config: a readable PEM file")
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=sink.server_name or host):  # fmt: skip
            pass  # the handshake proved the receiver's certificate; nothing is sent
    except (OSError, ssl.SSLError) as exc:
        return fail(name, f"cannot reach {host}:{port} over TLS: {reason(exc)}",
                    "check the receiver is up, and its certificate is signed by tls_ca"
                    " for server_name")  # fmt: skip
    return ok(name, f"{host}:{port} answers TLS with a certificate tls_ca vouches for")


def _file(sink: ExportSink, host: Host) -> Finding:
    name = f"export sink {sink.name} (file)"
    path = sink.path
    if path is None:  # refused at config load; here for the type checker
        return fail(name, "no path", f"set [export.{sink.name}] path")
    if path.is_symlink():
        return fail(name, f"{path} is a symlink to {os.path.realpath(path)}",
                    f"name the file itself in [export.{sink.name}] path")  # fmt: skip
    if path.exists() and (not path.is_file() or not os.access(path, os.W_OK)):
        return fail(name, f"{path} cannot be appended to by uid {os.geteuid()}",
                    f"chown {path} to the service's user")  # fmt: skip
    planted = _planted(path, host)
    if planted:  # the sink refuses it: whoever owns it could read, edit or cut what is shipped
        return fail(name, f"{path} is {planted}, and the sink refuses it",
                    f"remove {path} if nobody should have put it there, else chown it to the"
                    " service's user")  # fmt: skip
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return fail(name, f"{path.parent} cannot be written by uid {os.geteuid()}"
                    " (the file rotates there)", f"create {path.parent} for the service's user"
                    " and add it to the unit's ReadWritePaths")  # fmt: skip
    return ok(name, "its folder can be written and the file rotated")


def _webhook(sink: ExportSink, timeout: float) -> Finding:
    parts = urllib.parse.urlsplit(sink.url)
    name = f"export sink {sink.name} (webhook to {parts.hostname})"  # no path, no token
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if parts.scheme != "https":
        found = warn(name, "sends over plain HTTP", f"use https:// in [export.{sink.name}] url")
    else:
        found = ok(name, "accepts connections")
    try:
        socket.create_connection((parts.hostname or "", port), timeout=timeout).close()
    except OSError as exc:
        return fail(name, f"cannot be reached: {exc.strerror or exc}",
                    "check the receiver is up and reachable from this host")  # fmt: skip
    return found


def _planted(path: Path, host: Host) -> str:
    """How a file at the sink's path is owned, if not by the service's user (the state
    directory's owner, whoever runs doctor); "" when it is, or there is no file."""
    try:
        owner, service = path.stat().st_uid, host.home.stat().st_uid
    except OSError:
        return ""
    if owner == service:
        return ""
    return f"owned by uid {owner}, not the service's user (uid {service})"
