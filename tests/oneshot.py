"""pgbench through the bastion: a one-shot loopback relay for its set-up connection, tickets."""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path

from tests.realpg import PGBENCH, PgDatabase, client_env, make_conninfo


class OneShotRelay:
    """Listens on a free port, relays exactly one connection to `port`, then refuses.

    pgbench opens two connections (a set-up connection, then its client) and a one-time
    ticket logs in only once: with a two-host connection string whose first host is this
    relay, the set-up connection spends one ticket through it, and the client, finding the
    relay closed, moves on to the bastion with the second.
    """

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.sock.settimeout(0.1)  # so close() never races a blocked accept()
        self.port: int = self.sock.getsockname()[1]
        self._closing = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with self.sock:
            while True:
                if self._closing.is_set():
                    return
                try:
                    client, _ = self.sock.accept()
                    break
                except TimeoutError:
                    continue
                except OSError:
                    return
        client.settimeout(None)
        with client, socket.create_connection(("127.0.0.1", self.upstream)) as server:
            back = threading.Thread(target=_pump, args=(server, client), daemon=True)
            back.start()
            _pump(client, server)
            back.join(10)

    def close(self) -> None:
        """Stop listening (if nobody came) and wait for the relayed connection to end."""
        self._closing.set()
        self.thread.join(15)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def pgbench_via_bastion(
    work: Path,
    via: PgDatabase,
    tickets: tuple[str, str],
    args: list[str],
    sslmode: str = "disable",
) -> tuple[list[str], dict[str, str], OneShotRelay]:
    """argv and environment for one `pgbench ARGS` through the bastion at `via`, logging in
    with two tickets; close the returned relay when pgbench is done."""
    relay = OneShotRelay(via.port)
    passfile = work / f"pgpass-{via.user}-{relay.port}"
    passfile.write_text(
        f"127.0.0.1:{relay.port}:*:{via.user}:{tickets[0]}\n"
        f"127.0.0.1:{via.port}:*:{via.user}:{tickets[1]}\n"
    )
    passfile.chmod(0o600)
    params = via.params(with_password=False)
    params["host"] = "127.0.0.1,127.0.0.1"
    params["port"] = f"{relay.port},{via.port}"
    env = client_env(None, {"PGPASSFILE": str(passfile), "PGSSLMODE": sslmode})
    return [PGBENCH, *args, make_conninfo(params)], env, relay
