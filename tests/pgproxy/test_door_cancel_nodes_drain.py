"""Cancels between nodes while one drains: behind a balancer a client's CancelRequest may reach
any node, so a draining node must still take the cancels its peers forward to it, and still
forward the ones it is sent for sessions on its peers."""

from __future__ import annotations

import asyncio
import signal

import asyncpg
import pytest

from tests.nodes import key_of, running
from tests.pgproxy import test_door_cancel_nodes
from tests.pgproxy.test_door_cancel_nodes import (
    BEHIND_BALANCERS,
    SLEEP,
    Cluster,
    Node,
    wait_until,
)
from tests.realpg import PgDatabase

cluster = test_door_cancel_nodes.cluster  # the same two nodes behind a balancer


def draining_for_an_hour(node: Node) -> None:
    text = node.config.read_text(encoding="utf-8")
    assert 'drain = "1s"' in text
    node.config.write_text(text.replace('drain = "1s"', 'drain = "1h"', 1), encoding="utf-8")


@pytest.mark.parametrize("extra", ["", BEHIND_BALANCERS], ids=["plain", "behind-balancers"])
def test_cancels_cross_a_draining_node_both_ways(
    cluster: Cluster, pg: PgDatabase, extra: str
) -> None:
    a, b = cluster.node("a", extra=extra), cluster.node("b", extra=extra)
    draining_for_an_hour(a)
    a.start(cluster.store)
    b.start(cluster.store)
    asyncio.run(_both_ways(cluster, a, b, pg))
    assert a.proc is not None
    a.proc.send_signal(signal.SIGTERM)  # the second signal ends the hour's drain
    assert a.proc.wait(60) == 0
    assert [r["outcome"] for r in a.logged("postgres.cancel_routed")] == ["forwarded to node b"]
    assert [r["outcome"] for r in b.logged("postgres.cancel_routed")] == ["forwarded to node a"]


async def _both_ways(cluster: Cluster, a: Node, b: Node, pg: PgDatabase) -> None:
    on_a = await asyncpg.connect(cluster.url(a), ssl=False)
    on_b = await asyncpg.connect(cluster.url(b), ssl=False)
    try:
        queries = [asyncio.ensure_future(c.fetchval(SLEEP)) for c in (on_a, on_b)]
        await wait_until(lambda: _running(pg, 2), "both queries to run upstream")
        assert a.proc is not None
        a.proc.send_signal(signal.SIGTERM)
        await wait_until(lambda: _logged(a, "serve.draining"), "node a to drain")
        await asyncio.to_thread(b.cancel, *key_of(on_a))  # forwarded to the draining node
        with pytest.raises(asyncpg.QueryCanceledError):
            await asyncio.wait_for(queries[0], 20)
        assert not queries[1].done()
        await asyncio.to_thread(a.cancel, *key_of(on_b))  # sent to it, forwarded by it
        with pytest.raises(asyncpg.QueryCanceledError):
            await asyncio.wait_for(queries[1], 20)
        assert await on_a.fetchval("SELECT 1") == 1  # still live on the draining node
    finally:
        on_a.terminate()
        on_b.terminate()


async def _running(pg: PgDatabase, count: int) -> bool:
    return await running(pg, SLEEP) == count


async def _logged(node: Node, event: str) -> bool:
    return bool(node.logged(event))
