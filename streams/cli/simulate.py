"""`pingan simulate`: write a simulated county to disk, or send it to running receivers."""
from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from bench.tables import number_column, text_column
from simulator.model import BASE_DATE, CST
from simulator.variants import apply_variants

app = typer.Typer(help="Simulate Wenchuan county's native feeds (deterministic under --seed).",
                  no_args_is_help=False)


def mix_table(summary: dict[str, Any]) -> Table:
    """The event mix per source feed and kind (duplicates and heartbeats listed apart)."""
    t = Table(title="Simulated event mix")
    text_column(t, "feed")
    text_column(t, "kind")
    number_column(t, "events")
    mix: dict[tuple[str, str], int] = summary["mix"]
    for (feed, kind), n in sorted(mix.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][1])):
        t.add_row(feed, kind, str(n))
    t.add_section()
    for feed, n in summary["counts"].items():
        t.add_row(feed, "[bold]total", str(n))
    extra = summary.get("extra", {})
    t.add_section()
    t.add_row("all", "[bold]events", str(sum(summary["counts"].values())))
    for k in ("duplicates", "late", "heartbeats"):
        t.add_row("all", k, str(extra.get(k, 0)))
    return t


def sent_table(counts: Counter[tuple[str, str]]) -> Table:
    """What was sent, per endpoint and status."""
    t = Table(title="Sent")
    text_column(t, "endpoint")
    text_column(t, "status")
    number_column(t, "count")
    for (ep, status), n in sorted(counts.items()):
        t.add_row(ep, status, str(n))
    t.add_section()
    t.add_row("all", "", str(sum(counts.values())))
    return t


@app.callback(invoke_without_command=True)
def simulate(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option(help="Output directory for payload files")] = None,
    days: Annotated[int, typer.Option(min=1, help="Days of background to simulate")] = 1,
    seed: Annotated[int, typer.Option(help="Random seed (same seed → byte-identical output)")] = 1,
    scale: Annotated[float, typer.Option(min=0.0, help="Multiplier of background volume")] = 1.0,
    base_date: Annotated[str, typer.Option(help="Day 0, local date YYYY-MM-DD")] = BASE_DATE.strftime("%Y-%m-%d"),
    send: Annotated[bool, typer.Option("--send", help="POST to running receivers instead of writing files")] = False,
    url: Annotated[str, typer.Option(help="Receivers' base URL (--send)")] = "http://127.0.0.1:8090",
    rate: Annotated[float, typer.Option(min=0.01, help="Deliveries per second (--send)")] = 50.0,
    minutes: Annotated[float, typer.Option(min=0.0, help="How long to send (--send)")] = 1.0,
    alarm110_db: Annotated[str | None, typer.Option(help="SQLAlchemy URL of the 110 desk DB (--send)")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar")] = False,
    variants: Annotated[bool, typer.Option("--variants", help="Write the day as another county's systems export it "
                                                              "(other column names, names for codes, result "
                                                              "sentences, GCJ-02), with its profiles/")] = False,
    report: Annotated[Path | None, typer.Option(help="Also write what was sent as JSON here (--send): counts per "
                                                     "endpoint/status and per feed/status, duplicates, native ids")] = None,
    credentials: Annotated[Path | None, typer.Option(help="Ingest credentials file to authenticate the pushes with "
                                                          "(--send; default: settings.ingest_credentials, else "
                                                          "unauthenticated, for a dev-mode receiver)")] = None,
) -> None:
    """Write `--days` of simulated feeds under `--out`, or `--send` them for `--minutes` at `--rate`/s."""
    if ctx.invoked_subcommand is not None:
        return
    console = Console()
    if send:
        from connectors.sources.auth import CredentialsError, load_credentials
        from simulator.sender import SendLog
        from simulator.sender import send as do_send
        from streams.settings import Settings

        creds_path = credentials if credentials is not None else Settings.from_env().ingest_credentials
        try:
            creds = load_credentials(creds_path) if creds_path is not None else None
        except CredentialsError as exc:
            raise typer.BadParameter(str(exc)) from None
        log = SendLog() if report is not None else None
        counts = asyncio.run(do_send(url, rate, minutes, seed=seed, scale=scale, alarm110_db=alarm110_db,
                                     progress=not quiet, log=log, credentials=creds))
        console.print(sent_table(counts))
        if report is not None and log is not None:
            log.write(report, counts, url=url, rate=rate, minutes=minutes, seed=seed, scale=scale)
        return
    if out is None:
        raise typer.BadParameter("give --out DIR (or --send)")
    from simulator.writer import generate

    base = datetime.strptime(base_date, "%Y-%m-%d").replace(tzinfo=CST)
    with console.status(f"simulating {days} day(s), seed {seed}, scale {scale} → {out}", spinner="dots") \
            if not quiet else _Null():
        summary = generate(out, days=days, seed=seed, scale=scale, base=base)
        if variants:
            changed = apply_variants(out)
    console.print(mix_table(summary))
    if variants:
        console.print("variants: " + "; ".join(f"{k} ({v['variant']})" for k, v in changed.items()))
    console.print(f"wrote {summary['deliveries']} deliveries to {out} (truth.json, manifest.json, delivery.jsonl)")


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
