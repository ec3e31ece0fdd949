"""The compiled parts: DataRow masking (bastion/masking/_fastrows.c), the relays' message
splitter (bastion/pgwire/_fastscan.c), the audit chain's walk (bastion/audit/_fastchain.c) and
the query log's statement digests (bastion/audit/_fastqlog.c), on SQLite's and OpenSSL's C
libraries; the rest is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "bastion.masking._fastrows",
            ["bastion/masking/_fastrows.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra"],
        ),
        Extension(
            "bastion.pgwire._fastscan",
            ["bastion/pgwire/_fastscan.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra"],
        ),
        Extension(
            "bastion.audit._fastchain",
            ["bastion/audit/_fastchain.c"],
            libraries=["sqlite3", "crypto"],
            extra_compile_args=["-O2", "-Wall", "-Wextra"],
        ),
        Extension(
            "bastion.audit._fastqlog",
            [
                "bastion/audit/_fastqlog.c",
                "bastion/audit/_fastqlog_record.c",
                "bastion/audit/_fastqlog_sqlite.c",
                "bastion/audit/_fastqlog_copy.c",
            ],
            depends=["bastion/audit/_fastqlog.h"],
            libraries=["sqlite3", "crypto"],
            extra_compile_args=["-O2", "-Wall", "-Wextra"],
        ),
    ]
)
