"""Two nodes on one PostgreSQL store, one webhook sink: one node at a time delivers (the
sink's lease), and when it stops the other goes on from the cursor: each event once."""

from __future__ import annotations

import contextlib
from pathlib import Path

from bastion.audit.exporting import export_lease
from tests.export.receivers import TOKEN, Hook
from tests.nodes import ServeNode, pg_bastion, until
from tests.realpg import PgCluster
from tests.storeat import StoreTemplate


def test_two_nodes_deliver_each_event_once(
    tmp_path: Path, pg_cluster: PgCluster, store_template: StoreTemplate, hook: Hook
) -> None:
    url = f"http://127.0.0.1:{hook.port}/hook?token={TOKEN}"
    sink = f'[export.hook]\nkind = "webhook"\nurl = "{url}"\nbatch = 5\n'
    database = store_template.fresh()
    with contextlib.ExitStack() as stack:
        stack.callback(pg_cluster.drop_database, database)
        home = pg_bastion(tmp_path / "home", store_template.location(database, tmp_path))
        stack.callback(home.release)
        store = home.store
        nodes = {name: ServeNode(home, name, sink) for name in ("a", "b")}
        for node in nodes.values():
            stack.callback(node.stop)
            node.start(store)
        for n in range(12):
            home.core.identity.enrol(f"user{n}", "engineer", None, "test")
        until(lambda: hook.seqs()[-1:] == [store.chain_head()[0]], "every event", 60)
        lease = store.lease(export_lease("hook"))
        assert lease is not None and lease.holder in nodes
        holder, other = nodes[lease.holder], nodes[{"a": "b", "b": "a"}[lease.holder]]
        holder.stop()  # a graceful stop: its lease is given up, the other takes it
        for n in range(12, 24):
            home.core.identity.enrol(f"user{n}", "engineer", None, "test")
        until(lambda: hook.seqs()[-1:] == [store.chain_head()[0]], "every event again", 60)
        taken = store.lease(export_lease("hook"))
        assert taken is not None and taken.holder == other.name
        other.stop()
        seqs = hook.seqs()
        assert seqs == list(range(1, len(seqs) + 1))  # each once, in order, none missing
        senders = {batch["node"] for batch in hook.batches}
        assert senders == {"a", "b"}
