"""TOTP enrolment output: the otpauth URI, a QR code on the terminal, PNG or SVG files."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import segno


@dataclass(frozen=True)
class Enrolment:
    """What a new authenticator needs; shown once, never stored in clear."""

    user: str
    uri: str

    def qr_text(self) -> str:
        """The QR code drawn with block characters for a terminal."""
        out = io.StringIO()
        segno.make(self.uri, error="m").terminal(out=out, compact=True, border=2)
        return out.getvalue()

    def save(self, path: Path) -> None:
        """Write the QR code as PNG or SVG, chosen by the file's suffix."""
        suffix = path.suffix.lower()
        if suffix not in (".png", ".svg"):
            raise ValueError(f"{path}: a QR code can be written as .png or .svg")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            segno.make(self.uri, error="m").save(out, kind=suffix[1:], scale=6, border=2)

    def svg_data_uri(self) -> str:
        """The QR code as an SVG data: URI for an <img> (no script, no inline style), made in
        memory for the one page that shows it; never written anywhere."""
        uri: str = segno.make(self.uri, error="m").svg_data_uri(scale=6, border=2)
        return uri
