"""A killed `pingan replay pipeline` ends with one line and resumes with the same command (issue 17).

A small simulated day is published to an isolated namespace (no live worker: the replay worker is
the only one); the replay is killed (SIGTERM) once its worker has committed part of the raw topics,
then the same command resumes it under the same app id and target prefix and finishes (new index,
alias swapped)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from connectors.elasticsearch.admin import IndexNames
from connectors.ingest.files import iter_deliveries
from connectors.ingest.publish import publish_deliveries
from infra.processes import free_port, isolated_settings, settings_env, simulate_folder
from streams.ops.provision import provision_elasticsearch, provision_topics
from streams.ops.replay import group_offsets, pipeline_state_path
from streams.settings import Settings
from tests.harness.leaks import delete_namespace

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture()
def ns(stack: Settings, tmp_path: Path) -> Iterator[Settings]:
    settings = isolated_settings(stack, registry=None, run_dir=tmp_path / "run", worker_web_port=free_port())
    provision_topics(settings)
    provision_elasticsearch(settings)
    try:
        yield settings
    finally:
        delete_namespace(settings)  # replay app ids <app_id>-replay-… and their topics included


def test_a_killed_pipeline_replay_resumes_with_the_same_command(ns: Settings, tmp_path: Path) -> None:
    sim = simulate_folder(tmp_path / "sim", seed=5, scale=0.05)
    settings = Settings(**{**ns.model_dump(), "registry_path": sim / "registry.csv"})
    report = publish_deliveries(settings, iter_deliveries(sim))
    assert report.records > 100
    env = settings_env(settings)
    cmd = [sys.executable, "-m", "streams.cli", "replay", "pipeline", "--from-beginning", "--timeout-s", "240"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    state_path = pipeline_state_path(settings)
    try:
        deadline = time.monotonic() + 120
        app_id = None
        while time.monotonic() < deadline:
            if state_path.exists():
                app_id = json.loads(state_path.read_text())["app_id"]
                if group_offsets(settings, app_id):
                    break
            if proc.poll() is not None:
                raise AssertionError(f"the replay ended before it was killed: {proc.communicate()}")
            time.sleep(0.3)
        else:
            raise AssertionError("the replay worker committed nothing")
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, out + err
    assert "run the same command again to resume" in err and "Traceback" not in err
    state = json.loads(state_path.read_text())
    assert state["app_id"] == app_id and not state["done"]
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"resuming the pipeline replay {app_id}" in again.stderr
    assert f"app id {app_id}" in again.stdout and "alias swapped" in again.stdout
    assert json.loads(state_path.read_text())["done"]
    es = Elasticsearch(settings.es_url)
    try:
        alias = IndexNames(settings.es_index_prefix).alias
        es.indices.refresh(index=alias)
        assert es.count(index=alias)["count"] > 10
    finally:
        es.close()
