"""[export.NAME] sinks in bastion.toml: read, and refused with one line naming the key."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest

from bastion.config import load_config
from bastion.config_export import BY_KIND, COMMON
from bastion.config_text import default_config_text
from bastion.errors import ConfigError

GOOD = """\
[export.siem]
kind = "syslog"
address = "127.0.0.1:6514"
tls_ca = "siem-ca.pem"
min_severity = "notice"
kinds = ["session.*", "grant.*"]

[export.trail]
kind = "file"
path = "export/audit.jsonl"
max_bytes = 65536
keep = 3

[export.hook]
kind = "webhook"
url = "https://hooks.example.com/bastion?token=s3cret"
"""


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "bastion.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def test_sinks_are_read_with_their_filters(tmp_path: Path) -> None:
    config = load(tmp_path, GOOD)
    siem, trail, hook = config.export  # type: ignore[attr-defined]
    assert (siem.name, siem.kind, siem.host_port) == ("siem", "syslog", ("127.0.0.1", 6514))
    assert siem.tls_ca == tmp_path / "siem-ca.pem"
    assert (siem.min_severity, siem.kinds, siem.replay) == (
        "notice",
        ("session.*", "grant.*"),
        1000,
    )
    assert (trail.path, trail.max_bytes, trail.keep) == (tmp_path / "export/audit.jsonl", 65536, 3)
    assert hook.kinds == ("*",) and hook.retry_after == timedelta(seconds=1)


def test_no_export_table_means_no_sink(tmp_path: Path) -> None:
    assert load(tmp_path, "").export == ()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('[export.siem]\naddress = "h:1"\n', "export.siem.kind", "must be one of"),
        ('[export.siem]\nkind = "kafka"\n', "export.siem.kind", "must be one of"),
        (
            '[export.siem]\nkind = "syslog"\ntls_ca = "ca.pem"\n',
            "export.siem.address",
            "is required",
        ),
        ('[export.siem]\nkind = "syslog"\naddress = "h:1"\n', "export.siem.tls_ca", "is required"),
        (
            '[export.siem]\nkind = "syslog"\naddress = "nohost"\ntls_ca = "c"\n',
            "export.siem.address",
            "host:port",
        ),
        (
            '[export.t]\nkind = "file"\npath = "a"\nurl = "http://x"\n',
            "export.t.url",
            "unknown key for a file sink",
        ),
        (
            '[export.t]\nkind = "file"\npath = "a"\nmin_severity = "loud"\n',
            "export.t.min_severity",
            "must be one of",
        ),
        (
            '[export.t]\nkind = "file"\npath = "a"\nkinds = ["sess*"]\n',
            "export.t.kinds",
            "is not a kind",
        ),
        ('[export.t]\nkind = "file"\npath = "a"\nkinds = []\n', "export.t.kinds", "non-empty"),
        ('[export.t]\nkind = "file"\npath = "a"\nkeep = 0\n', "export.t.keep", "between"),
        (
            '[export.t]\nkind = "file"\npath = "a"\nretry_after = "soon"\n',
            "export.t.retry_after",
            "duration",
        ),
        ('[export.h]\nkind = "webhook"\nurl = "ftp://x"\n', "export.h.url", "http"),
        ('[export.Bad]\nkind = "file"\npath = "a"\n', "export.Bad", "invalid sink name"),
        ("export = 3\n", "export", "table of sinks"),
    ],
)
def test_bad_export_config_is_refused_with_one_line_naming_the_key(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert caught.value.key == key and problem in caught.value.problem
    assert "\n" not in str(caught.value)


def test_a_webhook_url_with_a_token_is_never_in_an_error(tmp_path: Path) -> None:
    text = '[export.h]\nkind = "webhook"\nurl = "https://x/?token=s3cret"\nbatch = 0\n'
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert "s3cret" not in str(caught.value)


def test_the_example_documents_every_export_key_and_its_sinks_load(tmp_path: Path) -> None:
    text = default_config_text()
    block = text[text.index("# --- SIEM export") : text.index("# --- Weekly access review")]
    for key in {*COMMON, *(k for keys in BY_KIND.values() for k in keys)}:
        assert re.search(rf"^#\s+(# )?{key}\b", block, re.M), key
    start = block.index("# [export.siem]")
    uncommented = "\n".join(line.removeprefix("# ") for line in block[start:].splitlines())
    config = load(tmp_path, uncommented)
    assert [s.name for s in config.export] == ["siem", "trail", "hook"]  # type: ignore[attr-defined]
    assert load(tmp_path, text).export == ()  # type: ignore[attr-defined]


def test_a_sinks_selection_names_where_it_goes_but_never_a_token(tmp_path: Path) -> None:
    """Pointing a sink at a receiver of one's own (that forwards a filtered feed on) is a way
    to hide events: the destination is part of what a start chains when it changes."""
    siem, trail, hook = load(tmp_path, GOOD).export  # type: ignore[attr-defined]
    expected = {"kinds": ["session.*", "grant.*"], "min_severity": "notice", "to": "127.0.0.1:6514"}
    assert json.loads(siem.selection) == expected
    assert json.loads(trail.selection)["to"] == str(tmp_path / "export/audit.jsonl")
    assert json.loads(hook.selection)["to"] == "https://hooks.example.com"
    assert "s3cret" not in hook.selection and "bastion?" not in hook.selection
