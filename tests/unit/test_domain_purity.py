"""streams/domain is pure: no Kafka, Faust, Elasticsearch or aiohttp imports, no import-time work."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

DOMAIN = Path(__file__).resolve().parents[2] / "streams" / "domain"
FORBIDDEN = {"kafka", "aiokafka", "faust", "elasticsearch", "aiohttp", "mode", "confluent_kafka"}


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_domain_folder_exists_and_has_modules() -> None:
    files = sorted(DOMAIN.rglob("*.py"))
    assert len(files) >= 9


def test_no_io_library_imports_in_domain() -> None:
    offenders = {
        str(p.relative_to(DOMAIN)): sorted(_imported_roots(p) & FORBIDDEN)
        for p in DOMAIN.rglob("*.py")
        if _imported_roots(p) & FORBIDDEN
    }
    assert offenders == {}


def test_importing_domain_creates_no_opencc_converter() -> None:
    code = (
        "import importlib, pkgutil, streams.domain as d\n"
        "for m in pkgutil.iter_modules(d.__path__): importlib.import_module('streams.domain.' + m.name)\n"
        "from streams.domain import text\n"
        "assert text._t2s.cache_info().currsize == 0\n"
        "import sys; assert not any(n.split('.')[0] in {'kafka','aiokafka','faust','elasticsearch','aiohttp'} for n in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
