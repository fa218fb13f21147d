"""Schema compatibility gate, checked with the reference ``avro`` package.

Contract: with ``mode="BACKWARD"`` (the gate), every schema of the *last* release snapshot
(``released/v<N>/``) must be readable by the current schema of the same name: current = reader,
released = writer, ``avro.compatibility.ReaderWriterCompatibilityChecker`` says COMPATIBLE.
A type removed since the release fails the gate; a new type passes. ``FORWARD`` swaps the roles
and ``FULL`` requires both. No release yet -> the gate passes with nothing to compare.
``full_for`` names types checked FULL whatever ``mode`` says; ``gate()`` is the release gate:
BACKWARD for every type, FULL (old consumers keep reading) for the value schemas of the downstream
topics (``schemas.catalogue.DOWNSTREAM_TOPICS``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from schemas.catalogue import DOWNSTREAM_TOPICS, topic
from schemas.loader import RELEASED_DIR, SCHEMA_DIR, expand, load_dir, released_versions

Mode = Literal["BACKWARD", "FORWARD", "FULL"]


@dataclass(frozen=True, slots=True)
class Finding:
    """The result for one named type."""

    name: str
    compatible: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class CompatReport:
    """All findings of one gate run against ``baseline`` (a release version, or None)."""

    baseline: str | None
    mode: str
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """True when every finding is compatible."""
        return all(f.compatible for f in self.findings)

    def failures(self) -> tuple[Finding, ...]:
        """The incompatible findings."""
        return tuple(f for f in self.findings if not f.compatible)

    def render(self) -> str:
        """Human-readable multi-line summary."""
        if self.baseline is None:
            return "no released schemas yet: nothing to compare"
        lines = [f"{self.mode} compatibility of current schemas against {self.baseline}:"]
        for f in self.findings:
            mark = "ok  " if f.compatible else "FAIL"
            lines.append(f"  {mark} {f.name}" + (f" — {f.detail}" if f.detail else ""))
        lines.append("COMPATIBLE" if self.ok else f"INCOMPATIBLE ({len(self.failures())} failing)")
        return "\n".join(lines)


def avro_schemas(schema_dir: Path) -> dict[str, avro.schema.Schema]:
    """Every type in ``schema_dir`` parsed by the ``avro`` package (named types inlined)."""
    raw = load_dir(schema_dir)
    return {name: avro.schema.parse(json.dumps(expand(name, raw))) for name in raw}


def _pair(reader: avro.schema.Schema, writer: avro.schema.Schema) -> str | None:
    """None if ``reader`` can read what ``writer`` wrote, else the reasons."""
    result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return None
    kinds = sorted({i.value for i in result.incompatibilities})
    msgs = sorted(result.messages)
    locs = sorted(result.locations)
    return f"{', '.join(kinds)}: {'; '.join(msgs)} at {', '.join(locs)}"


def downstream_schemas() -> tuple[str, ...]:
    """Full names of the value schemas of the downstream topics."""
    return tuple(sorted({topic(t).value_schema for t in DOWNSTREAM_TOPICS}))


def gate(schema_dir: Path = SCHEMA_DIR, released_dir: Path = RELEASED_DIR) -> CompatReport:
    """The release gate: BACKWARD everywhere, FULL for downstream value schemas."""
    return check(schema_dir, released_dir, "BACKWARD", full_for=downstream_schemas())


def check(
    schema_dir: Path = SCHEMA_DIR, released_dir: Path = RELEASED_DIR, mode: Mode = "BACKWARD",
    *, full_for: Iterable[str] = (),
) -> CompatReport:
    """Compare the current schemas with the last release snapshot."""
    full = frozenset(full_for)
    if mode not in ("BACKWARD", "FORWARD", "FULL"):
        raise ValueError(f"unknown mode {mode!r}")
    versions = released_versions(released_dir)
    if not versions:
        return CompatReport(None, mode, ())
    baseline, base_path = versions[-1]
    current = avro_schemas(schema_dir)
    released = avro_schemas(base_path)
    findings: list[Finding] = []
    for name in sorted(set(current) | set(released)):
        if name not in released:
            findings.append(Finding(name, True, f"new since {baseline}"))
            continue
        if name not in current:
            findings.append(Finding(name, False, f"removed since {baseline}"))
            continue
        problems = []
        eff = "FULL" if name in full else mode
        if eff in ("BACKWARD", "FULL"):
            why = _pair(current[name], released[name])
            if why:
                problems.append(f"current cannot read {baseline}: {why}")
        if eff in ("FORWARD", "FULL"):
            why = _pair(released[name], current[name])
            if why:
                problems.append(f"{baseline} cannot read current: {why}")
        findings.append(Finding(name, not problems, " | ".join(problems)))
    label = mode if not full else f"{mode} (FULL for {', '.join(sorted(full))})"
    return CompatReport(baseline, label, tuple(findings))
