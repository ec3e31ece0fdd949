"""Content detectors over free text: emails, phone numbers, payment cards, IBANs, national ids
and IP addresses, each found and masked where it stands in the text (pure).

Scanning is in two steps. `candidates` says which kinds of shape a value's bytes could hold;
it is the reference for the compiled scanner in _fastrows.c, which runs it over every value,
and every detector below only ever looks where its candidate shape was seen (a test checks
that too). Only a value with a candidate goes on to `find`, which validates each match with
a well-kept library: phonenumbers for phones, python-stdnum for cards, IBANs and national ids.
A net, never a control: an encoding the detectors don't read (base64, spelled-out digits)
passes; sensitive columns are found by lineage first.
"""

from __future__ import annotations

import functools
import importlib
import ipaddress
import itertools
import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import NamedTuple

import phonenumbers
from stdnum import iban as stdnum_iban
from stdnum import luhn

from bastion.masking.scanguard import FOLDED_BYTES, Budget

# Candidate shapes: a bit each, the same numbers as in _fastrows.c.
AT = 1  # an "@"
DIGITS = 2  # a run of digits and " ()+-./" holding at least 7 digits
IBAN_START = 4  # two letters then two digits, not inside a word
DOTTED = 8  # a run of digits and dots holding at least 3 dots and 4 digits
COLONS = 16  # a run of hex digits and colons holding "::" or at least 6 colons
ESCAPE = 32  # a backslash and "u": a JSON escape can spell any character
UNICODE = 64  # a character the normalised view changes (a Unicode space or dash, a fullwidth
# form, a zero-width character): "+31\u00a06 1234 5678" or "jane\uff20example.com"
MIN_DIGITS = 7
LONGEST_ID = 40  # characters: a national id is written in fewer, separators included
LONGEST_ADDRESS = 45  # characters: an IPv6 address with an IPv4 tail, written out in full

# National ids python-stdnum validates, each with at least 7 digits (a DIGITS candidate).
NATIONAL_IDS = (
    "us.ssn", "nl.bsn", "be.nn", "de.idnr", "fr.nir", "es.dni", "dk.cpr", "se.personnummer",
    "no.fodselsnummer", "fi.hetu", "pl.pesel", "pt.nif", "br.cpf", "in_.aadhaar",
)  # fmt: skip
KINDS = ("email", "phone", "card", "iban", "ipv4", "ipv6", *NATIONAL_IDS)
DEFAULT = ("email", "phone", "card", "iban", "us.ssn", "nl.bsn", "ipv4", "ipv6")
DEFAULT_REGIONS = ("US", "GB", "NL", "DE", "FR")
_NEEDS = {"email": AT, "phone": DIGITS, "card": DIGITS, "iban": IBAN_START, "ipv4": DOTTED,
          "ipv6": COLONS} | dict.fromkeys(NATIONAL_IDS, DIGITS)  # fmt: skip


@dataclass(frozen=True)
class Detectors:
    """Which detectors run, and the regions a phone number without "+" is read in."""

    kinds: tuple[str, ...] = DEFAULT
    regions: tuple[str, ...] = DEFAULT_REGIONS

    @functools.cached_property
    def kind_set(self) -> frozenset[str]:
        return frozenset(self.kinds)

    @functools.cached_property
    def classes(self) -> int:
        """The candidate shapes these detectors need (ESCAPE is added for JSON by the caller)."""
        found = 0
        for kind in self.kinds:
            found |= _NEEDS[kind]
        return found


# -- the candidate scan (reference for _fastrows.c) -----------------------------------------

_DIGIT_RUN = re.compile(rb"[0-9 ()+\-./]+")
_DOT_RUN = re.compile(rb"[0-9.]+")
_HEX_RUN = re.compile(rb"[0-9A-Fa-f:]+")
_IBAN_HEAD = re.compile(rb"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}")


def candidates(value: bytes) -> int:
    """The candidate shapes in a value's bytes, as a set of bits."""
    found = AT if b"@" in value else 0
    if any(sum(48 <= c <= 57 for c in m.group()) >= MIN_DIGITS for m in _DIGIT_RUN.finditer(value)):
        found |= DIGITS
    if _IBAN_HEAD.search(value):
        found |= IBAN_START
    if any(_dotted(m.group()) for m in _DOT_RUN.finditer(value)):
        found |= DOTTED
    if any(_ipv6_shape(m.group()) for m in _HEX_RUN.finditer(value)):
        found |= COLONS
    if b"\\u" in value:
        found |= ESCAPE
    if FOLDED_BYTES.search(value):
        found |= UNICODE
    return found


