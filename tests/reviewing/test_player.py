"""The browser's recording player: installed by the set-up from the npm registry, at the pinned
version, found for the web console to serve; a clear one-line error when it is not there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.reviewing.player import PLAYER_VERSION, VENDOR, PlayerMissing, player_assets

ROOT = Path(__file__).resolve().parents[2]


def test_the_set_up_installed_the_pinned_player() -> None:
    """scripts/test (scripts/lib.sh install_player) ran `npm ci` before this test."""
    assets = player_assets()
    assert assets.version == PLAYER_VERSION
    assert assets.js.is_relative_to(VENDOR) and assets.css.is_relative_to(VENDOR)
    script = assets.js.read_text(encoding="utf-8")
    assert "AsciinemaPlayer" in script and "Apache-2.0" in script.splitlines()[0]
    assert ".ap-player" in assets.css.read_text(encoding="utf-8")
    installed = json.loads((VENDOR / "node_modules/asciinema-player/package.json").read_text())
    assert installed["name"] == "asciinema-player" and installed["version"] == PLAYER_VERSION


def test_the_pin_is_the_same_in_the_manifest_the_lock_and_the_code() -> None:
    manifest = json.loads((ROOT / "scripts/player/package.json").read_text())
    lock = json.loads((ROOT / "scripts/player/package-lock.json").read_text())
    assert manifest["dependencies"] == {"asciinema-player": PLAYER_VERSION}
    locked = lock["packages"]["node_modules/asciinema-player"]
    assert locked["version"] == PLAYER_VERSION
    assert locked["integrity"].startswith("sha512-")  # npm ci refuses a tarball that differs
    assert all(p.get("integrity") for name, p in lock["packages"].items() if name)


def test_the_player_is_not_in_the_repository() -> None:
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "/vendor/" in ignored
    assert not list((ROOT / "bastion").rglob("asciinema-player*"))


def fake_install(vendor: Path, version: str, *, files: tuple[str, ...]) -> None:
    package = vendor / "node_modules/asciinema-player"
    (package / "dist/bundle").mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({"name": "asciinema-player",
                                                      "version": version}))  # fmt: skip
    for name in files:
        (package / "dist/bundle" / name).write_text("x")


BOTH = ("asciinema-player.min.js", "asciinema-player.css")


@pytest.mark.parametrize(
    ("version", "files", "problem"),
    [
        (None, (), "the recording player is not installed in"),
        ("3.0.0", BOTH, "is version 3.0.0, not the pinned"),
        (PLAYER_VERSION, ("asciinema-player.css",), "asciinema-player.min.js is missing"),
        (PLAYER_VERSION, ("asciinema-player.min.js",), "asciinema-player.css is missing"),
    ],
)
def test_a_missing_or_wrong_player_is_one_clear_line(
    tmp_path: Path, version: str | None, files: tuple[str, ...], problem: str
) -> None:
    if version is not None:
        fake_install(tmp_path, version, files=files)
    with pytest.raises(PlayerMissing) as caught:
        player_assets(tmp_path)
    message = str(caught.value)
    assert problem in message and "\n" not in message
    assert "scripts/lib.sh install_player" in message


def test_a_stand_in_with_the_pinned_version_and_both_files_is_found(tmp_path: Path) -> None:
    fake_install(tmp_path, PLAYER_VERSION, files=BOTH)
    assert player_assets(tmp_path).js.name == "asciinema-player.min.js"
