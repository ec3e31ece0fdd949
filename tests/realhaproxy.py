"""A real HAProxy in TCP mode in front of bastion nodes, sending PROXY v2, for tests and bench."""

from __future__ import annotations

import contextlib
import functools
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from tests.realssh import free_port

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"  # scripts/test installs it
BALANCER = "127.0.0.3"  # the address HAProxy connects to the nodes from (clients use others)


@dataclass
class Route:
    """One front port spread over the nodes' ports for one door; `check` health-checks each
    node with GET /healthz over TLS on the node's web port (the PROXY header goes along)."""

    name: str
    nodes: list[int]
    check_ports: list[int] = field(default_factory=list)
    port: int = field(default_factory=free_port)


class HAProxy:
    """haproxy -db with one frontend and backend per route, its stats on a unix socket."""

    def __init__(self, workdir: Path, routes: list[Route], *, source: str = BALANCER,
                 proxy: str = "send-proxy-v2", inter: str = "500ms") -> None:  # fmt: skip
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.routes = {route.name: route for route in routes}
        self.source, self.proxy, self.inter = source, proxy, inter
        self.config = workdir / "haproxy.cfg"
        self.stats = workdir / "stats.sock"
        self.log = workdir / "haproxy.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def port(self, name: str) -> int:
        return self.routes[name].port

    def render(self) -> str:
        lines = [
            "global", f"    stats socket {self.stats} mode 600 level admin", "    maxconn 4096",
            "defaults", "    mode tcp", "    timeout connect 5s", "    timeout client 120s",
            "    timeout server 120s", "    timeout check 5s",
        ]  # fmt: skip
        for route in self.routes.values():
            lines += [f"frontend {route.name}", f"    bind 127.0.0.1:{route.port}",
                      f"    default_backend {route.name}_nodes",
                      f"backend {route.name}_nodes", "    balance roundrobin"]  # fmt: skip
            if route.check_ports:
                lines += ["    option httpchk GET /healthz", "    http-check expect status 200"]
            for n, node in enumerate(route.nodes):
                server = f"    server node{n} 127.0.0.1:{node} {self.proxy} source {self.source}"
                if route.check_ports:
                    server += (f" check check-ssl verify none check-send-proxy"
                               f" port {route.check_ports[n]} inter {self.inter}")  # fmt: skip
                lines.append(server)
        return "\n".join(lines) + "\n"

    def start(self) -> HAProxy:
        self.config.write_text(self.render(), encoding="utf-8")
        with self.log.open("wb") as log:
            self._proc = subprocess.Popen([HAPROXY, "-db", "-f", str(self.config)],
                                          stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + 20
        ready: list[Callable[[], bool]] = [
            functools.partial(_listening, route.port) for route in self.routes.values()
        ]
        ready.append(self._stats_answer)  # HAProxy may bind its ports before its stats socket
        for up in ready:
            while not up():
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"haproxy did not start: {self.log.read_text()}")
                time.sleep(0.05)
        return self

    def _stats_answer(self) -> bool:
        try:
            self._stats()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def freeze(self) -> None:
        """SIGSTOP: every connection through it hangs, none is closed (a network partition)."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT: the partition heals; held bytes flow on."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    def statuses(self) -> dict[tuple[str, str], str]:
        """Each server's status as HAProxy sees it: (backend, server) -> "UP", "DOWN", ..."""
        return {key: cells["status"] for key, cells in self._stats().items()}

    def stat(self, backend: str, server: str, column: str) -> int:
        """One server's counter from `show stat`, e.g. "stot" (connections sent to it)."""
        return int(self._stats()[(backend, server)][column] or 0)

    def _stats(self) -> dict[tuple[str, str], dict[str, str]]:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.stats))
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        rows = data.decode().splitlines()
        header = rows[0].lstrip("# ").split(",")
        found = {}
        for row in rows[1:]:
            cells = dict(zip(header, row.split(","), strict=False))
            if cells.get("svname") not in (None, "FRONTEND", "BACKEND"):
                found[(cells["pxname"], cells["svname"])] = cells
        return found

    def wait_up(self, backend: str, timeout: float = 20) -> dict[tuple[str, str], str]:
        """Poll until every server of `backend` passed its checks (or the timeout passed)."""
        deadline = time.monotonic() + timeout
        while True:
            mine = {k: v for k, v in self.statuses().items() if k[0] == backend}
            if (mine and all(v == "UP" for v in mine.values())) or time.monotonic() > deadline:
                return mine
            time.sleep(0.1)

    def __enter__(self) -> HAProxy:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.stop()


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False
