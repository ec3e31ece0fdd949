"""Red team (issue 18): listeners.proxy_from must name balancers, not the whole Internet.

Every connection from an address in proxy_from is believed about its client's address. A
network as wide as 0.0.0.0/0 or ::/0 (a copied example, a hurried operator) lets any client
send its own PROXY header and claim any address: per-address limits and tickets bound to an
address stop meaning anything. Fail closed: refuse it in one line at load.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_config import config_error, write


@pytest.mark.parametrize(
    "network", ["0.0.0.0/0", "::/0", "0.0.0.0/1", "::/1", "10.0.0.0/8", "2001:db8::/32"]
)
def test_red18_a_balancer_network_as_wide_as_everyone_is_refused(
    tmp_path: Path, network: str
) -> None:
    path = write(tmp_path, f'[listeners]\nproxy_from = ["{network}"]\n')
    config_error(path, "listeners.proxy_from")
