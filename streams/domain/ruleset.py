"""The rules a deployment runs with: correlation and tier rules from its rules folder, built-ins as defaults.

Contract (pure apart from reading the files; unit-tested in tests/unit/test_ruleset.py):
- `load_ruleset(rules_dir)` reads ``<rules_dir>/correlation_rules.toml`` and ``<rules_dir>/tier_rules.toml``
  (``Settings.rules_dir``, ``PINGAN_RULES_DIR``); a file that is absent — or no folder at all — means the
  built-in file of that name (streams/domain/*.toml). A present file replaces the built-in one as a
  whole (its ``[[pair]]`` lists cannot be merged key by key; copy the built-in file and edit it).
- Both are validated at load (`rules.parse_rules`, `tiers.parse_tier_rules`); any problem — unreadable
  file, TOML syntax, a missing key, an unknown kind or tier, a kind pair without a stance — is one
  `RulesError` naming the file and what is wrong. A folder holding other ``*.toml`` files is an
  error too (a misspelt file name would silently fall back to the built-in).
- ``RuleSet.version``: ``"r" + sha256(name + NUL + bytes of each effective file, in name order)[:12]``,
  the same for the same rule content wherever it is deployed; stamped on every link and incident
  the correlate stage produces (``rules_version``).
"""
from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path

from streams.domain.rules import DEFAULT_RULES_PATH, CorrelationRules, parse_rules
from streams.domain.tiers import DEFAULT_TIER_RULES_PATH, TierRules, parse_tier_rules

CORRELATION_FILE = DEFAULT_RULES_PATH.name
TIER_FILE = DEFAULT_TIER_RULES_PATH.name
BUILT_IN = {CORRELATION_FILE: DEFAULT_RULES_PATH, TIER_FILE: DEFAULT_TIER_RULES_PATH}


class RulesError(ValueError):
    """Rules that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class RuleSet:
    """Validated correlation and tier rules, where they came from, and their content version."""

    correlation: CorrelationRules
    tiers: TierRules
    version: str
    files: dict[str, str]  # file name → path read ("built-in: …" for defaults)


def rule_files(rules_dir: Path | None) -> dict[str, Path]:
    """File name → the path in force (the deployment's, else the built-in)."""
    out = dict(BUILT_IN)
    if rules_dir is None:
        return out
    folder = Path(rules_dir)
    if not folder.is_dir():
        raise RulesError(f"rules folder {folder} does not exist (PINGAN_RULES_DIR)")
    unknown = sorted(p.name for p in folder.glob("*.toml") if p.name not in BUILT_IN)
    if unknown:
        raise RulesError(f"{folder}: unknown rule file(s) {', '.join(unknown)}; expected "
                         f"{CORRELATION_FILE} and/or {TIER_FILE}")
    for name in BUILT_IN:
        if (folder / name).is_file():
            out[name] = folder / name
    return out


def rules_version(contents: dict[str, bytes]) -> str:
    """The content version of a set of rule files."""
    h = hashlib.sha256()
    for name in sorted(contents):
        h.update(name.encode() + b"\0" + contents[name] + b"\0")
    return "r" + h.hexdigest()[:12]


def load_ruleset(rules_dir: Path | None = None) -> RuleSet:
    """Read and validate the rules in force for `rules_dir` (see module contract)."""
    paths = rule_files(rules_dir)
    contents: dict[str, bytes] = {}
    docs = {}
    for name, path in paths.items():
        try:
            contents[name] = path.read_bytes()
            docs[name] = tomllib.loads(contents[name].decode("utf-8"))
        except OSError as exc:
            raise RulesError(f"{path}: cannot be read ({exc.strerror or exc})") from None
        except UnicodeDecodeError:
            raise RulesError(f"{path}: not UTF-8 text") from None
        except tomllib.TOMLDecodeError as exc:
            raise RulesError(f"{path}: TOML syntax error: {exc}") from None
    correlation = _parse(paths[CORRELATION_FILE], lambda: parse_rules(docs[CORRELATION_FILE]))
    tiers = _parse(paths[TIER_FILE], lambda: parse_tier_rules(docs[TIER_FILE]))
    files = {n: (str(p) if p != BUILT_IN[n] else f"built-in: {p}") for n, p in paths.items()}
    return RuleSet(correlation, tiers, rules_version(contents), files)


def _parse(path: Path, parse):  # noqa: ANN001, ANN202 - a thunk returning the typed rules
    try:
        return parse()
    except KeyError as exc:
        raise RulesError(f"{path}: missing key {exc}") from None
    except (ValueError, TypeError) as exc:
        raise RulesError(f"{path}: {exc} (compare with the built-in file of the same name)") from None
