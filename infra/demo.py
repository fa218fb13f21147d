"""`pingan demo run`: the whole Wenchuan demo on the local stack.

Starts (as child processes) a stream worker, the connector receivers (HTTP + GB/T 28181 SIP +
the 110 poller on a local SQLite alarm desk), and the search server with a county, a town and a
village credential; imports one simulated county day so the page has data at once; then keeps a
continuous simulated feed flowing through the receivers. A child that dies is restarted with
capped exponential backoff (infra/supervisor.py, policy in infra/restart_policy.py; every exit is
printed, state in ``demo/supervisor.json``); a crash loop stops the demo with exit code 1 and the
reason. Ctrl-C (or ``--duration``) stops everything it started. The stack itself is started by ``./run.sh demo`` (``pingan infra up``).

The demo runs outside dev mode with its own secrets (`demo_secrets`): random ingest credentials
(``demo/ingest-credentials.toml``: an HMAC key for the platforms, a digest user for the ISAPI
cameras) and SIP password at every start-up, and a random person-key secret kept in
``demo/person-key.secret`` (the demo's topics outlive a run: keys must stay comparable), unless the
environment sets them; they reach the children through ``PINGAN_*`` and the feed signs its pushes.
"""
from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from connectors.ingest.publish import publish_folder
from infra.processes import settings_env
from infra.restart_policy import GiveUp
from infra.supervisor import Supervisor
from streams.ops.provision import provision
from streams.settings import DEV_SECRETS, Settings

app = typer.Typer(help="The Wenchuan demo: workers, receivers, a simulated feed and the search page")
console = Console()

# the three demo jurisdictions: county, a town (三江镇) and a village (柒山村, the demolition dispute)
DEMO_AREAS = (("汶川县综治中心", "513221"), ("三江镇综治中心", "513221107"), ("柒山村综治中心", "513221107201"))


def _wait_http(url: str, timeout_s: float, headers: dict[str, str] | None = None) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(req, timeout=2) as resp:  # noqa: S310 - loopback only
                if resp.status < 500:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def write_credentials(path: Path) -> list[tuple[str, str, str]]:
    """Fresh random tokens for the demo areas; returns (user, admin_code, token)."""
    creds = [(user, code, secrets.token_urlsafe(18)) for user, code in DEMO_AREAS]
    path.write_text(json.dumps({"tokens": {t: {"user": u, "admin_code": c} for u, c, t in creds}},
                               ensure_ascii=False, indent=2), encoding="utf-8")
    path.chmod(0o600)
    return creds


def write_ingest_credentials(path: Path) -> None:
    """Fresh random ingest credentials for the demo's senders (format: README "Ingest credentials")."""
    path.write_text(
        "# written by `pingan demo run` at start-up (random; replaced at every start)\n"
        "[[credential]]\n"
        'key_id = "demo-platforms"\nscheme = "hmac"\n'
        f'secret = "{secrets.token_urlsafe(32)}"\n'
        'feeds = ["gb28181", "grid", "mediation", "door"]\n\n'
        "[[credential]]\n"
        'key_id = "admin"\nscheme = "digest"\n'
        f'secret = "{secrets.token_urlsafe(18)}"\n'
        'feeds = ["isapi", "door"]\n', encoding="utf-8")
    path.chmod(0o600)


def demo_secrets(base: Settings, demo_dir: Path) -> dict[str, object]:
    """The demo's secrets (see module docstring): what the environment sets explicitly wins."""
    def explicit(name: str) -> str | None:
        value = getattr(base, name)
        return None if value in (None, DEV_SECRETS.get(name)) else value

    key_file = demo_dir / "person-key.secret"
    if explicit("person_key_secret") is None and not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(32), encoding="utf-8")
        key_file.chmod(0o600)
    ingest = base.ingest_credentials
    if ingest is None:
        ingest = demo_dir / "ingest-credentials.toml"
        write_ingest_credentials(ingest)
    return {"person_key_secret": explicit("person_key_secret") or key_file.read_text(encoding="utf-8").strip(),
            "sip_password": explicit("sip_password") or secrets.token_urlsafe(18),
            "ingest_credentials": ingest, "dev_mode": False}


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _ensure_alarm_desk(template: Path, target: Path) -> None:
    """The demo's stand-in for the 110 desk database: an empty JJD table shaped like the simulator's."""
    import sqlite3

    with sqlite3.connect(template) as src:
        ddl = [row[0] for row in src.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND "
                                             "tbl_name = 'JJD'")]
    with sqlite3.connect(target) as dst:
        if not dst.execute("SELECT 1 FROM sqlite_master WHERE name = 'JJD'").fetchone():
            for stmt in ddl:
                dst.execute(stmt)


