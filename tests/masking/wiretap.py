"""A loopback TCP relay between a client and the bastion that keeps every byte the bastion
sends, so a test can assert that no sensitive value crossed the wire in any message."""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class Tap:
    """Listens on a free loopback port and relays each connection to 127.0.0.1:`port`.

    Clients must not use TLS through it (sslmode=disable): the point is to read the bytes.
    """

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received = bytearray()  # everything the bastion sent, all connections
        self.sent = bytearray()  # everything the clients sent
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self._sockets += [client, upstream]
            for source, sink, keep in ((client, upstream, self.sent),
                                       (upstream, client, self.received)):  # fmt: skip
                thread = threading.Thread(target=self._pump, args=(source, sink, keep),
                                          daemon=True)  # fmt: skip
                thread.start()
                self._threads.append(thread)

    def _pump(self, source: socket.socket, sink: socket.socket, keep: bytearray) -> None:
        try:
            while data := source.recv(65536):
                with self._lock:
                    keep += data
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def leaked(self, secrets: tuple[str, ...]) -> list[str]:
        """The secrets found in what the bastion sent (as text, any case)."""
        with self._lock:
            seen = bytes(self.received).lower()
        return [s for s in secrets if s.lower().encode() in seen]

    def close(self) -> None:
        self.listener.close()
        for sock in self._sockets:
            sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> Tap:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.close()
