"""Content detectors, the last net over text not proven clean: emails, Luhn-valid card numbers,
US SSN shapes and IBANs with a valid check (pure). A net, never a control: any encoding of a
value defeats it, which is why sensitive columns are found by lineage first."""

from __future__ import annotations

import re

EMAIL = re.compile(rb"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63})+")
CARD = re.compile(rb"(?<![0-9])[0-9](?:[ \-]?[0-9]){12,18}(?![0-9])")
SSN = re.compile(
    rb"(?<![0-9])(?!000|666|9[0-9]{2})[0-9]{3}-(?!00)[0-9]{2}-(?!0000)[0-9]{4}(?![0-9])"
)
IBAN = re.compile(rb"(?<![A-Z0-9])[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}(?![A-Z0-9])")


def luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters to numbers, mod 97 is 1."""
    plain = text.replace(" ", "")
    moved = plain[4:] + plain[:4]
    number = "".join(str(int(c, 36)) for c in moved)
    return 15 <= len(plain) <= 34 and int(number) % 97 == 1


def findings(value: bytes) -> list[str]:
    """The kinds of sensitive content found in one value, each kind once, in a fixed order."""
    found = []
    if b"@" in value and EMAIL.search(value):
        found.append("email")
    for match in CARD.finditer(value):
        digits = re.sub(rb"[ \-]", b"", match.group()).decode()
        if 13 <= len(digits) <= 19 and luhn(digits):
            found.append("card")
            break
    if SSN.search(value):
        found.append("ssn")
    for match in IBAN.finditer(value):
        if iban_valid(match.group().decode()):
            found.append("iban")
            break
    return found
