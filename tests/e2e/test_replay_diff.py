"""`pingan replay diff --rules DIR` and `pingan replay promote` on the real stack (issue 17).

A live worker builds incidents from part of a simulated day; a rule change (the village handling
deadline 72 h → 2 h) is previewed in a shadow prefix (incidents re-tiered) —
printed and written as JSON, nothing swapped; then a correlation change (every pair's min_score
→ 0.99) is previewed (incidents split, links gone) and promoted (new index, alias swapped)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from connectors.elasticsearch.admin import IndexNames
from connectors.ingest.files import iter_deliveries
from connectors.ingest.publish import publish_deliveries
from infra.processes import WorkerProcess, free_port, isolated_settings, settings_env, wait_for
from streams.domain.ruleset import BUILT_IN, load_ruleset
from streams.ops.provision import provision_elasticsearch, provision_topics
from streams.ops.replay import end_offsets, group_offsets
from streams.settings import Settings
from streams.worker.stages import RAW_SOURCES
from tests.harness.leaks import delete_namespace

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture()
def live(stack: Settings, sim_day: Path, tmp_path: Path) -> Iterator[Settings]:
    sim = sim_day
    settings = isolated_settings(stack, registry=sim / "registry.csv", run_dir=tmp_path / "run",
                                 worker_web_port=free_port(), clock_ticks=False)
    provision_topics(settings)
    provision_elasticsearch(settings)
    worker = None
    try:
        # the first 650 deliveries of the day, as tests/e2e/test_replay_e2e.py (before the flood burst)
        publish_deliveries(settings, islice(iter_deliveries(sim), 650))
        worker = WorkerProcess(settings, 0, tmp_path / "logs").start()
        topics = [settings.topic(n) for n in (*RAW_SOURCES, "internal.events-by-county.v1", "incidents.v1")]

        def caught_up() -> bool:
            committed = group_offsets(settings, settings.app_id)
            return bool(committed) and all(committed.get(k, 0) >= v for k, v in end_offsets(settings, topics).items())

        wait_for(caught_up, 240, 1.0, "the live worker to consume every topic")
        worker.stop()
        yield settings
    finally:
        if worker is not None:
            worker.stop()
        delete_namespace(settings)


def test_a_rule_change_is_previewed_then_promoted(live: Settings, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    tier = BUILT_IN["tier_rules.toml"].read_text(encoding="utf-8")
    assert "village = 72\n" in tier
    (rules / "tier_rules.toml").write_text(tier.replace("village = 72\n", "village = 2\n"), encoding="utf-8")
    version = load_ruleset(rules).version
    env = {**settings_env(live), "COLUMNS": "200"}
    es = Elasticsearch(live.es_url)
    alias = IndexNames(live.es_index_prefix).alias
    try:
        before = sorted(es.indices.get_alias(name=alias))
        out_json = tmp_path / "diff.json"
        run = subprocess.run([sys.executable, "-m", "streams.cli", "replay", "diff", "--rules", str(rules),
                              "--since", "7d", "--out", str(out_json)], env=env, capture_output=True, text=True,
                             timeout=400)
        assert run.returncode == 0, run.stdout + run.stderr
        print("\n" + run.stdout)
        counts = re.search(r"split (\d+), merged (\d+), re-tiered (\d+)", run.stdout)
        assert counts and int(counts.group(3)) > 0, run.stdout
        assert "village → town" in run.stdout and version in run.stdout
        doc = json.loads(out_json.read_text(encoding="utf-8"))
        assert doc["counts"]["retiered"] == int(counts.group(3)) and doc["rules_version"]["shadow"] == [version]
        assert sorted(es.indices.get_alias(name=alias)) == before  # a preview swaps nothing
        # a correlation change: much stricter linking (every pair's min_score → 0.99)
        corr_rules = tmp_path / "rules-corr"
        corr_rules.mkdir()
        corr = BUILT_IN["correlation_rules.toml"].read_text(encoding="utf-8")
        strict, n = re.subn(r"(?m)^min_score = [0-9.]+", "min_score = 0.99", corr)
        assert n > 5
        (corr_rules / "correlation_rules.toml").write_text(strict, encoding="utf-8")
        corr_run = subprocess.run([sys.executable, "-m", "streams.cli", "replay", "diff", "--rules", str(corr_rules),
                                   "--since", "7d", "--out", str(tmp_path / "diff-corr.json")], env=env,
                                  capture_output=True, text=True, timeout=400)
        assert corr_run.returncode == 0, corr_run.stdout + corr_run.stderr
        print("\n" + corr_run.stdout)
        corr_doc = json.loads((tmp_path / "diff-corr.json").read_text(encoding="utf-8"))
        assert corr_doc["counts"]["link_reasons"] > 0 and corr_doc["counts"]["split"] > 0, corr_run.stdout
        # promote takes the last preview: the stricter linking
        promoted = subprocess.run([sys.executable, "-m", "streams.cli", "replay", "promote"], env=env,
                                  capture_output=True, text=True, timeout=300)
        assert promoted.returncode == 0, promoted.stdout + promoted.stderr
        corr_version = load_ruleset(corr_rules).version
        assert f"promoted rules {corr_version}" in promoted.stdout
        assert f"PINGAN_RULES_DIR={corr_rules}" in promoted.stdout
        after = sorted(es.indices.get_alias(name=alias))
        assert after != before
        es.indices.refresh(index=alias)
        assert es.count(index=alias)["count"] == corr_doc["shadow_incidents"]
        again = subprocess.run([sys.executable, "-m", "streams.cli", "replay", "promote"], env=env,
                               capture_output=True, text=True, timeout=60)
        assert again.returncode == 1 and "already promoted" in again.stderr and "Traceback" not in again.stderr
    finally:
        es.close()
