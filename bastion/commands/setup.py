"""`bastion init`: a configuration, a secrets key, a store, host keys and TLS files."""

from __future__ import annotations

import argparse
import ipaddress
import re
from pathlib import Path

from bastion.audit import ChainKey, Event, Store
from bastion.commands.app import App, cli_actor
from bastion.config import Config, load_config
from bastion.config_text import default_config_text
from bastion.errors import Conflict, UsageError
from bastion.identity.sealing import SecretBox
from bastion.pki import make_ssh_host_key, make_tls
from bastion.reports.signing import create_key_file, key_id


def run_init(app: App, args: argparse.Namespace) -> int:
    """Create everything a new bastion needs in DIR; refuse if any of it exists."""
    directory = Path(args.directory).resolve()
    config_path = directory / "bastion.toml"
    if config_path.exists():
        raise Conflict(f"{config_path} exists already; refusing to overwrite it")
    text = _config_text(args)
    hosts, addresses = tls_names(args.tls_name or [])  # refused before anything is written
    directory.mkdir(parents=True, exist_ok=True)
    config = _write_config(config_path, text)
    paths = config.paths
    made = (paths.store, paths.secrets_key, paths.report_signing_key, paths.ssh_host_key,
            paths.tls_cert)  # fmt: skip
    for existing in made:
        if existing.exists():
            config_path.unlink()
            raise Conflict(f"{existing} exists already; refusing to overwrite it")
    SecretBox.create_key_file(paths.secrets_key)
    report_key = key_id(create_key_file(paths.report_signing_key).public_key())
    paths.recordings.mkdir(parents=True, exist_ok=True)
    paths.recordings.chmod(0o700)
    fingerprint = make_ssh_host_key(paths.ssh_host_key)
    tls = make_tls(paths.tls_cert.parent, ["localhost", *hosts], ["127.0.0.1", "::1", *addresses])
    store = Store.create(paths.store, app.clock, ChainKey.of(SecretBox.load(paths.secrets_key)))
    store.append_events(
        [
            Event(
                "bastion.initialised",
                cli_actor(),
                str(directory),
                "notice",
                detail={"ssh_host_key": fingerprint, "report_key_id": report_key},
            )
        ]
    )
    store.close()
    app.emit(
        {
            "config": str(config_path),
            "store": str(paths.store),
            "ssh_host_key": fingerprint,
            "report_key_id": report_key,
            "tls_ca": str(tls.ca_cert),
        },
        f"initialised {directory}\n"
        f"  config        {config_path}\n"
        f"  store         {paths.store}\n"
        f"  secrets key   {paths.secrets_key} (keep it off the database's backups)\n"
        f"  report key    {paths.report_signing_key} (signs review packs; `bastion report"
        f" key` prints its public half, id {report_key[:16]})\n"
        f"  ssh host key  {fingerprint}\n"
        f"  TLS CA        {tls.ca_cert} (give this file to psql as sslrootcert, and to"
        " browsers for the web console)\n"
        f"next: bastion --config {config_path} user add NAME --role admin",
    )
    return 0


_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")


def tls_names(names: list[str]) -> tuple[list[str], list[str]]:
    """--tls-name values as (DNS names, IP addresses) for the certificate; the name every
    node answers to behind a load balancer goes here. One line for a name that is neither."""
    hosts: list[str] = []
    addresses: list[str] = []
    for name in names:
        try:
            addresses.append(str(ipaddress.ip_address(name)))
            continue
        except ValueError:
            pass
        if not _HOSTNAME.fullmatch(name.lower()):
            raise UsageError(f"--tls-name {name!r}: give a DNS name or an IP address")
        hosts.append(name.lower())
    return hosts, addresses


def _config_text(args: argparse.Namespace) -> str:
    try:
        return default_config_text(
            ssh_port=args.ssh_port, postgres_port=args.postgres_port, web_port=args.web_port
        )
    except ValueError as exc:
        message = str(exc)
        for name in ("ssh", "postgres", "web"):
            message = message.replace(f"{name}_port", f"--{name}-port")
        raise UsageError(message) from exc


def _write_config(path: Path, text: str) -> Config:
    with path.open("x", encoding="utf-8") as handle:
        handle.write(text)
    path.chmod(0o640)
    return load_config(path)