@app.command()
def run(seed: int = typer.Option(1, help="simulator seed"),
        rate: float = typer.Option(5.0, help="continuous feed: deliveries per second through the receivers"),
        duration: float = typer.Option(0.0, help="stop after this many seconds (0 = until Ctrl-C)"),
        feed: bool = typer.Option(True, help="keep a simulated feed flowing through the receivers")) -> None:
    """Run the demo until interrupted; prints the page address and three credentials."""
    base = Settings.from_env()
    demo_dir = base.run_dir / "demo"
    day = demo_dir / "day"
    demo_dir.mkdir(parents=True, exist_ok=True)
    # the simulated days are in the past: the county clock is the feed's event time (no wall ticks)
    settings = Settings(**{**base.model_dump(), "registry_path": day / "registry.csv", "clock_ticks": False,
                           **demo_secrets(base, demo_dir)})
    env = settings_env(settings)
    provision(settings)
    if not (day / "truth.json").exists():
        console.print("simulating one county day (汶川县) …")
        subprocess.run([sys.executable, "-m", "streams.cli", "simulate", "--out", str(day), "--days", "1",
                        "--seed", str(seed), "--quiet"], check=True, env=env)
    creds = write_credentials(demo_dir / "credentials.json")
    _ensure_alarm_desk(day / "alarm110" / "jjd.sqlite", demo_dir / "alarm110.sqlite")
    children = Supervisor(demo_dir, status_path=demo_dir / "supervisor.json")
    signal.signal(signal.SIGTERM, _raise_interrupt)  # `kill` stops the demo like Ctrl-C: children too
    alarm_db = f"sqlite:///{demo_dir / 'alarm110.sqlite'}"
    try:
        children.start("worker", ["worker", "run", "--loglevel", "warning"], env)
        children.start("receivers", ["connectors", "run", "--registry", str(day / "registry.csv"),
                                     "--port", str(settings.receiver_port), "--alarm110-url", alarm_db,
                                     "--no-sip"], env)
        children.start("search", ["search", "serve", "--credentials", str(demo_dir / "credentials.json"),
                                  "--port", str(settings.search_port)], env)
        report = publish_folder(settings, day)
        console.print(f"imported the simulated day: {report.records} records "
                      f"({', '.join(f'{k} {v}' for k, v in sorted(report.per_topic.items()))})")
        url = f"http://127.0.0.1:{settings.search_port}/"
        if not _wait_http(url + "healthz", 60):
            raise RuntimeError(f"search server did not start; see {demo_dir / 'search.log'}")
        if feed:
            _wait_http(f"http://127.0.0.1:{settings.receiver_port}/healthz", 60)
            minutes = duration / 60 if duration else 24 * 60
            children.start("feed", ["simulate", "--send", "--url", f"http://127.0.0.1:{settings.receiver_port}",
                                    "--rate", str(rate), "--minutes", str(minutes), "--seed", str(seed + 1),
                                    "--alarm110-db", alarm_db, "--quiet"], env, mode="on-failure")
        table = Table("综治中心", "行政区划", "令牌 (Bearer token)", title=f"平安总线 search page: {url}")
        for user, code, token in creds:
            table.add_row(user, code, token)
        console.print(table)
        console.print(f"logs: {demo_dir}/*.log — Ctrl-C stops the demo (the stack keeps running; "
                      "`pingan infra down` stops it)")
        deadline = time.monotonic() + duration if duration else None
        while deadline is None or time.monotonic() < deadline:
            for event in children.poll():
                console.print(event.message(), style="bold red" if isinstance(event.decision, GiveUp) else "yellow")
                if isinstance(event.decision, GiveUp):
                    console.print(f"the demo stops: {event.name} {event.decision.reason}; see {demo_dir}/{event.name}.log",
                                  style="bold red")
                    raise typer.Exit(1)
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("stopping …")
    finally:
        children.stop()
