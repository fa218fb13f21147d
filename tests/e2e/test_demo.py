"""The README's main job: `pingan demo run` brings up workers, receivers, a feed and the page."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from streams.settings import Settings
from infra.processes import free_port, http_json, isolated_settings, settings_env, wait_for
from tests.harness.leaks import delete_namespace

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _get(url: str, token: str | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    except OSError:
        return 0, {}


def test_demo_serves_the_page_with_scoped_credentials(stack: Settings, tmp_path: Path) -> None:
    settings = isolated_settings(stack, run_dir=tmp_path / "run", search_port=18080, receiver_port=18090,
                                 worker_web_port=16166)
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "demo", "run", "--duration", "420",
                             "--rate", "10"], env=settings_env(settings), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        creds_path = settings.run_dir / "demo" / "credentials.json"
        wait_for(creds_path.exists, 120, 1, "demo credentials")
        tokens = {v["admin_code"]: k for k, v in json.loads(creds_path.read_text())["tokens"].items()}
        base = f"http://127.0.0.1:{settings.search_port}"
        wait_for(lambda: _get(base + "/healthz")[0] == 200, 60, 1, "search server")
        assert _get(base + "/api/incidents")[0] == 401  # no credential, no data

        def total(code: str) -> int:
            status, body = _get(base + "/api/incidents?size=1", tokens[code])
            return int(body.get("total", 0)) if status == 200 else 0

        county = wait_for(lambda: total("513221") > 100 and total("513221"), 300, 3, "county incidents")
        town, village = total("513221107"), total("513221107201")
        assert 0 < village <= town < county
        # the continuous feed reaches the receivers and is accepted
        def accepted() -> float:
            try:
                metrics = urllib.request.urlopen(f"http://127.0.0.1:{settings.receiver_port}/metrics", timeout=5).read()
            except OSError:
                return 0.0
            return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.decode().splitlines()
                       if line.startswith("pingan_receiver_accepted_total{"))

        wait_for(lambda: accepted() > 0, 60, 2, "receiver accepted deliveries")
        # the demo made its own ingest credentials (the feed signs with them); an unsigned push is refused
        demo_creds = settings.run_dir / "demo" / "ingest-credentials.toml"
        assert demo_creds.stat().st_mode & 0o077 == 0
        unsigned = urllib.request.Request(f"http://127.0.0.1:{settings.receiver_port}/grid/reports", data=b"{}",
                                          method="POST", headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(unsigned, timeout=5)  # noqa: S310 - loopback
        assert refused.value.code == 401
        html = urllib.request.urlopen(base + "/", timeout=5).read().decode()
        assert "平安总线" in html
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
        delete_namespace(settings)
    assert "令牌" in out and str(settings.search_port) in out


def test_demo_restarts_a_sigkilled_worker_and_keeps_serving(stack: Settings, tmp_path: Path) -> None:
    """Issue 14: the supervisor restarts a dead worker (SIGKILL) with backoff; the demo goes on."""
    settings = isolated_settings(stack, run_dir=tmp_path / "run", search_port=free_port(),
                                 receiver_port=free_port(), worker_web_port=free_port())
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "demo", "run", "--duration", "240",
                             "--no-feed"], env=settings_env(settings), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    status_path = settings.run_dir / "demo" / "supervisor.json"
    worker_metrics = f"http://127.0.0.1:{settings.worker_web_port}/pingan/metrics"
    try:
        wait_for(lambda: http_json(worker_metrics) is not None, 150, 1, "the demo's worker")
        first = json.loads(status_path.read_text())["worker"]
        assert first["restarts"] == 0 and first["state"] == "running"
        os.kill(first["pid"], signal.SIGKILL)
        status = wait_for(lambda: (s := json.loads(status_path.read_text())["worker"])["restarts"] == 1
                          and s["state"] == "running" and s, 30, 0.5, "worker restarted")
        assert status["pid"] != first["pid"]
        wait_for(lambda: http_json(worker_metrics) is not None, 90, 1, "the restarted worker's web server")
        assert proc.poll() is None, "the demo must go on"
        base = f"http://127.0.0.1:{settings.search_port}"
        assert _get(base + "/healthz")[0] == 200
        tokens = {v["admin_code"]: k for k, v in
                  json.loads((settings.run_dir / "demo" / "credentials.json").read_text())["tokens"].items()}
        assert _get(base + "/api/incidents?size=1", tokens["513221"])[0] == 200
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
        delete_namespace(settings)
    assert "worker (pid" in out and "exited with code -9" in out and "restart #1" in out, out[-3000:]
