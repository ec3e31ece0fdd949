"""A target's [targets.NAME.masking] table, checked: rules, styles and the subjects' keys (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import phonenumbers

from bastion.masking.classify import STYLES, Rules, check_pattern
from bastion.masking.detect import DEFAULT, DEFAULT_REGIONS, KINDS, Detectors

KEYS = ("enabled", "sensitive", "clean", "styles", "subject_keys", "detectors", "phone_regions")


class MaskingConfigError(ValueError):
    """One key of a masking table is wrong; the config loader adds the file and target."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class MaskingPolicy:
    """Masking is on unless a target turns it off; the rules add to the built-in names."""

    enabled: bool = True
    rules: Rules = field(default_factory=Rules)
    subject_keys: tuple[str, ...] = ()  # "schema.table.column" or "table.column" per table
    detectors: Detectors = field(default_factory=Detectors)  # over free text nothing declares clean


def _patterns(key: str, raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
        raise MaskingConfigError(key, 'must be a list of column patterns, e.g. ["*.email"]')
    try:
        return tuple(check_pattern(p) for p in raw)
    except ValueError as exc:
        raise MaskingConfigError(key, str(exc)) from None


def _styles(raw: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, Mapping):
        raise MaskingConfigError("styles", 'must be a table, e.g. { "*.email" = "hash" }')
    found = []
    for pattern, style in raw.items():
        if style not in STYLES:
            raise MaskingConfigError(
                "styles", f"{pattern}: {style!r} is not a style; choose {', '.join(STYLES)}"
            )
        try:
            found.append((check_pattern(str(pattern)), str(style)))
        except ValueError as exc:
            raise MaskingConfigError("styles", str(exc)) from None
    return tuple(found)


def _subject_keys(raw: object) -> tuple[str, ...]:
    keys = _patterns("subject_keys", raw)
    for key in keys:
        if "*" in key or "?" in key or key.count(".") not in (1, 2):
            raise MaskingConfigError(
                "subject_keys", f"{key!r}: name one column as table.column or schema.table.column"
            )
    return keys


def _detectors(raw: Mapping[str, object]) -> Detectors:
    kinds = raw.get("detectors", list(DEFAULT))
    regions = raw.get("phone_regions", list(DEFAULT_REGIONS))
    for key, value in (("detectors", kinds), ("phone_regions", regions)):
        if not isinstance(value, list):
            raise MaskingConfigError(key, "must be a list of names")
    try:
        checked = check_kinds(kinds)  # type: ignore[arg-type]
    except ValueError as exc:
        raise MaskingConfigError("detectors", str(exc)) from None
    try:
        return Detectors(checked, check_regions(regions))  # type: ignore[arg-type]
    except ValueError as exc:
        raise MaskingConfigError("phone_regions", str(exc)) from None


def parse_masking(raw: object) -> MaskingPolicy:
    """Check a masking table; raises MaskingConfigError naming the key that is wrong."""
    if not isinstance(raw, Mapping):
        raise MaskingConfigError("", "must be a table")
    for key in raw:
        if key not in KEYS:
            raise MaskingConfigError(str(key), f"unknown key; known: {', '.join(KEYS)}")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise MaskingConfigError("enabled", "must be true or false")
    return MaskingPolicy(
        enabled=enabled,
        rules=Rules(
            sensitive=_patterns("sensitive", raw.get("sensitive", [])),
            clean=_patterns("clean", raw.get("clean", [])),
            styles=_styles(raw.get("styles", {})),
        ),
        subject_keys=_subject_keys(raw.get("subject_keys", [])),
        detectors=_detectors(raw),
    )


def check_kinds(kinds: Iterable[object]) -> tuple[str, ...]:
    """Detector names, checked against KINDS; raises ValueError naming the unknown one."""
    out = []
    for kind in kinds:
        if not isinstance(kind, str) or kind not in KINDS:
            raise ValueError(f"{kind!r} is not a detector; choose from {', '.join(KINDS)}")
        out.append(kind)
    return tuple(out)


def check_regions(regions: Iterable[object]) -> tuple[str, ...]:
    """Two-letter phone regions phonenumbers knows; raises ValueError naming a wrong one."""
    known = phonenumbers.SUPPORTED_REGIONS
    out = []
    for region in regions:
        if not isinstance(region, str) or region.upper() not in known:
            raise ValueError(f"{region!r} is not a region phonenumbers knows (e.g. NL, US)")
        out.append(region.upper())
    return tuple(out)
