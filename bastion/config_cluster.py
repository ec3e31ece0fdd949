"""The [cluster] section: this node's name among several bastions on one store, how long it
may go without the store before it fails closed, and when another node counts as lost."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from datetime import timedelta

NODE_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?")
NODE_RULE = "1-32 lowercase letters, digits or '-', not starting or ending with '-'"
GRACE_LOW, GRACE_HIGH = timedelta(seconds=2), timedelta(minutes=10)
LOST_LOW, LOST_HIGH = timedelta(seconds=30), timedelta(days=7)


@dataclass(frozen=True)
class ClusterPolicy:
    """`node` empty means the host name (its first label, in lower case)."""

    node: str = ""
    store_grace: timedelta = timedelta(seconds=30)
    # how long after its presence lease expired a node counts as lost: the upload completer
    # then finishes its recordings and closes its sessions (at least store_grace: by then
    # a node merely cut off from the store has ended its sessions itself; and never under
    # LOST_LOW, a margin for a step of the store's clock, which judges every lease)
    lost_after: timedelta = timedelta(minutes=10)

    def node_name(self) -> str:
        """This node's name: the configured one, else the host name's first label."""
        return self.node or host_node_name()

    def problem(self) -> tuple[str, str] | None:
        """(key, what is wrong) for the first value that cannot work, else None."""
        if self.node and not NODE_NAME.fullmatch(self.node):
            return "node", f"{self.node!r} is not a node name: use {NODE_RULE}"
        if not self.node and not NODE_NAME.fullmatch(host_node_name()):
            return "node", (
                f"the host name {socket.gethostname()!r} is not a node name ({NODE_RULE});"
                " set one here"
            )
        if not GRACE_LOW <= self.store_grace <= GRACE_HIGH:
            return "store_grace", "must be between 2s and 10m"
        if not max(self.store_grace, LOST_LOW) <= self.lost_after <= LOST_HIGH:
            return "lost_after", "must be at least store_grace and 30s, and at most 7d"
        return None


def host_node_name() -> str:
    """The host name as a node name would write it: its first label, in lower case."""
    return socket.gethostname().split(".", 1)[0].lower()
