"""Shared fixtures: a private OpenSSH sshd target and OpenSSH clients pointed at it."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

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