def _dotted(run: bytes) -> bool:
    return run.count(b".") >= 3 and len(run) - run.count(b".") >= 4


def _ipv6_shape(run: bytes | str) -> bool:
    colons = run.count(b":") if isinstance(run, bytes) else run.count(":")
    double = b"::" in run if isinstance(run, bytes) else "::" in run
    return double or colons >= 6


# -- finding and validating ------------------------------------------------------------------


class Hit(NamedTuple):
    """One match: where it is, which detector, how much of its start stays in clear."""

    start: int
    end: int
    kind: str
    keep_head: int = 0  # characters kept in clear at the start (a phone's country code)


# Every pattern here runs in time linear in the text (a value may be megabytes, and the scan
# runs on the proxy's one event loop): a start position is tried only where a lookbehind lets
# it (the start of a run), and after the greedy first try at most a bounded give-back follows.
# Possessive quantifiers ("*+", "++") keep a run from being given back character by character.
# Linear: the local part is at most 64 characters tried from each start, and "@" ends it.
EMAIL = re.compile(r"[\w.%+\-]{1,64}+@[\w\-]{1,63}+(?:\.[\w\-]{1,63}+)+")
# Linear: tried only where a run of digits and separators starts, the run read once.
_RUN = re.compile(r"(?<![0-9 ()+\-./])[ ()+\-./]*+[0-9][0-9 ()+\-./]*+")
# Linear: at most 19 digits tried from each start, and a start is never after a digit.
_CARD = re.compile(r"(?<![0-9])[0-9](?:[ \-]?[0-9]){12,18}(?![0-9])")
# A national id: digits with separators, a letter at most before and after. Linear: blocks of
# digits are possessive, so a failed end gives back one block at most (the separator before it
# is a valid end), and a start is never inside a block.
_ID = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]?[0-9]++(?:[ ./\-][0-9]++)*[A-Za-z]?(?![A-Za-z0-9])")
# An SSN written without dashes, after its label ("SSN: 123456789"). Linear: fixed words, the
# blanks possessive, and a start only where a word starts.
_SSN_LABELLED = re.compile(
    r"(?i)(?<![a-z])(?:ssn|social security(?: number| no\.?)?)"
    r"[ \t]*+[:#]?[ \t]*+([0-9]{9})(?![0-9])"
)
# Linear: fixed width.
_SSN = re.compile(r"(?<![0-9\-])[0-9]{3}-[0-9]{2}-[0-9]{4}(?![0-9\-])")
# Linear: nothing follows the groups, so the greedy first try always stands; only a run's
# start may start it.
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}[A-Za-z0-9]*+(?: [A-Za-z0-9]++)*+")
# Addresses stand alone: "v1.2.3.4" is a version, "std::vector" code. Linear: a start only
# where a run starts; the digits are possessive, so a failed end gives back to a dot at most.
_IPV4 = re.compile(r"(?<![\w.])(?:[0-9]++|\.)+(?!\w)")
# The hex-and-colon part is read once; then dotted digits (an IPv4 tail), where a failed end
# gives back one group, or the dots before it, at most (a dot is a valid end).
_IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f:]++(?:\.++[0-9]++)*(?:\.+(?![0-9]))?(?![\w:])")
# Card numbers begin with an issuer's prefix: Visa 4, Mastercard 51-55 and 2221-2720, Amex
# 34/37, Discover 6011/65/644-649, JCB 35, Diners 30/36/38, UnionPay 62, Maestro 50/56-69.
_ISSUER = re.compile(r"4|5[0-9]|2[2-7]|3[0-8]|6[0-9]")
# Linear: fixed widths.
_DATE = re.compile(
    r"(?<![0-9])(?:[0-9]{4}[\-./][0-9]{1,2}[\-./][0-9]{1,2}"
    r"|[0-9]{1,2}[\-./][0-9]{1,2}[\-./][0-9]{4})(?![0-9])"
)
_MODULES: dict[str, ModuleType] = {}
# Of two detectors matching the same text, the one whose check is stricter names it.
_RANK = {"card": 0, "iban": 1, "ipv4": 3, "ipv6": 3, "phone": 4}


