"""Shared fixtures: a private OpenSSH sshd target and OpenSSH clients pointed at it."""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from pathlib import Path

import pytest

from tests.realpg import PgCluster, PgClusterFactory, PgDatabase
from tests.realssh import OpenSSHClient, Sshd

_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item, so fixtures can tell whether the test failed."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def request_failed(request: pytest.FixtureRequest) -> bool:
    """Whether the requesting test's set-up or call failed (for use in fixture teardown)."""
    reports = request.node.stash.get(_REPORTS, {})
    return any(report.failed for report in reports.values())


@pytest.fixture
def sshd(request: pytest.FixtureRequest) -> Iterator[Sshd]:
    """A started private sshd on a free loopback port; its log is printed when the test fails."""
    server = Sshd()
    try:
        server.start()
        yield server
    finally:
        if request_failed(request):
            print(f"--- sshd log ({server.host}:{server.port}) ---\n{server.log_text()}")
        server.close()


@pytest.fixture
def sshd_client(sshd: Sshd, tmp_path: Path) -> OpenSSHClient:
    """OpenSSH ssh/scp/sftp straight to `sshd` as its login, with its key and pinned host key."""
    return OpenSSHClient.for_sshd(sshd, tmp_path / "openssh-client")


# --- PostgreSQL ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One private PostgreSQL 15 cluster per test process (per xdist worker), started once.

    Tests share it: use `pg` for a database of your own, and leave the server running (tests
    that stop, restart or kill a server take `pg_private`). When a test using it fails, the
    server's log lines from during that test are printed."""
    cluster = PgCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(autouse=True)
def _pg_cluster_log_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """For tests using pg_cluster (directly or through pg): print its log of the test on failure."""
    if "pg_cluster" not in request.fixturenames:
        yield
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    start = cluster.log_offset()
    yield
    if request_failed(request):
        print(f"--- PostgreSQL log ({cluster.host}:{cluster.port}) ---\n{cluster.log_text(start)}")


@pytest.fixture
def pg(pg_cluster: PgCluster) -> Iterator[PgDatabase]:
    """A fresh database on the shared cluster, owned by a fresh login role (SCRAM, random
    password) and seeded like seed_orders (customers, orders); dropped with its role after."""
    db = pg_cluster.fresh_orders()
    try:
        yield db
    finally:
        pg_cluster.discard(db)


@pytest.fixture
def shop(pg_cluster: PgCluster) -> Iterator[PgDatabase]:
    """The masking tests' shop (tests/masking/shop.py) on the shared cluster, dropped with its
    role after (tests/masking/conftest.py has its own, which drops the masking roles too)."""
    from tests.masking.shop import make_shop  # noqa: PLC0415 - only the tests that use it

    db = make_shop(pg_cluster)
    try:
        yield db
    finally:
        pg_cluster.discard(db)


@pytest.fixture
def pg_cluster_factory(request: pytest.FixtureRequest) -> Iterator[PgClusterFactory]:
    """Makes and starts private clusters (e.g. ssl=True); each is closed after the test, and its
    log printed when the test fails."""
    clusters: list[PgCluster] = []

    def make(*, ssl: bool = False, extra_config: Sequence[str] = ()) -> PgCluster:
        cluster = PgCluster(ssl=ssl, extra_config=extra_config)
        clusters.append(cluster)
        return cluster.start()

    try:
        yield make
    finally:
        failed = request_failed(request)
        for cluster in clusters:
            try:
                if failed:
                    print(f"--- PostgreSQL log ({cluster.host}:{cluster.port}) ---")
                    print(cluster.log_text())
            finally:
                cluster.close()


@pytest.fixture
def pg_private(pg_cluster_factory: PgClusterFactory) -> PgCluster:
    """A started cluster of the test's own, to stop, restart or kill; closed after the test."""
    return pg_cluster_factory()


# --- the store on each backend ---------------------------------------------------------

from tests import doorstore  # noqa: E402
from tests.storeat import (  # noqa: E402, F401 - fixtures
    BACKENDS,
    pg_store_at,
    store_at,
    store_template,
)

# --- the door and CLI suites on each backend -----------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{doorstore.MARK}: run each test with the bastions' stores on SQLite and on PostgreSQL",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests of a module marked both_stores run once per backend (ids [sqlite], [postgresql])."""
    if metafunc.definition.get_closest_marker(doorstore.MARK) is not None:
        metafunc.parametrize("door_store", BACKENDS, indirect=True)


@pytest.fixture(autouse=True)
def door_store(request: pytest.FixtureRequest) -> Iterator[str]:
    """Where this test's bastions keep their stores: SQLite unless parametrised otherwise."""
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        yield backend
        return
    places = doorstore.StorePlaces(request.getfixturevalue("store_template"))
    doorstore.use(places)
    try:
        yield backend
    finally:
        doorstore.use(doorstore.SQLITE)
        places.close()
