"""Sample message streams and a reader driver shared by the pgwire tests."""

from __future__ import annotations

from bastion import pgwire as pw

FIELDS = (
    pw.Field("id", 16385, 1, 23, 4, -1, 0),
    pw.Field("ssn", 16385, 4, 25, -1, -1, 0),
    pw.Field("?column?", 0, 0, 1700, -1, 655366, 1),
)

BACKEND = [
    pw.authentication_ok(),
    pw.parameter_status("server_version", "15.18"),
    pw.parameter_status("client_encoding", "UTF8"),
    pw.backend_key_data(4242, b"\x01\x02\x03\x04"),
    pw.ready_for_query("I"),
    pw.row_description(FIELDS),
    pw.data_row([b"1", b"123-45-6789", b"\x00\x01"]),
    pw.data_row([b"2", None, b""]),
    pw.data_row([b"3", "ünïcödé".encode(), b"x" * 300]),
    pw.command_complete("SELECT 3"),
    pw.notice_response("NOTICE", "00000", "just so you know"),
    pw.error_response("ERROR", "42P01", 'relation "nope" does not exist'),
    pw.ready_for_query("E"),
]

FRONTEND = [
    pw.query("SELECT 1; SELECT 2"),
    pw.parse("s1", "SELECT $1::int, $2", (23, 0)),
    pw.bind("", "s1", [b"42", None], (0,), (1, 0)),
    pw.describe("P", ""),
    pw.execute("", 0),
    pw.close("S", "s1"),
    pw.flush(),
    pw.sync(),
    pw.copy_data(b"1\tone\n"),
    pw.copy_done(),
    pw.terminate(),
]


def read_all(reader: pw.FrameReader, chunks: list[bytes]) -> list[pw.Frame]:
    """Feed each chunk and drain every frame after it, as a proxy loop does."""
    out: list[pw.Frame] = []
    for chunk in chunks:
        reader.feed(chunk)
        out.extend(reader.frames())
    return out


def one_by_one(data: bytes) -> list[bytes]:
    """``data`` as one-byte chunks."""
    return [data[i : i + 1] for i in range(len(data))]
