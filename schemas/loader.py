"""Reading the ``.avsc`` files: one Avro named type per file, referenced across files by full name.

Contract:
- ``load_dir(path)`` maps full name (``pingan.Event``, ``pingan.raw.Party``) to the file's JSON.
  The file name is the type's short name (``Event.avsc``).
- ``expand(name, schemas)`` returns a self-contained schema JSON for one type: every named type it
  references is inlined where it first appears (as Avro's Parsing Canonical Form does) and referred
  to by full name afterwards. Both fastavro and the ``avro`` package parse it standalone.
- ``released_versions(dir)`` lists ``schemas/released/<version>/`` snapshots oldest first
  (``v1 < v2 < v10``).
- Nothing here caches or mutates module state; callers (``SchemaStore``) cache.
"""
from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SCHEMA_DIR: Path = Path(__file__).resolve().parent
RELEASED_DIR: Path = SCHEMA_DIR / "released"

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = frozenset({"record", "enum", "fixed", "error"})


class SchemaLoadError(ValueError):
    """A schema directory is malformed (bad JSON, unknown reference, name/file mismatch)."""


def full_name(schema: Mapping[str, Any], enclosing_ns: str | None = None) -> str:
    """Full name of a named schema (``namespace.name``), resolving like the Avro spec."""
    name = str(schema["name"])
    if "." in name:
        return name
    ns = schema.get("namespace", enclosing_ns)
    return f"{ns}.{name}" if ns else name


def short_name(name: str) -> str:
    """``pingan.raw.Party`` -> ``Party``."""
    return name.rsplit(".", 1)[-1]


def _namespace_of(fullname: str) -> str | None:
    return fullname.rsplit(".", 1)[0] if "." in fullname else None


def load_dir(path: Path) -> dict[str, dict[str, Any]]:
    """Read every ``*.avsc`` in ``path`` (not recursive) into ``{full name: schema JSON}``."""
    out: dict[str, dict[str, Any]] = {}
    for file in sorted(Path(path).glob("*.avsc")):
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise SchemaLoadError(f"{file}: invalid JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("type") not in _NAMED:
            raise SchemaLoadError(f"{file}: must hold exactly one named type (record/enum/fixed)")
        name = full_name(data)
        if short_name(name) != file.stem:
            raise SchemaLoadError(f"{file}: file name must be the type's short name {short_name(name)!r}")
        if name in out:
            raise SchemaLoadError(f"{file}: duplicate type {name}")
        out[name] = data
    if not out:
        raise SchemaLoadError(f"{path}: no .avsc files")
    return out


def expand(name: str, schemas: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Self-contained JSON for ``name``: referenced named types inlined at first use."""
    if name not in schemas:
        raise SchemaLoadError(f"unknown schema {name!r}")
    defined: set[str] = set()

    def resolve(ref: str, ns: str | None) -> str:
        if ref in schemas or "." in ref:
            return ref
        return f"{ns}.{ref}" if ns else ref

    def walk(node: Any, ns: str | None) -> Any:
        if isinstance(node, str):
            if node in PRIMITIVES:
                return node
            ref = resolve(node, ns)
            if ref in defined:
                return ref
            if ref not in schemas:
                raise SchemaLoadError(f"unknown type reference {node!r} (in namespace {ns!r})")
            return define(ref)
        if isinstance(node, list):
            return [walk(branch, ns) for branch in node]
        if isinstance(node, dict):
            typ = node.get("type")
            if isinstance(typ, str) and typ in _NAMED:
                fn = full_name(node, ns)
                if fn in defined:
                    raise SchemaLoadError(f"type {fn} defined twice")
                defined.add(fn)
                own_ns = _namespace_of(fn)
                out = dict(node)
                out["name"] = short_name(fn)
                if own_ns:
                    out["namespace"] = own_ns
                if typ in ("record", "error"):
                    out["fields"] = [
                        {**fld, "type": walk(fld["type"], own_ns)} for fld in node.get("fields", [])
                    ]
                return out
            if typ == "array":
                return {**node, "items": walk(node["items"], ns)}
            if typ == "map":
                return {**node, "values": walk(node["values"], ns)}
            if isinstance(typ, (list, dict)) or (isinstance(typ, str) and typ not in PRIMITIVES):
                return {**node, "type": walk(typ, ns)}
            return dict(node)
        raise SchemaLoadError(f"unexpected schema node {node!r}")

    def define(ref: str) -> dict[str, Any]:
        return walk(copy.deepcopy(dict(schemas[ref])), _namespace_of(ref))

    return define(name)


def references(name: str, schemas: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Full names of the named types ``name`` uses (transitively, excluding itself), in first-use order."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("type"), str) and node["type"] in _NAMED:
                fn = full_name(node)
                if fn != name and fn not in found:
                    found.append(fn)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(expand(name, schemas))
    return found


_VERSION_RE = re.compile(r"^v(\d+)$")


def released_versions(released_dir: Path = RELEASED_DIR) -> list[tuple[str, Path]]:
    """``[(version, path)]`` of release snapshots named ``v<N>``, oldest first."""
    if not released_dir.is_dir():
        return []
    found = []
    for child in released_dir.iterdir():
        match = _VERSION_RE.match(child.name)
        if child.is_dir() and match:
            found.append((int(match.group(1)), child.name, child))
    return [(name, path) for _, name, path in sorted(found)]


def load_order(schemas: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Full names ordered so that every type comes after the types it references (then a–z): the
    order in which one ``Schema.Parser`` (Java) or ``avro.schema.parse`` of each file with the names
    seen so far accepts the files. Written as ``load-order.txt`` beside each release snapshot."""
    deps = {name: set(references(name, schemas)) for name in schemas}
    done: list[str] = []
    while len(done) < len(deps):
        ready = sorted(n for n, d in deps.items() if n not in done and d <= set(done))
        if not ready:  # a reference cycle cannot be expressed in files referring by name; guard anyway
            raise SchemaLoadError(f"reference cycle among {sorted(set(deps) - set(done))}")
        done.extend(ready)
    return done
