"""Issue 18's Done-when, for real: three `bastion serve` processes on this machine as nodes a, b
and c of ONE store on PostgreSQL, recordings to ONE S3-compatible server (moto in server mode),
each node with its own name, ports, spool and head file, and real OpenSSH, asyncpg and CLI
clients. Node c reaches the store through an HAProxy the tests can freeze (a partition).

The nodes are shared by the module's tests (one start-up for all); each test uses people of its
own, so nothing one test decides touches another's. Node b killed and left down comes after
every other test that uses node b; the partition test goes last."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bastion import pgwire as pw
from bastion.access.offboarding import offboard
from bastion.access.storegrace import presence_ttl
from bastion.audit import Store
from bastion.clock import parse_iso
from bastion.config_cluster import ClusterPolicy
from bastion.errors import Exit
from bastion.identity import totp
from bastion.recording.completer import every
from bastion.recording.objects import PART_SIZE
from bastion.reports.signing import ensure_key
from tests.audit.test_pgconn import backend_pid
from tests.harness import Bastion
from tests.nodes import ServeNode, key_of, pg_bastion, running, send_to, store_table, until
from tests.pgproxy.conftest import PASSWORD, UNMASKED
from tests.realhaproxy import HAProxy, Route
from tests.realpg import PgCluster, PgDatabase
from tests.reals3 import BUCKET, MotoS3
from tests.realssh import OpenSSHClient, Sshd, TmuxSession
from tests.storeat import StoreTemplate

BOUND = 5.0  # seconds: a decision made anywhere ends the sessions it ends on every node by then
GRACE = 8  # seconds: node c's [cluster] store_grace (past the 5 s cut-off of a stuck peer)
LOST_AFTER = 30  # seconds: every node's [cluster] lost_after (the least it may be)
LOST_AFTER_KILL = (  # seconds: node b (the default store_grace) killed, to closed as lost
    presence_ttl(ClusterPolicy().store_grace).total_seconds() + LOST_AFTER
    + 2 * every(timedelta(seconds=LOST_AFTER)) + 60  # two completer rounds, and a loaded host
)  # fmt: skip
COUNT = 1_500_000  # `seq 1 COUNT` prints more than a part of an upload (PART_SIZE)
PEOPLE = ("ann", "ben", "cat", "dan", "eve", "fay", "gil",  # each test has its own
          "hal", "ivy", "jon", "kim", "lee", "mia", "nia", "oli")  # fmt: skip
PREFIX = "recordings"  # the bucket's prefix, one for every node: any node replays any recording


def sleep_sql(tag: str) -> str:
    """A minute's query, told apart from other tests' by its text."""
    return f"SELECT pg_sleep(60), '{tag}'"


@dataclass
class Three:
    """The shared home (the harness's, its store on PostgreSQL: the tests' own view), the
    three nodes, and what they serve."""

    home: Bastion
    nodes: dict[str, ServeNode]
    target: PgDatabase  # orders-prod
    moto: MotoS3
    balancer: HAProxy  # between node c and the store
    role: str  # the store's login role
    grants: dict[tuple[str, str], int] = field(default_factory=dict)
    minted: int = 0

    def ticket_url(self, person: str, node: ServeNode) -> str:
        """A fresh one-time ticket of `person`'s for orders-prod, as a URL through `node`."""
        self.minted += 1
        token = f"bt_three-nodes-{self.minted}"
        expires = datetime.now(UTC) + timedelta(minutes=30)
        self.home.clock.set(datetime.now(UTC))
        self.home.core.identity.add_ticket(person, "orders-prod", token, expires, "test")
        return PgDatabase("127.0.0.1", node.pg_port, "orders-prod", person, token).url

    def node_of(self, session_id: str) -> str:
        rows = self.home.store._rows("SELECT node FROM sessions WHERE id = ?", [session_id])
        return str(rows[0]["node"])

    def open_sessions(self, person: str) -> list[Any]:
        return self.home.store.sessions(user=person, open_only=True)

    def listener_pids(self, node: str) -> list[int]:
        """The store's backends listening for node `node`'s decision feed."""
        rows = self.home.store._rows(
            "SELECT pid FROM pg_stat_activity WHERE application_name = ?",
            [f"bastion-listen/{node}"],
        )
        return [int(r["pid"]) for r in rows]


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory, pg_cluster: PgCluster,
          store_template: StoreTemplate) -> Iterator[Three]:  # fmt: skip
    root = tmp_path_factory.mktemp("three")
    with contextlib.ExitStack() as stack:
        sshd = stack.enter_context(Sshd())
        sshd.start()
        moto = stack.enter_context(MotoS3(root)).start()
        balancer = HAProxy(root / "haproxy", [Route("store", [pg_cluster.port])],
                           source="127.0.0.1", proxy="")  # fmt: skip
        stack.enter_context(balancer)
        target = pg_cluster.fresh_orders()
        stack.callback(pg_cluster.discard, target)
        database = store_template.fresh()
        stack.callback(pg_cluster.drop_database, database)
        home = pg_bastion(root / "home", store_template.location(database, root), UNMASKED)
        stack.callback(home.release)
        made = Three(home, {}, target, moto, balancer, store_template.role)
        made.grants = people(home, sshd, target)
        recordings = moto.config(PREFIX, str(moto.write_credentials(root / "s3.credentials")))
        location = home.store.location
        assert location is not None
        cut_off = store_table(location).replace(f":{pg_cluster.port}/",
                                                f":{balancer.port('store')}/")  # fmt: skip
        grace, lost = f'store_grace = "{GRACE}s"\n', f'lost_after = "{LOST_AFTER}s"\n'
        made.nodes = {
            "a": ServeNode(home, "a", recordings, cluster=lost),
            "b": ServeNode(home, "b", recordings, cluster=lost),
            "c": ServeNode(home, "c", recordings, cluster=grace + lost, store=cut_off),
        }
        ensure_key(home.config.paths.report_signing_key, home.store, "test")  # one for all
        for node in made.nodes.values():  # started side by side
            stack.callback(node.stop)
            node.launch()
        for node in made.nodes.values():
            node.started(home.store)
        yield made


