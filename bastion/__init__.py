"""bastion: a production-access audit proxy for SSH and PostgreSQL."""

import warnings

__version__ = "0.1.0"

# cryptography 51 deprecates DSA, and asyncssh 2.24 names the DSA classes when it is imported:
# the warning says nothing an operator can act on, so it stays off bastion's stderr.
warnings.filterwarnings("ignore", message="DSA is deprecated", module=r"asyncssh\.")