def _module(kind: str) -> ModuleType:
    if kind not in _MODULES:
        _MODULES[kind] = importlib.import_module(f"stdnum.{kind}")
    return _MODULES[kind]


_NOT_DIGIT = re.compile(r"[^0-9]+")


def _digits(text: str) -> int:
    return len(_NOT_DIGIT.sub("", text))


def find(text: str, detectors: Detectors, shapes: int = ~0,
         budget: Budget | None = None) -> list[Hit]:  # fmt: skip
    """Every match of the detectors in `text`, validated, in order of where it starts.
    `shapes` (candidates() of the text's bytes) skips the detectors whose shape is absent.
    Each check is charged to `budget` (a fresh one when None): raises TooMuchToScan."""
    kinds, hits = detectors.kind_set, []
    budget = budget if budget is not None else Budget()
    if "email" in kinds and shapes & AT and "@" in text:
        for m in _emails(text):
            budget.charge()
            hits.append(Hit(m.start(), m.end(), "email"))
    ids = not kinds.isdisjoint(NATIONAL_IDS)
    nine = False  # nine digits in a row, as a labelled SSN needs
    for run in _RUN.finditer(text) if shapes & DIGITS else ():
        digits = len(run.group().translate(_SEPARATORS))  # a run holds digits and these only
        if digits >= MIN_DIGITS:
            nine = nine or (digits >= 9 and _NINE.search(run.group()) is not None)
            found = _in_run(text, run.start(), run.end(), detectors, budget)
            hits += found
            if ids and not any(h.kind == "phone" and text[h.start] == "+" and
                               h.start <= run.start() + 1 and run.end() - 1 <= h.end
                               for h in found):  # fmt: skip
                hits += _national_ids(text, kinds, run.start(), run.end(), budget)
    if "us.ssn" in kinds and nine:
        for m in _SSN_LABELLED.finditer(text):
            budget.charge()
            if _module("us.ssn").is_valid(m.group(1)):
                hits.append(Hit(m.start(1), m.end(1), "us.ssn"))
    if "iban" in kinds and shapes & IBAN_START:
        hits += _ibans(text, budget)
    if "ipv4" in kinds and shapes & DOTTED:
        hits += _ips(text, _IPV4, 4, budget)
    if "ipv6" in kinds and shapes & COLONS:
        hits += _ips(text, _IPV6, 6, budget)
    return sorted(hits, key=lambda h: (h.start, -h.end, _RANK.get(h.kind, 2)))


def _emails(text: str) -> Iterator[re.Match[str]]:
    """EMAIL.finditer(text), without trying every start before each "@": a match holds one "@",
    and its local part (at most 64 characters) is the run of local-part characters before it,
    so it starts where that run starts, or 64 characters before the "@"; else not at all."""
    pos = 0
    while (at := text.find("@", pos)) >= 0:
        lo = max(pos, at - 64)
        before = _NOT_LOCAL.search(text[lo:at][::-1])  # the last character no local part holds
        m = EMAIL.match(text, at - before.start() if before is not None else lo)
        if m is not None:
            yield m
            pos = m.end()
        else:  # no match holds this "@": the next starts after it
            pos = at + 1


_NOT_LOCAL = re.compile(r"[^\w.%+\-]")
_NINE = re.compile(r"[0-9]{9}")
_SEPARATORS = str.maketrans("", "", " ()+-./")


def _in_run(text: str, start: int, end: int, detectors: Detectors,
            budget: Budget) -> list[Hit]:  # fmt: skip
    """Cards, US SSNs and phone numbers inside one run of digits and separators."""
    run, hits, kinds = text[start:end], [], detectors.kind_set
    if "card" in kinds:
        for m in _CARD.finditer(run):
            digits = re.sub(r"[ \-]", "", m.group())
            if _ISSUER.match(digits):
                budget.charge()
                if luhn.is_valid(digits):
                    hits.append(Hit(start + m.start(), start + m.end(), "card"))
    if "us.ssn" in kinds:
        for m in _SSN.finditer(run):
            budget.charge()
            if _module("us.ssn").is_valid(m.group()):
                hits.append(Hit(start + m.start(), start + m.end(), "us.ssn"))
    if "phone" in kinds:
        hits += _phones(run, start, detectors.regions, budget)
    return hits


