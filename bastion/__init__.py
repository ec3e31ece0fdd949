"""bastion: a production-access audit proxy for SSH and PostgreSQL."""

__version__ = "0.1.0"