def people(home: Bastion, sshd: Sshd, target: PgDatabase) -> dict[tuple[str, str], int]:
    """web-1 (sshd) and orders-prod (target), and everyone in PEOPLE (a key, a password and a
    TOTP seed) granted both: the grants' ids by (person, target)."""
    home.add_target("web-1", sshd)
    home.add_pg_target("orders-prod", target)
    grants = {}
    for person in PEOPLE:
        home.add_user(person, password=PASSWORD)
        for where in ("web-1", "orders-prod"):
            grants[person, where] = home.grant(person, where)
    return grants


# -- helpers --------------------------------------------------------------------------------------


def code_of(three: Three, person: str) -> str:
    """The code of the next TOTP step: a login's first, accepted once (real time: the nodes'
    clocks are the system's)."""
    step = totp.step_at(datetime.now(UTC)) + 1
    return totp.code_for_step(three.home.seeds[person], step)


def ssh_client(three: Three, person: str, node: ServeNode, workdir: Path) -> OpenSSHClient:
    """OpenSSH pointed at `node`, pinned to the one host key every node shares."""
    workdir.mkdir(parents=True, exist_ok=True)
    known = workdir / "known_hosts"
    public = Path(f"{three.home.config.paths.ssh_host_key}.pub").read_text().split()
    known.write_text(f"[127.0.0.1]:{node.ssh_port} {public[0]} {public[1]}\n")
    return OpenSSHClient("127.0.0.1", node.ssh_port, person, workdir=workdir, known_hosts=known,
                         identity=three.home.keys[person])  # fmt: skip


@contextlib.contextmanager
def shell(three: Three, person: str, node: ServeNode, workdir: Path) -> Iterator[TmuxSession]:
    """`person`'s shell on web-1 through `node` (OpenSSH in a terminal), at its prompt."""
    ssh = ssh_client(three, person, node, workdir)
    answers = {"Verification code": code_of(three, person)}
    with ssh.tmux(login=f"{person}+web-1", answers=answers, flags=["-t"]) as tmux:
        tmux.wait_for("$ ")
        yield tmux


async def sleeping_through(three: Three, person: str, node: ServeNode,
                           tag: str) -> tuple[asyncpg.Connection, asyncio.Future[Any]]:  # fmt: skip
    """`person` running a minute's query through `node` (a ticket login): the connection and
    the query's future, once the query runs upstream."""
    url = await asyncio.to_thread(three.ticket_url, person, node)  # the store: off the loop
    conn = await asyncpg.connect(url, ssl=False)
    query = asyncio.ensure_future(conn.fetchval(sleep_sql(tag)))
    await async_until(lambda: running(three.target, sleep_sql(tag)), f"{tag}'s query to run")
    return conn, query


