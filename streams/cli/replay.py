"""`pingan replay`: rebuild the index from incidents.v1, or re-run the whole pipeline (streams/ops/replay.py)."""
from __future__ import annotations

import asyncio
import json
from typing import Any

import typer

from streams.settings import Settings

app = typer.Typer(help="Replays into a new index version, then an atomic alias swap", no_args_is_help=True)


def _progress() -> Any:
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TaskProgressColumn,
                               TextColumn, TimeElapsedColumn, TimeRemainingColumn)
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Records per second."""

        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.0f}/s" if speed else "–/s", style="progress.data.speed")

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                    RateColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())


def _print_plans(report: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from bench.tables import number_column

    table = Table(title=f"{report.topic} → {report.target_index}" + (" (resuming)" if report.resumed else ""))
    for col in ("partition", "from offset", "to offset", "records"):
        number_column(table, col)
    for p in report.plans:
        table.add_row(str(p.partition), str(p.start), str(p.end), str(p.count))
    table.add_row("all", "", "", str(report.total), style="bold")
    Console().print(table)


@app.command("index")
def index(from_timestamp: str = typer.Option(None, "--from-timestamp", help="ISO 8601; naive = local time (PINGAN_TIMEZONE)"),
          from_beginning: bool = typer.Option(False, "--from-beginning", help="replay every retained record"),
          dry_run: bool = typer.Option(False, "--dry-run", help="report per partition what would be reprocessed"),
          seed: bool = typer.Option(True, help="with --from-timestamp: start the new index as a copy of the current one"),
          restart: bool = typer.Option(False, help="ignore an unfinished checkpoint and start over"),
          max_batches: int = typer.Option(None, hidden=True, help="stop after N batches (tests)"),
          batch_size: int = typer.Option(None, help="records per flushed batch (default: sink_batch_size)"),
          as_json: bool = typer.Option(False, "--json", help="print the report as JSON")) -> None:
    """Rebuild the incidents index from incidents.v1 into a new versioned index, then swap the alias."""
    from streams.ops.replay import parse_timestamp, plans_as_rows, replay_index

    if bool(from_timestamp) == from_beginning:
        raise typer.BadParameter("give exactly one of --from-timestamp or --from-beginning")
    settings = Settings.from_env()
    from_ms = parse_timestamp(from_timestamp, settings.timezone) if from_timestamp else None
    bar = None if (dry_run or as_json) else _progress()
    task = None

    def progress(done: int, total: int) -> None:
        nonlocal task
        if bar is None:
            return
        if task is None:
            task = bar.add_task("replay index", total=total)
        bar.advance(task, done)

    if bar:
        bar.start()
    try:
        report = asyncio.run(replay_index(settings, from_ms=from_ms, dry_run=dry_run, seed=seed, restart=restart,
                                          max_batches=max_batches, batch_size=batch_size, progress=progress))
    finally:
        if bar:
            bar.stop()
    if as_json:
        out = {k: v for k, v in report.__dict__.items() if k != "plans"}
        out["plans"] = plans_as_rows(report.plans)
        out["rate"] = report.rate
        typer.echo(json.dumps(out, default=str))
        return
    _print_plans(report)
    if dry_run:
        typer.echo(f"dry run: {report.total} record(s) would be replayed into {report.target_index}; nothing written")
        return
    if report.completed:
        typer.echo(f"{report.records} record(s) in {report.seconds:.1f}s ({report.rate:,.0f}/s): "
                   f"{report.indexed} indexed, {report.deleted} deleted, {report.stale} stale, "
                   f"{report.dead_letters} dead; alias → {report.target_index} (was {', '.join(report.swapped_from) or '-'})")
    else:
        typer.echo(f"stopped after {report.batches} batch(es); rerun to resume into {report.target_index}")


@app.command("pipeline")
def pipeline(from_beginning: bool = typer.Option(False, "--from-beginning", help="required: raw topics from offset 0"),
             target_prefix: str = typer.Option(None, help="topic prefix of the replayed outputs (default: a new one)"),
             timeout_s: float = typer.Option(3600.0, help="give up when the replay worker has not caught up")) -> None:
    """Re-run normalize → correlate from the raw topics into new topics, index them anew, swap the alias."""
    from streams.ops.replay import replay_pipeline

    if not from_beginning:
        raise typer.BadParameter("a pipeline replay rebuilds state from the start: pass --from-beginning")
    settings = Settings.from_env()
    bar = _progress()
    task = None

    def progress(done: int, total: int) -> None:
        nonlocal task
        if task is None:
            task = bar.add_task("replay pipeline (raw records)", total=total)
        bar.advance(task, done)

    with bar:
        report = replay_pipeline(settings, target_prefix=target_prefix, timeout_s=timeout_s, progress=progress)
    typer.echo(f"pipeline: {report.raw_records} raw record(s) in {report.seconds_pipeline:.1f}s "
               f"({report.rate:,.0f}/s) under prefix {report.target_prefix!r}, app id {report.app_id}")
    if report.index:
        typer.echo(f"index: {report.index.records} incident record(s) → {report.index.target_index}; alias swapped "
                   f"from {', '.join(report.index.swapped_from) or '-'}")
    typer.echo("Run the live workers on the new namespace from now on: "
               f"PINGAN_TOPIC_PREFIX={report.target_prefix} PINGAN_INPUT_TOPIC_PREFIX={settings.raw_topic_prefix} "
               f"PINGAN_APP_ID={report.app_id}")
