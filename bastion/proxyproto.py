"""The PROXY protocol header (v1 text, v2 binary) a load balancer sends first, as bytes in."""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass

# A reader takes the bytes a trusted balancer sends before the client's own and says who the
# client is. It never asks for a byte past the header (wanted()), so the socket can be handed
# to the door with the client's first byte unread; bytes fed past the header are kept as
# `rest`. States: detecting -> v1 line | v2 fixed part -> v2 body -> done; any garbage is a
# HeaderError, which ends the connection.
#
#   v1: "PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n" or "PROXY UNKNOWN ...\r\n",
#       at most 107 bytes with the CRLF.
#   v2: 12-byte signature, version/command, family/transport, 2-byte length, addresses,
#       then TLVs (type, 2-byte length, value) filling the length exactly.
#
# LOCAL (v2: the balancer's own health check) and UNKNOWN/UNSPEC say "no client behind":
# the connection's own peer address stands. TLV values are checked for shape, not used.

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
V1_MAX = 107  # bytes, CRLF included (the specification's bound)
V1_MIN = 15  # "PROXY UNKNOWN\r\n": no header of either version is shorter
V2_FIXED = 16
V2_MAX = 4096  # bytes in all: addresses and TLVs a balancer sends fit many times over

_V2_ADDRESSES = {0x11: (4, 12), 0x21: (16, 36), 0x31: (0, 216)}  # family/transport: size
_PORT = r"(?:0|[1-9][0-9]{0,4})"
_V1_LINE = re.compile(rf"PROXY (TCP4|TCP6) (\S+) (\S+) ({_PORT}) ({_PORT})\r\n", re.ASCII)


class HeaderError(ValueError):
    """The peer sent no valid PROXY header: the connection must be closed."""


@dataclass(frozen=True)
class ProxyHeader:
    """Who the balancer says the client is; source None: no client address given (a LOCAL
    health check, UNKNOWN, or a family without an IP address)."""

    version: int
    source: str | None = None
    source_port: int = 0
    local: bool = False


class HeaderReader:
    """Reads one PROXY header (either version) from bytes fed in any pieces."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.header: ProxyHeader | None = None
        self.rest = b""  # bytes fed after the header (the client's own)

    def wanted(self) -> int:
        """How many bytes may be read next without reading past the header (0: done)."""
        if self.header is not None:
            return 0
        have = len(self._buf)
        if have < V1_MIN:
            return V1_MIN - have
        if self._buf.startswith(V1_PREFIX):
            return 1  # a text line: its end is only known when it comes
        if have < V2_FIXED:
            return V2_FIXED - have
        return V2_FIXED + _v2_length(self._buf) - have

    def feed(self, data: bytes) -> ProxyHeader | None:
        """Take more bytes; the header once complete, None while more are needed."""
        if self.header is not None:
            self.rest += data
            return self.header
        self._buf += data
        self._detect()
        if self._buf.startswith(V1_PREFIX):
            end = self._buf.find(b"\n") - 1
            if end >= 0 and self._buf[end] != ord("\r"):
                raise HeaderError("malformed PROXY v1 line (a bare LF)")
            if end < 0:
                if len(self._buf) >= V1_MAX:
                    raise HeaderError("PROXY v1 line longer than 107 bytes")
                return None
            if end + 2 > V1_MAX:
                raise HeaderError("PROXY v1 line longer than 107 bytes")
            return self._done(parse_v1(bytes(self._buf[: end + 2])), end + 2)
        if len(self._buf) < V2_FIXED:
            return None
        total = V2_FIXED + _v2_length(self._buf)
        if len(self._buf) < total:
            return None
        return self._done(parse_v2(bytes(self._buf[:total])), total)

    def _detect(self) -> None:
        """Refuse as soon as the bytes can be neither version's start."""
        head = bytes(self._buf[:12])
        if not (head[:6] == V1_PREFIX[: len(head[:6])] or V2_SIGNATURE.startswith(head)):
            raise HeaderError("not a PROXY protocol header")

    def _done(self, header: ProxyHeader, used: int) -> ProxyHeader:
        self.header = header
        self.rest = bytes(self._buf[used:])
        self._buf.clear()
        return header