async def async_until(check: Any, what: str, timeout: float = 20) -> None:
    """`until` for an async check."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def ends_within(query: asyncio.Future[Any], bound: float) -> str:
    """The error the running query ended with, which must come within `bound` seconds."""
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)) as ended:
        await asyncio.wait_for(query, bound)
    return str(ended.value)


def cli_ok(node: ServeNode, *args: str) -> str:
    done = node.cli(*args)
    assert done.returncode == Exit.OK, done.stdout + done.stderr
    return done.stdout


# -- cancels find their session -------------------------------------------------------------------


def test_a_cancel_sent_to_node_b_cancels_a_query_running_through_node_a(three: Three) -> None:
    a, b = three.nodes["a"], three.nodes["b"]

    async def scenario() -> None:
        conn, query = await sleeping_through(three, "fay", a, "fay")
        try:
            pid, secret = key_of(conn)
            packet = pw.cancel_request(pid, secret.to_bytes(4, "big", signed=True))
            await asyncio.to_thread(send_to, b.pg_port, packet)  # what asyncpg's cancel sends
            with pytest.raises(asyncpg.QueryCanceledError):
                await asyncio.wait_for(query, BOUND)
            assert await conn.fetchval("SELECT 1") == 1  # the session itself goes on
        finally:
            await conn.close()

    asyncio.run(scenario())
    routed = [r["outcome"] for r in b.logged("postgres.cancel_routed")]
    assert routed == ["forwarded to node a"]


# -- one code, one login; one ticket, one session -------------------------------------------------


def test_one_code_offered_at_two_nodes_at_once_opens_one_database_session(three: Three) -> None:
    a, b = three.nodes["a"], three.nodes["b"]
    secret = PASSWORD + code_of(three, "gil")
    refused = one_opens([PgDatabase("127.0.0.1", n.pg_port, "orders-prod", "gil", secret).url
                         for n in (a, b)])  # fmt: skip
    assert isinstance(refused, asyncpg.PostgresError), refused
    kinds = [e.kind for e in three.home.store.events() if e.subject == "gil"]
    assert kinds.count("auth.totp_ok") == 1, kinds


def test_one_ticket_offered_at_two_nodes_at_once_opens_one_database_session(
    three: Three,
) -> None:
    a, b = three.nodes["a"], three.nodes["b"]
    through_a = three.ticket_url("lee", a)
    through_b = through_a.replace(f":{a.pg_port}/", f":{b.pg_port}/")
    refused = one_opens([through_a, through_b])
    assert isinstance(refused, asyncpg.PostgresError), refused
    kinds = [e.kind for e in three.home.store.events() if e.subject == "lee"]
    assert sorted(k for k in kinds if k.startswith("auth.ticket_")) == [
        "auth.ticket_ok", "auth.ticket_refused"]  # fmt: skip


def one_opens(urls: list[str]) -> BaseException | None:
    """Connect to every URL at once: exactly one opens (and answers); another's error."""

    async def race() -> list[Any]:
        outcomes = await asyncio.gather(*(asyncpg.connect(u, ssl=False) for u in urls),
                                        return_exceptions=True)  # fmt: skip
        for conn in outcomes:
            if isinstance(conn, asyncpg.Connection):
                assert await conn.fetchval("SELECT 1") == 1
                await conn.close()
        return list(outcomes)

    others = len(urls) - 1  # (the URLs hold secrets: never in an assertion's message)
    outcomes = asyncio.run(race())
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(refused) == others, outcomes  # and the other opened
    return refused[0] if refused else None


def test_one_code_offered_at_two_nodes_at_once_opens_one_shell(three: Three,
                                                               tmp_path: Path) -> None:  # fmt: skip
    a, b = three.nodes["a"], three.nodes["b"]
    code = code_of(three, "hal")

    async def race() -> list[Any]:
        clients = [ssh_client(three, "hal", n, tmp_path / n.name) for n in (a, b)]
        return list(await asyncio.gather(*(
            c.run_ssh_async("echo in-as-hal", login="hal+web-1",
                            answers={"Verification code": code}) for c in clients)))  # fmt: skip

    outcomes = asyncio.run(race())
    assert sorted(o.returncode for o in outcomes) == [0, 255], outcomes
    assert sum("in-as-hal" in o.out for o in outcomes) == 1
    kinds = [e.kind for e in three.home.store.events() if e.subject == "hal"]
    assert kinds.count("auth.totp_ok") == 1, kinds