_PHONE_TOKEN = re.compile(r"\+?\(?[0-9]+\)?")
_GROUPS = re.compile(r"[0-9]+")
MOST_TOKENS = 6  # a phone number is written in at most this many groups


def _phones(run: str, start: int, regions: Iterable[str], budget: Budget) -> list[Hit]:
    """Valid numbers in any region's plan, tried on the run's groups of digits, the longest
    stretch first. A number written with "+" counts as it is; one in national form only when
    spaced, or grouped as that region writes it ("2024-000123" is an invoice). The groups are
    read as the stretches move on, so a budget spent stops the reading too."""
    tokens = _PHONE_TOKEN.finditer(run)
    window: deque[tuple[int, int, int]] = deque()  # (start, end, digits) of the next groups
    hits: list[Hit] = []
    held = 0  # the digits in the window
    while True:
        while len(window) < MOST_TOKENS and (token := next(tokens, None)) is not None:
            budget.read()
            window.append((token.start(), token.end(), len(token.group().strip("+()"))))
            held += window[-1][2]
        if not window:
            return hits
        found = None
        if held >= MIN_DIGITS:  # else too few digits from here for any stretch
            found = _phone_at(run, start, window, tuple(regions), budget)
        taken = found[1] if found is not None else 1
        for _ in range(taken):
            held -= window.popleft()[2]
        if found is not None:
            hits.append(found[0])


def _phone_at(run: str, start: int, window: deque[tuple[int, int, int]],
              regions: tuple[str, ...], budget: Budget) -> tuple[Hit, int] | None:  # fmt: skip
    """The longest stretch of the window's groups, from its first, that is a valid number,
    and how many groups it takes."""
    sums = list(itertools.accumulate(digits for _, _, digits in window))
    for stop in range(len(window), 0, -1):
        if MIN_DIGITS <= sums[stop - 1] <= 15:
            lo, hi = window[0][0], window[stop - 1][1]
            budget.charge()
            head = _phone(run[lo:hi], regions)
            if head is not None:
                return Hit(start + lo, start + hi, "phone", head), stop
    return None


_VALID_SHAPES: dict[tuple[str, tuple[str, ...]], int] = {}


@functools.lru_cache(maxsize=4096)
def _phone(raw: str, regions: tuple[str, ...]) -> int | None:
    """How much of `raw` stays in clear when it is a valid phone number, else None.

    Parsing is the slow part of a scan, and numbering plans are ranges of leading digits: a
    number that differs from one found valid only in its last four digits is taken as valid
    without parsing it again (erring, if ever, towards hiding)."""
    shape = (_without_last_digits(raw), regions)
    head = _VALID_SHAPES.get(shape)
    if head is None:
        head = _parse_phone(raw, regions)
        if head is not None:
            if len(_VALID_SHAPES) >= 4096:
                _VALID_SHAPES.clear()
            _VALID_SHAPES[shape] = head
    return head


def _without_last_digits(raw: str, count: int = 4) -> str:
    """raw with its last `count` digits as "#": "+31 6 1234 ####"."""
    chars = list(raw)
    for index in range(len(chars) - 1, -1, -1):
        if count and "0" <= chars[index] <= "9":
            chars[index] = "#"
            count -= 1
    return "".join(chars)


def _parse_phone(raw: str, regions: tuple[str, ...]) -> int | None:
    if _DATE.search(raw):
        return None  # "2024-01-15 10" reads as a Washington number; dates are not phones
    international = raw.startswith("+")
    for region in (None,) if international else _regions_for(raw, regions):
        try:
            number = phonenumbers.parse(raw, region)
        except phonenumbers.NumberParseException:
            continue
        if not phonenumbers.is_valid_number(number):
            continue
        if international or " " in raw or "(" in raw or _grouped_as_written(raw, number):
            return _head(raw, len(str(number.country_code)))
    return None


