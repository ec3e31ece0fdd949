"""The compiled parts: DataRow masking (bastion/masking/_fastrows.c) and the relays' message
splitter (bastion/pgwire/_fastscan.c); the rest is in pyproject.toml."""

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
    ]
)
