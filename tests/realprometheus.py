"""A real Prometheus (Debian's) scraping one target every second, with rules, for tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.realssh import ClosesOnExit, free_port

DEADLINE = 60.0  # a safety net for the first scrapes and rule evaluations, not a timing


class Prometheus(ClosesOnExit):
    """`prometheus` on a free loopback port, scraping `target` (HOST:PORT) as job "bastion"
    with the bearer token in `token_file`, evaluating `rules`."""

    def __init__(self, home: Path, target: str, token_file: Path, rules: Path) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [{
                "job_name": "bastion",
                "authorization": {"credentials_file": str(token_file)},
                "static_configs": [{"targets": [target]}],
            }],
        }  # fmt: skip
        self.config = home / "prometheus.yml"
        self.config.write_text(json.dumps(config))  # JSON is YAML
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = home / "prometheus.log"

    def start(self) -> Prometheus:
        binary = shutil.which("prometheus")
        assert binary is not None, "prometheus is missing: scripts/test installs Debian's"
        with self._log.open("wb") as log:
            self._proc = subprocess.Popen(
                [binary, f"--config.file={self.config}",
                 f"--storage.tsdb.path={self.home / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.until(lambda: self.api("status/runtimeinfo") is not None, "prometheus to start")
        return self

    def api(self, path: str, **params: str) -> Any:
        """One call of the HTTP API: its `data`, or None when it does not answer yet."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}{query}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.loads(response.read())
        except OSError:
            return None
        return body.get("data") if body.get("status") == "success" else None

    def value(self, query: str) -> float | None:
        """An instant query's single value (None: no series)."""
        data = self.api("query", query=query)
        if not data or not data.get("result"):
            return None
        return float(data["result"][0]["value"][1])

    def until(self, check: Any, what: str) -> None:
        end = time.monotonic() + DEADLINE
        while not check():
            if self._proc is not None and self._proc.poll() is not None:
                raise AssertionError(f"prometheus exited: {self.log_text()}")
            assert time.monotonic() < end, f"{what}: not within {DEADLINE}s\n{self.log_text()}"
            time.sleep(0.1)

    def log_text(self) -> str:
        return self._log.read_text(errors="replace") if self._log.exists() else ""

    def close(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
