"""What every part of the command line shares: the parser class, flags and registration."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from bastion.commands.app import App
from bastion.errors import Exit

Handler = Callable[[App, argparse.Namespace], int]


class Parser(argparse.ArgumentParser):
    """argparse that exits with our usage code and a one-line message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(Exit.USAGE, f"bastion: {message} (see `{self.prog} --help`)\n")


def json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def qr_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--qr-png", metavar="FILE", help="also write the QR code as PNG")
    parser.add_argument("--qr-svg", metavar="FILE", help="also write the QR code as SVG")
    parser.add_argument("--no-qr", action="store_true", help="do not draw the QR code")
    json_flag(parser)


def command(
    sub: argparse._SubParsersAction[Parser], name: str, handler: Handler, help_text: str
) -> Parser:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(handler=handler)
    return parser


def optional_decider(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--as", dest="as_user", metavar="NAME",
                        help="record the decision as this bastion user (their TOTP code is"
                             " asked for) instead of the OS account")  # fmt: skip


def decider(parser: argparse.ArgumentParser, who: str = "deciding") -> None:
    parser.add_argument("--as", dest="as_user", metavar="NAME", required=True,
                        help=f"the bastion user {who}; their TOTP code is asked for")  # fmt: skip
    json_flag(parser)


def page_flags(parser: argparse.ArgumentParser, limit: int) -> None:
    """--limit and --cursor of a listing in pages, and --json."""
    parser.add_argument("--limit", type=int, default=limit, help=f"rows a page (default {limit})")
    parser.add_argument("--cursor", metavar="CURSOR", help="the next page, as the last one said")
    json_flag(parser)