# -- every node sees every decision ---------------------------------------------------------------


def test_a_revocation_on_node_a_ends_a_shell_and_a_running_query_on_node_b(
    three: Three, tmp_path: Path
) -> None:
    """Each end is waited for with a bound of BOUND seconds from the CLI's return."""
    a, b = three.nodes["a"], three.nodes["b"]
    shell_grant, db_grant = three.grants["ann", "web-1"], three.grants["ann", "orders-prod"]

    async def scenario(tmux: TmuxSession) -> str:
        conn, query = await sleeping_through(three, "ann", b, "ann")
        try:
            opened = await asyncio.to_thread(three.open_sessions, "ann")
            assert {await asyncio.to_thread(three.node_of, s.id) for s in opened} == {"b"}
            await asyncio.to_thread(cli_ok, a, "revoke", str(shell_grant))
            await tmux.wait_for_async(f"grant {shell_grant} was revoked", BOUND)
            await asyncio.to_thread(cli_ok, a, "revoke", str(db_grant))
            return await ends_within(query, BOUND)
        finally:
            conn.terminate()

    with shell(three, "ann", b, tmp_path / "ssh") as tmux:
        said = asyncio.run(scenario(tmux))
    assert f"access to orders-prod ended: grant {db_grant} was revoked" in said
    until(lambda: not three.open_sessions("ann"), "ann's session rows to close")
    assert asyncio.run(running(three.target, sleep_sql("ann"))) == 0  # cancelled upstream


def test_a_sessions_kill_on_node_c_ends_a_query_running_on_node_a(three: Three) -> None:
    """Waited for with a bound of BOUND seconds from the CLI's return."""
    a, c = three.nodes["a"], three.nodes["c"]

    async def scenario() -> str:
        conn, query = await sleeping_through(three, "mia", a, "mia")
        try:
            [session] = await asyncio.to_thread(three.open_sessions, "mia")
            await asyncio.to_thread(cli_ok, c, "sessions", "kill", session.id, "--reason", "ir")
            return await ends_within(query, BOUND)
        finally:
            conn.terminate()

    said = asyncio.run(scenario())
    assert "session ended by" in said and ": ir" in said, said
    until(lambda: not three.open_sessions("mia"), "mia's session row to close")


def test_with_node_bs_listener_killed_the_poll_still_ends_its_sessions(
    three: Three, tmp_path: Path, pg_cluster: PgCluster
) -> None:
    """The feed is kept down, not only killed: the store's role may open no connection while
    the decision is made (it is made on a connection the test opened before), so node b's
    feed cannot come back and resync; only its watcher's poll can end the sessions."""
    b = three.nodes["b"]
    [listener] = three.listener_pids("b")

    async def scenario(tmux: TmuxSession) -> str:
        conn, query = await sleeping_through(three, "ben", b, "ben")
        try:
            with no_new_connections(pg_cluster, three.role):
                await asyncio.to_thread(kill_listener, three, pg_cluster, listener)
                await asyncio.to_thread(disable, three, "ben")
                await tmux.wait_for_async("ben was disabled; the session is over", BOUND)
                said = await ends_within(query, BOUND)
                assert await asyncio.to_thread(three.listener_pids, "b") == []  # down throughout
            return said
        finally:
            conn.terminate()

    with shell(three, "ben", b, tmp_path / "ssh") as tmux:
        said = asyncio.run(scenario(tmux))
    assert "ben was disabled; the session is over" in said
    until(lambda: three.listener_pids("b"), "node b's feed to listen again", timeout=30)
    until(lambda: not three.open_sessions("ben"), "ben's session rows to close")


def kill_listener(three: Three, cluster: PgCluster, pid: int) -> None:
    cluster.sql("SELECT pg_terminate_backend(%s)", params=[pid])
    until(lambda: not three.listener_pids("b"), "node b's listener to go")


def disable(three: Three, person: str) -> None:
    """`user disable`, on a connection of the store opened before (the test's own)."""
    three.home.clock.set(datetime.now(UTC))
    offboard(three.home.store, person, "test", "leaving")


@contextlib.contextmanager
def no_new_connections(cluster: PgCluster, role: str) -> Iterator[None]:
    """The role may open no new connection (those open stay) until the block ends."""
    cluster.sql(f'ALTER ROLE "{role}" CONNECTION LIMIT 0')
    try:
        yield
    finally:
        cluster.sql(f'ALTER ROLE "{role}" CONNECTION LIMIT -1')