def _regions_for(raw: str, regions: tuple[str, ...]) -> tuple[str, ...]:
    """A national number with a leading 0 is from a region that dials 0 first (most of
    Europe), one without from a region that doesn't (the US and Canada)."""
    trunk = raw.lstrip("(").startswith("0")
    return tuple(r for r in regions if _dials_zero(r) == trunk) or regions


@functools.lru_cache(maxsize=256)
def _dials_zero(region: str) -> bool:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    return metadata is not None and metadata.national_prefix == "0"


def _grouped_as_written(raw: str, number: phonenumbers.PhoneNumber) -> bool:
    shown = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    written = _GROUPS.findall(raw)
    return len(written) == 1 or written == _GROUPS.findall(shown)


def _head(raw: str, code_digits: int) -> int:
    """How much of an international number stays: "+31 6" of "+31 6 1234 5678" (the country
    code and one digit more); nothing of a national one."""
    if not raw.startswith("+"):
        return 0
    seen = 0
    for index, char in enumerate(raw):
        seen += char.isdigit()
        if seen == code_digits + 1:
            return index + 1
    return 0


def _national_ids(text: str, kinds: frozenset[str], start: int, end: int,
                  budget: Budget) -> list[Hit]:  # fmt: skip
    """National ids python-stdnum validates around one run of digits (a letter may stand at
    either end): each token, and each run of its spaced parts."""
    wanted = [k for k in NATIONAL_IDS if k in kinds and k != "us.ssn"]
    hits = []
    for m in _ID.finditer(text, max(0, start - 1), end + 1) if wanted else ():
        if _digits(m.group()) < MIN_DIGITS:
            continue
        for lo, hi in _pieces(m.group(), m.start()):
            piece = text[lo:hi]
            if _digits(piece) < MIN_DIGITS or len(piece) > LONGEST_ID:
                continue
            budget.charge()  # one candidate, tried by each national id turned on
            kind = next((k for k in wanted if _valid(k, piece)), None)
            if kind is not None:
                hits.append(Hit(lo, hi, kind))
    return hits


def _pieces(token: str, offset: int, most: int = 8) -> list[tuple[int, int]]:
    """The token and every run of its space-separated parts (longest first), as spans."""
    parts, at = [], 0
    for part in token.split(" ")[:most]:
        parts.append((offset + at, offset + at + len(part)))
        at += len(part) + 1
    return [(parts[i][0], parts[j][1]) for size in range(len(parts), 0, -1)
            for i in range(len(parts) - size + 1) for j in (i + size - 1,)]  # fmt: skip


def _valid(kind: str, piece: str) -> bool:
    try:
        return bool(_module(kind).is_valid(piece))
    except Exception:  # a validator that trips over odd input has found nothing
        return False


def _ibans(text: str, budget: Budget) -> list[Hit]:
    hits = []
    for m in _IBAN.finditer(text):
        budget.read()
        # The prefixes of groups an IBAN's 15 to 34 characters could fill, longest first: a
        # match of a million groups costs no more than one of six.
        ends, size, at = [], 0, m.start()
        for group in _IBAN_GROUP.finditer(text, m.start(), m.end()):
            size += len(group.group())
            if size > 34:
                break
            at = group.end()
            if size >= 15:
                ends.append(at)
        for stop in reversed(ends):
            budget.charge()
            if stdnum_iban.is_valid(text[m.start() : stop]):
                hits.append(Hit(m.start(), stop, "iban", 2))
                break
    return hits


_IBAN_GROUP = re.compile(r"[A-Za-z0-9]++")


def _ips(text: str, pattern: re.Pattern[str], version: int, budget: Budget) -> list[Hit]:
    hits = []
    for m in pattern.finditer(text):
        budget.read()
        run = m.group().rstrip(".")
        if version == 4 and run.count(".") != 3:
            continue  # fewer dots is no address, more is a version or an outline number
        if version == 6 and not (_ipv6_shape(run.split(".")[0]) and run.strip(":")):
            continue  # "::" alone is an address too, but in text it is punctuation
        for size in dict.fromkeys((len(run), len(run.split(".")[0]))):
            if size > LONGEST_ADDRESS:
                continue  # no address is written longer
            budget.charge()
            try:
                ipaddress.ip_address(run[:size])
            except ValueError:
                continue
            hits.append(Hit(m.start(), m.start() + size, f"ipv{version}"))
            break
    return hits
