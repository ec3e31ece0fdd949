"""The [metrics] section: where /metrics is served, and the bearer token a scrape must carry."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class MetricsPolicy:
    """`listen` empty: /metrics on the web listener, only with a token (everyone who may sign
    in reaches the console); "HOST:PORT": there alone, plain HTTP, and not on the console.
    `token_file` (relative to the config file's directory, mode 0600): the bearer token every
    scrape must send, wherever it is served."""

    listen: str = ""
    token_file: str = ""

    def address(self) -> tuple[str, int] | None:
        """(host, port) of the separate listener, or None (served on the web listener)."""
        if not self.listen:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)

    def problem(self) -> tuple[str, str] | None:
        """(key, what is wrong) for the first value that cannot work, else None."""
        if not self.listen:
            return None
        host, colon, port = self.listen.rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            return "listen", f"{self.listen!r} is not HOST:PORT (e.g. 127.0.0.1:9108)"
        if not self.token_file and not _loopback(host.strip("[]")):
            return "listen", (
                f"{host} is not a loopback address: metrics name the targets, so a listener"
                " other machines reach needs metrics.token_file"
            )
        return None


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
