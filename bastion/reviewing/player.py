"""Where the browser's recording player (asciinema-player, from the npm registry) is installed.

The set-up scripts install the version pinned in scripts/player/package-lock.json into
vendor/ at the repository's root (scripts/lib.sh, install_player); it is never committed.
The web console serves the two files found here as static assets. The bundle instantiates
WebAssembly, so the page's Content-Security-Policy needs script-src 'self' 'wasm-unsafe-eval'.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bastion.errors import BastionError, Exit

PLAYER_VERSION = "3.18.0"  # the same pin as scripts/player/package.json and its lock
PACKAGE = "asciinema-player"
VENDOR = Path(__file__).resolve().parents[2] / "vendor"
BUNDLE = Path("dist/bundle")
JS = "asciinema-player.min.js"
CSS = "asciinema-player.css"
INSTALL = "run ./scripts/test or ./scripts/demo (scripts/lib.sh install_player) to install it"


class PlayerMissing(BastionError):
    """The player's files are not where the set-up puts them, or not the pinned version."""

    exit_code = Exit.CONFIG


@dataclass(frozen=True)
class PlayerAssets:
    """The player's script and style sheet, to be served as static files."""

    js: Path
    css: Path
    version: str


def player_assets(vendor: Path = VENDOR) -> PlayerAssets:
    """The installed player's files; PlayerMissing (one line naming the fix) when they are
    absent or not the pinned version."""
    package = vendor / "node_modules" / PACKAGE
    try:
        manifest = json.loads((package / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise PlayerMissing(
            f"the recording player is not installed in {vendor}: {INSTALL}"
        ) from None
    version = manifest.get("version") if isinstance(manifest, dict) else None
    if version != PLAYER_VERSION:
        raise PlayerMissing(f"the recording player in {vendor} is version {version}, not the"
                            f" pinned {PLAYER_VERSION}: {INSTALL}")  # fmt: skip
    js, css = package / BUNDLE / JS, package / BUNDLE / CSS
    for path in (js, css):
        if not path.is_file():
            raise PlayerMissing(f"the recording player's {path.name} is missing from"
                                f" {path.parent}: {INSTALL}")  # fmt: skip
    return PlayerAssets(js, css, version)