# -- one chain ------------------------------------------------------------------------------------


def test_audit_appends_from_all_three_nodes_at_once_verify_as_one_chain(
    three: Three, tmp_path: Path
) -> None:
    before = three.home.store.events()[-1].seq
    people = {"a": "ivy", "b": "jon", "c": "kim"}

    async def queries(node: ServeNode) -> None:
        url = await asyncio.to_thread(three.ticket_url, "eve", node)
        conn = await asyncpg.connect(url, ssl=False)
        try:
            for n in range(5):
                assert await conn.fetchval("SELECT count(*) + $1 FROM orders", n) is not None
        finally:
            await conn.close()

    async def login(node: ServeNode) -> Any:
        person = people[node.name]
        client = ssh_client(three, person, node, tmp_path / node.name)
        return await client.run_ssh_async(
            f"echo in-as-{person}",
            login=f"{person}+web-1",
            answers={"Verification code": code_of(three, person)},
        )

    async def burst() -> list[Any]:
        nodes = list(three.nodes.values())
        work = [queries(n) for n in nodes for _ in range(3)] + [login(n) for n in nodes]
        return list(await asyncio.gather(*work))

    outcomes = asyncio.run(burst())
    for shell_done in outcomes[-3:]:
        assert shell_done.returncode == 0, shell_done.err
    sessions = three.home.store._rows("SELECT node FROM sessions WHERE id IN (SELECT session_id"
                                      " FROM audit_events WHERE seq > ?)", [before])  # fmt: skip
    assert sorted({r["node"] for r in sessions}) == ["a", "b", "c"]
    for node in three.nodes.values():  # each node's head file and anchors, against the one chain
        one_chain(node, three.home.store)


def one_chain(node: ServeNode, store: Store) -> None:
    """`audit verify` through `node` (its head file and anchors) finds the chain and the query
    log intact, and so does the store's own walk."""
    done = node.cli("audit", "verify")
    assert done.returncode == Exit.OK, done.stdout + done.stderr
    assert "intact" in done.stdout, done.stdout
    assert store.verify_chain().ok


# -- a node that dies -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Crashed:
    """A session whose node was killed under it: where its recording was left."""

    session_id: str
    spooled: Path  # the dead node's spool file
    key: str  # the object the recording becomes in the bucket
    flushed: int  # the spool file's size as the dead node left it: its last flush


def crash_mid_session(three: Three, person: str, node: ServeNode, workdir: Path, *,
                      parts: bool = False) -> Crashed:  # fmt: skip
    """`person`'s shell through `node`, a line typed, echoed and flushed to the spool, then
    the node killed (kill -9) and reaped. With `parts`, the shell then prints a long count and
    the node is killed while it prints, once its uploader has sent a part of the recording."""
    with shell(three, person, node, workdir) as tmux:
        [session] = three.open_sessions(person)
        [spooled] = node.spool.rglob(f"{session.id}.cast")
        key = f"{PREFIX}/{spooled.relative_to(node.spool).as_posix()}"
        opened_at = spooled.stat().st_size
        tmux.type_text("echo before-the-crash", enter=True)
        tmux.wait_for(re.compile(r"before-the-crash\n\$"))
        until(lambda: spooled.stat().st_size > opened_at, "the recording's flush")  # each second
        if parts:
            tmux.type_text(f"seq 1 {COUNT}", enter=True)  # more than a part's worth
            until(lambda: parts_sent(three, key) > 0, f"node {node.name} to send a part",
                  timeout=180)  # fmt: skip
        node.stop(signal.SIGKILL)
    return Crashed(session.id, spooled, key, spooled.stat().st_size)


def parts_sent(three: Three, key: str) -> int:
    """The parts in the bucket of the uploads in progress at `key`."""
    client = three.moto.client()
    uploads = client.list_multipart_uploads(Bucket=BUCKET, Prefix=key).get("Uploads", [])
    return sum(len(client.list_parts(Bucket=BUCKET, Key=key, UploadId=u["UploadId"])
                   .get("Parts", [])) for u in uploads if u["Key"] == key)  # fmt: skip


