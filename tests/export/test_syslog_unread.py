"""A syslog receiver that takes the TLS connection but stops reading (hung, or a hostile
one) still has its kernel acknowledge what fits in its buffers: the sink counts that as
delivered. When the receiver then dies, everything it never read must come again on the
next connection, however many events that is, not only the last `replay`."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

from bastion.pki import make_tls
from tests.export.receivers import SyslogReceiver
from tests.export.test_syslog_outage import activity, caught_up, syslog_config, wait_until
from tests.harness import Bastion
from tests.realssh import free_port


class StuckReceiver:
    """Accepts TLS connections and never reads a byte; `crash()` drops them all."""

    def __init__(self, cert: Path, key: Path, port: int) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.listener = socket.create_server(("127.0.0.1", port))
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(self.context.wrap_socket(raw, server_side=True))

    def crash(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() so the port is free
        self.listener.close()
        for sock in self.held:
            sock.close()  # unread data: the kernel answers with a reset
        self._thread.join(10)


def test_what_a_stuck_receiver_never_read_comes_again(tmp_path: Path) -> None:
    tls = make_tls(tmp_path / "siem-tls")
    port = free_port()
    stuck = StuckReceiver(tls.server_cert, tls.server_key, port)
    real = SyslogReceiver(tls.server_cert, tls.server_key, port)
    config = syslog_config(real, replay="10", batch="50")
    b = Bastion(tmp_path / "bastion", config)
    b.start()
    try:
        activity(b, range(0, 60))
        caught_up(b, "siem", "'delivery'")
        stuck.crash()  # it read nothing of it
        real.start()
        activity(b, range(60, 62))
        wait_until(lambda: real.highest() == b.store.chain_head()[0], "every event")
    finally:
        b.stop()
        real.close()
    seqs = [m.seq for m in real.deduped()]
    assert seqs == list(range(1, len(seqs) + 1))  # from the first, none missing
