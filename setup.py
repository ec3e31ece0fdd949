"""The one compiled part: DataRow masking (bastion/masking/_fastrows.c); the rest is in
pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "bastion.masking._fastrows",
            ["bastion/masking/_fastrows.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra"],
        )
    ]
)
