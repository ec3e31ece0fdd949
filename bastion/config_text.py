"""The config file `bastion init` writes: the packaged template with its ports filled in."""

from __future__ import annotations

import string
from importlib import resources

from bastion.config import Listeners

_DOORS = Listeners()  # the ports' defaults, declared there once


def default_config_text(
    *,
    ssh_port: int = _DOORS.ssh.port,
    postgres_port: int = _DOORS.postgres.port,
    web_port: int = _DOORS.web.port,
) -> str:
    """The packaged config template with these ports filled in; `bastion init` writes it."""
    ports = {"ssh_port": ssh_port, "postgres_port": postgres_port, "web_port": web_port}
    for name, port in ports.items():
        if isinstance(port, bool) or not 1 <= port <= 65535:
            raise ValueError(f"{name} must be between 1 and 65535, got {port!r}")
    if len(set(ports.values())) != len(ports):
        raise ValueError(f"the three ports must differ, got {ports}")
    template = resources.files("bastion").joinpath("config_template.toml")
    return string.Template(template.read_text(encoding="utf-8")).substitute(ports)