def test_node_b_killed_mid_session_completes_its_recording_on_restart(
    three: Three, tmp_path: Path
) -> None:
    a, b = three.nodes["a"], three.nodes["b"]
    crashed = crash_mid_session(three, "dan", b, tmp_path / "ssh")
    assert crashed.key not in three.moto.object_keys()  # the session never ended: not complete
    b.start(three.home.store)
    until(lambda: not crashed.spooled.exists(), "node b to upload the spool it left")
    assert len(three.moto.read(crashed.key)) == crashed.flushed
    ended = three.home.store.session(crashed.session_id)
    assert ended.state == "interrupted" and ended.recording_size == crashed.flushed
    replayed = a.cli("replay", crashed.session_id, "--speed", "1000")  # a reads b's recording
    assert "before-the-crash" in replayed.stdout, replayed.stderr  # to the last flush,
    assert "it was cut short" in replayed.stderr  # and says that it ends there
    assert replayed.returncode == 0, replayed.stderr  # the chain records the cut: no tampering


# -- a node stuck holding the chain lock ---------------------------------------------------------


def test_a_node_stuck_holding_the_chain_lock_stops_no_other_node(
    three: Three, tmp_path: Path
) -> None:
    """A node frozen mid-transaction, as the server sees it: a store connection opened as
    every node opens one, holding the chain lock and saying nothing more. A login through
    node a (a write under that lock) waits until the server has cut the stuck one off, and
    opens; a shell open on node b meanwhile goes on."""
    a, b = three.nodes["a"], three.nodes["b"]
    location = three.home.store.location
    assert location is not None
    url = three.ticket_url("nia", a)  # minted first: minting is a write too
    stuck = location.connect("stuck")
    try:
        with shell(three, "nia", b, tmp_path / "ssh") as tmux:
            stuck.begin_write()
            pid = backend_pid(stuck)
            assert one_opens([url]) is None  # the ticket spent, once the lock came free
            tmux.type_text("echo still-here", enter=True)
            tmux.wait_for(re.compile(r"still-here\n\$"))
        assert not three.home.store._rows("SELECT 1 FROM pg_stat_activity WHERE pid = ?", [pid])
    finally:
        stuck.close()


def lost_events(three: Three) -> list[str]:
    return [e.subject for e in three.home.store.events() if e.kind == "cluster.store_lost"]


# -- a node that dies and stays down (after every other test that uses node b) --------------------


def test_node_b_killed_mid_session_and_left_down_has_its_recording_completed_by_one_node(
    three: Three, tmp_path: Path
) -> None:
    """Node b is killed while a shell through it prints, once its uploader has sent a part of
    the recording, and is not started again. Once b's presence has been expired for
    lost_after, the node of a and c that holds the completer's lease (other nodes cannot
    read b's spool) completes b's upload from the parts in the bucket, closes the session as
    interrupted ("node b lost") and chains recording.completed; the recording then replays,
    through node a, to the last part b sent; the chain verifies. One node does all of it."""
    a, b, c = three.nodes["a"], three.nodes["b"], three.nodes["c"]
    before = three.home.store.events()[-1].seq
    crashed = crash_mid_session(three, "oli", b, tmp_path / "ssh", parts=True)
    assert three.home.store.session(crashed.session_id).state == "open"  # b not yet lost
    until(lambda: three.home.store.session(crashed.session_id).state != "open",
          "the completer to close node b's session", timeout=LOST_AFTER_KILL)  # fmt: skip
    ended = three.home.store.session(crashed.session_id)
    assert ended.state == "interrupted" and ended.end_reason and ended.ended_at
    seen = re.fullmatch(r"node b lost \(not seen since (.+)\)", ended.end_reason)
    assert seen is not None, ended.end_reason
    assert ended.ended_at - parse_iso(seen[1]) >= timedelta(seconds=LOST_AFTER)
    size = ended.recording_size  # the parts b sent, completed: its spool up to the last one
    assert size is not None and size > 0 and size % PART_SIZE == 0, size
    assert three.moto.read(crashed.key) == crashed.spooled.read_bytes()[:size]
    assert parts_sent(three, crashed.key) == 0  # nothing left in progress
    by = one_completer(three, crashed, before, [a, c])
    assert by in ("a", "c")
    replayed_to_the_last_part(a, crashed.session_id, tmp_path / "exported.cast")
    one_chain(a, three.home.store)
    assert b.proc is None  # down throughout


