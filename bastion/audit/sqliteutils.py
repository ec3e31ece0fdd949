"""sqlite-utils, imported without pandas and numpy: it imports them when installed, for
DataFrame and array values the store never hands it, and that cost every command a third
of a second. bastion/audit/__init__.py imports this module before any other of its own."""

from __future__ import annotations

import sys

_SKIPPED = ("pandas", "numpy")


def _load() -> None:
    """Import sqlite_utils with `import pandas` and `import numpy` failing for that import
    only; anyone who imports them later gets them as usual."""
    if "sqlite_utils" in sys.modules:
        return
    blocked = [name for name in _SKIPPED if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # import fails: ImportError
    try:
        import sqlite_utils  # noqa: F401, PLC0415
    finally:
        for name in blocked:
            del sys.modules[name]


_load()
