"""How the audit trail names a login name that is no user: a keyed digest, never the text.

People type their password into the user-name field. A name that is not an existing user
is chained as `unknown:` and the first hex digits of an HMAC of it, keyed with a key derived
from the secrets key (never stored): the same typo always gives the same name, so bursts of
failed logins and lockout still group by it, yet neither the trail nor a copy of the store
with a dictionary of guesses tells what was typed. Known users keep their name. Pure.
"""

from __future__ import annotations

import hashlib
import hmac

from bastion.audit.chain import KeySource

PURPOSE = "bastion unknown login names v1"
PREFIX = "unknown:"
DIGITS = 12  # 48 bits: distinct names stay apart in a week's trail, and nothing is readable


def unknown_name(box: KeySource, name: str) -> str:
    """The name the audit trail shows for `name`, which is not an existing user."""
    digest = hmac.new(box.hkdf(PURPOSE), name.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return PREFIX + digest.hexdigest()[:DIGITS]