def one_completer(three: Three, crashed: Crashed, before: int, nodes: list[ServeNode]) -> str:
    """The one node that completed the crashed session's upload, closed its row and chained
    it (each once) and its node's loss: its name."""
    events = three.home.store.events(before)
    completed = [e for e in events if e.kind == "recording.completed"]
    assert [e.session_id for e in completed] == [crashed.session_id], completed
    detail = json.loads(completed[0].detail)
    assert (detail["node"], detail["reason"], detail["cut_short"]) == ("b", "node b lost", True)
    by = str(detail["completed_by"])
    assert completed[0].actor == f"node:{by}"
    closed = [json.loads(e.detail) for e in events
              if e.kind == "session.closed" and e.session_id == crashed.session_id]  # fmt: skip
    assert [(d["lost_node"], d["closed_by"]) for d in closed] == [("b", by)], closed
    lost = [json.loads(e.detail) for e in events if e.kind == "cluster.node_lost"]
    assert [(d["node"], d["sessions_closed"]) for d in lost] == [("b", 1)], lost
    acted = [n.name for n in nodes if completed_at(n, crashed.key)]
    assert acted == [by], acted
    return by


def completed_at(node: ServeNode, key: str) -> bool:
    """Whether `node`'s log says its completer completed the upload at `key`."""
    said = node.logged("completer.upload_completed")
    return any(str(line.get("object", "")).endswith(f"/{key}") for line in said)


def replayed_to_the_last_part(node: ServeNode, session_id: str, out: Path) -> None:
    """`replay` through `node` plays the line typed before the crash and says the recording
    is cut short (and nothing else: the chain's hash is the object's); `recordings export`
    holds the count b printed from its first number on, none missing, up to the cut."""
    replayed = node.cli("replay", session_id, "--speed", "1000")
    assert "before-the-crash" in replayed.stdout
    warnings = [line for line in replayed.stderr.splitlines() if line.startswith("bastion: ")]
    assert len(warnings) == 1 and "it was cut short" in warnings[0], replayed.stderr
    assert replayed.returncode == 0, replayed.stderr  # the chain records the cut: no tampering
    cli_ok(node, "recordings", "export", session_id, "--out", str(out))
    text = "".join(json.loads(line)[2] for line in out.read_text().splitlines()[1:])
    assert "before-the-crash" in text
    after = text.rsplit(f"seq 1 {COUNT}", 1)[1].lstrip("\r\n")  # the command's echo ends
    counted = after.splitlines()[:-1]  # (the last line may be cut)
    assert counted and counted == [str(n) for n in range(1, len(counted) + 1)], counted[:3]


# -- a node cut off from the store (last: it partitions node c) -----------------------------------


def store_lost_now(node: ServeNode) -> bool:
    """Whether the node's log says its store is lost and not yet back (a loaded machine can
    make an earlier test's stuck peer outlast a short grace)."""
    said = [json.loads(line).get("event") for line in node.log.read_text().splitlines()
            if line.startswith("{")]  # fmt: skip
    marks = [e for e in said if e in ("store.lost", "store.back")]
    return bool(marks) and marks[-1] == "store.lost"


def test_a_node_cut_off_from_the_store_past_its_grace_ends_its_sessions(
    three: Three, tmp_path: Path
) -> None:
    c = three.nodes["c"]
    lost = f"this bastion lost its audit store for more than {GRACE} s; the session is over"
    until(lambda: not store_lost_now(c), "node c to have its store before the cut", timeout=60)

    async def scenario(tmux: TmuxSession) -> tuple[str, str]:
        conn, query = await sleeping_through(three, "cat", c, "cat")
        url = await asyncio.to_thread(three.ticket_url, "cat", c)  # before the partition
        try:
            three.balancer.freeze()
            try:
                await tmux.wait_for_async(lost, GRACE + 10)
                said = await ends_within(query, BOUND)
                with pytest.raises(asyncpg.PostgresError) as refused:  # and it refuses logins
                    await asyncpg.connect(url, ssl=False)
            finally:
                three.balancer.thaw()
            return said, str(refused.value)
        finally:
            conn.terminate()

    with shell(three, "cat", c, tmp_path / "ssh") as tmux:
        said, refused = asyncio.run(scenario(tmux))
    assert lost in said
    assert "this bastion cannot reach its audit store (since " in refused, refused
    until(lambda: [s.state for s in three.home.store.sessions(user="cat")] == ["store_lost"] * 2,
          "node c, back, to close the rows", timeout=30)  # fmt: skip
    until(lambda: lost_events(three) == ["c"], "node c to chain the loss", timeout=30)