def _v2_length(buf: bytearray) -> int:
    """The v2 body length, checked against the bound before anything waits for it."""
    (length,) = struct.unpack_from("!H", buf, 14)
    if V2_FIXED + length > V2_MAX:
        raise HeaderError(f"PROXY v2 header of {V2_FIXED + length} bytes (at most {V2_MAX})")
    return int(length)


def parse_v1(line: bytes) -> ProxyHeader:
    """One complete v1 line, CRLF included."""
    if line.startswith(b"PROXY UNKNOWN") and line[13:14] in (b" ", b"\r"):
        if any(b < 0x20 or b > 0x7E for b in line[:-2]):
            raise HeaderError("PROXY v1 line with non-printable bytes")
        return ProxyHeader(1)
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise HeaderError("PROXY v1 line with non-ASCII bytes") from None
    found = _V1_LINE.fullmatch(text)
    if found is None:
        raise HeaderError("malformed PROXY v1 line")
    family, src, dst, sport, dport = found.groups()
    kind = ipaddress.IPv4Address if family == "TCP4" else ipaddress.IPv6Address
    if "%" in src or "%" in dst:
        raise HeaderError("PROXY v1 line with a scoped address")
    try:
        source, _ = kind(src), kind(dst)
    except ValueError:
        raise HeaderError(f"PROXY v1 line with a bad {family} address") from None
    if int(sport) > 65535 or int(dport) > 65535:
        raise HeaderError("PROXY v1 line with a port above 65535")
    return ProxyHeader(1, _shown(source), int(sport))


def parse_v2(block: bytes) -> ProxyHeader:
    """One complete v2 header: the fixed part and exactly the body its length gives."""
    version, command = block[12] >> 4, block[12] & 0x0F
    if version != 2:
        raise HeaderError(f"PROXY v2 header with version {version}")
    if command not in (0, 1):
        raise HeaderError(f"PROXY v2 header with unknown command {command}")
    family = block[13]
    body = block[V2_FIXED:]
    if command == 0:  # LOCAL: the balancer speaks for itself; addresses, if any, are ignored
        return ProxyHeader(2, local=True)
    if family == 0x00:  # UNSPEC: the balancer does not know the client
        return ProxyHeader(2)
    if family not in _V2_ADDRESSES:
        raise HeaderError(f"PROXY v2 header with unsupported family/transport 0x{family:02x}")
    size, span = _V2_ADDRESSES[family]
    if len(body) < span:
        raise HeaderError("PROXY v2 header shorter than its addresses")
    _check_tlvs(body[span:])
    if size == 0:  # AF_UNIX: a path, not an address
        return ProxyHeader(2)
    kind = ipaddress.IPv4Address if size == 4 else ipaddress.IPv6Address
    source = kind(body[:size])
    (port,) = struct.unpack_from("!H", body, 2 * size)
    return ProxyHeader(2, _shown(source), port)


def _check_tlvs(tlvs: bytes) -> None:
    """Each TLV's length fits what is left, and they fill the header exactly."""
    at = 0
    while at < len(tlvs):
        if len(tlvs) - at < 3:
            raise HeaderError("PROXY v2 header with a truncated TLV")
        (length,) = struct.unpack_from("!H", tlvs, at + 1)
        at += 3 + length
        if at > len(tlvs):
            raise HeaderError("PROXY v2 header with a TLV longer than the header")


def _shown(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The address as the doors show a peer's: an IPv4 client behind an IPv6 balancer as
    IPv4, so per-address limits count one address once."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def encode_v2(source: str, port: int, dest: str, dest_port: int, tlvs: bytes = b"") -> bytes:
    """A v2 PROXY header for a TCP client (for tests and the benchmark's own balancer-free
    checks)."""
    src, dst = ipaddress.ip_address(source), ipaddress.ip_address(dest)
    family = 0x11 if src.version == 4 else 0x21
    body = src.packed + dst.packed + struct.pack("!HH", port, dest_port) + tlvs
    return V2_SIGNATURE + bytes([0x21, family]) + struct.pack("!H", len(body)) + body


def encode_v1(source: str, port: int, dest: str, dest_port: int) -> bytes:
    """A v1 PROXY line for a TCP client."""
    family = "TCP4" if ipaddress.ip_address(source).version == 4 else "TCP6"
    return f"PROXY {family} {source} {dest} {port} {dest_port}\r\n".encode("ascii")
