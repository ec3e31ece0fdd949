"""What a content scan may cost, and the normalised view of text it reads besides the text
itself (pure). The scan runs on the proxy's one event loop: a value that would cost more is
masked whole, never sent unscanned.
"""

from __future__ import annotations

import re
import unicodedata

CHECKS_PER_VALUE = 1000  # candidates validated (and emails found) one value may cost
CHECKS_PER_RESULT = 1_000_000  # the same over a whole result
READS_PER_VALUE = 20_000  # groups of digits, IBAN- and address-shaped runs one value may hold
SCAN_LIMIT = 256 << 10  # bytes: a longer value with a candidate shape is masked whole
TOO_MUCH = "too_much_to_scan"  # the query log's name for a value masked whole for that


class TooMuchToScan(Exception):
    """A value would cost more scanning than a scan may spend on it: it is masked whole."""


class Budget:
    """The checks left to spend: per value (from `start()`) and over the whole result. Past
    either, `charge` raises TooMuchToScan; the scan runs on the proxy's one event loop."""

    def __init__(self, per_value: int = CHECKS_PER_VALUE, per_result: int = CHECKS_PER_RESULT,
                 reads: int = READS_PER_VALUE) -> None:  # fmt: skip
        self.per_value, self.per_result, self.reads = per_value, per_result, reads
        self.in_value = self.in_result = self.read_in_value = 0

    def start(self) -> None:
        """A new value begins."""
        self.in_value = self.read_in_value = 0

    def restart(self) -> None:
        """A new result begins."""
        self.in_value = self.in_result = self.read_in_value = 0

    def read(self) -> None:
        """One shape more read in Python (a group of digits, a run shaped like an IBAN or an
        address): cheap, but a value of nothing else would keep the loop busy."""
        self.read_in_value += 1
        if self.read_in_value > self.reads:
            raise TooMuchToScan

    def charge(self) -> None:
        """One check more, before it is made."""
        self.in_value += 1
        self.in_result += 1
        if self.in_value > self.per_value or self.in_result > self.per_result:
            raise TooMuchToScan


# The UTF-8 of what the normalised view changes: U+00A0 and U+00AD, U+2000-2015, U+202F,
# U+2060, U+2212, U+3000, U+FEFF, U+FF00-FF5F (the fullwidth forms).
FOLDED_BYTES = re.compile(
    rb"\xc2[\xa0\xad]|\xe2\x80[\x80-\x95\xaf]|\xe2\x81\xa0|\xe2\x88\x92|\xe3\x80\x80"
    rb"|\xef\xbb\xbf|\xef\xbc[\x80-\xbf]|\xef\xbd[\x80-\x9f]"
)
# Removed from the view (zero-width characters, the soft hyphen), or read as "-" (dashes and
# the minus sign); NFKC then reads Unicode spaces as " " and fullwidth forms as ASCII.
_FOLD = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u200e\u200f\u2060\ufeff\u00ad")) | dict.fromkeys(
    map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\uff0d"), "-"
)


def normal_view(text: str) -> str:
    """The text as the detectors should read it: "+31\u00a06" as "+31 6", "\uff20" as "@"."""
    return unicodedata.normalize("NFKC", text.translate(_FOLD))
