"""`pingan connectors import DIR` on the real Kafka: a folder mixing a simulator folder, loose native
pushes and an export is published through the receivers' translate path; the summary per source
matches what lands on the raw topics and the dead-letter topic."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.processes import isolated_settings, settings_env, simulate_folder
from streams.ops.dlq import read_dead_letters
from streams.ops.provision import provision_topics
from streams.ops.replay import end_offsets
from streams.settings import Settings
from streams.worker.stages import RAW_SOURCES
from tests.harness.leaks import delete_namespace

pytestmark = [pytest.mark.integration]

FIX = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture()
def ns(stack: Settings, tmp_path: Path) -> Iterator[Settings]:
    settings = isolated_settings(stack, run_dir=tmp_path / "run")
    provision_topics(settings)
    try:
        yield settings
    finally:
        delete_namespace(settings)


def test_import_a_mixed_folder(ns: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "county"
    simulate_folder(folder / "sim", seed=3, scale=0.05)
    export = folder / "export" / "july"
    export.mkdir(parents=True)
    for name in ("mediation/cases_utf8.csv", "grid/report_gcj02.json", "grid/malformed.json",
                 "door/isapi_access_card.xml", "alarm110/jjd_export_utf8.csv"):
        shutil.copy(FIX / name, export / Path(name).name)
    (export / "notes.dat").write_bytes(b"hello")
    env = {**settings_env(ns), "COLUMNS": "160"}
    run = subprocess.run([sys.executable, "-m", "streams.cli", "connectors", "import", str(folder)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    rows = {m.group(1): tuple(int(x) for x in m.groups()[1:])
            for m in re.finditer(r"│ (\w+)\s+│\s+(\d+) │\s+(\d+) │\s+(\d+) │", run.stdout)}
    assert set(rows) >= {"alarm110", "door", "gb28181", "grid", "isapi", "mediation", "all"}, run.stdout
    assert "skipped export/july/notes.dat" in run.stdout.replace("\n", "")
    accepted, dead = rows["all"][1], rows["all"][2]
    assert rows["grid"][2] >= 1 and rows["door"][2] >= 1  # malformed JSON; a door without a registered device
    on_topics = sum(end_offsets(ns, [ns.topic(t) for t in RAW_SOURCES]).values())
    assert on_topics == accepted
    letters = read_dead_letters(ns, stage="translate")
    assert len(letters) == dead
    reasons = " ".join(str(x.record["reason"]) for x in letters)
    assert "unknown device" in reasons or "no device identifier" in reasons
