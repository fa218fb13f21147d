"""`pingan replay`: rebuild the index from incidents.v1, or re-run the whole pipeline (streams/ops/replay.py)."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
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


def _interruptible() -> None:
    """SIGTERM behaves exactly like Ctrl-C, so a killed replay ends with one clean line.

    The signal is handed to the current SIGINT handler. Inside ``asyncio.run`` that is the runner's own handler,
    which cancels the main task (its ``finally`` blocks save the checkpoint) and then raises KeyboardInterrupt
    from ``asyncio.run``; raising KeyboardInterrupt straight from the handler would instead land in whichever
    task callback happened to be running (an aiohttp write, say) and leave that task's traceback on stderr.
    Outside an event loop the SIGINT handler is Python's default one, which raises KeyboardInterrupt.
    A replay started as a background job of a shell (``… &``, a nohup'd script) inherits SIGINT ignored,
    and ``asyncio.run`` then installs no handler of its own: Python's default is put back first.
    """
    import signal

    if not callable(signal.getsignal(signal.SIGINT)):  # SIG_IGN / SIG_DFL inherited from the parent
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def _as_sigint(_sig: int, frame: Any) -> None:
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _as_sigint)


def _say(msg: str) -> None:
    typer.echo(msg, err=True)


def _print_shrink(report: Any) -> None:
    typer.echo(f"REFUSED: {report.refused}", err=True)
    if report.shrink is not None:
        for line in report.shrink.lines():
            typer.echo(line, err=True)


@app.command("index")
def index(from_: str = typer.Option(None, "--from", help="event time (ISO 8601; naive = PINGAN_TIMEZONE): rebuild "
                                                        "incidents that changed since then, on top of a copy"),
          from_produce_time: str = typer.Option(None, "--from-produce-time", "--from-timestamp",
                                                help="Kafka produce time (ISO 8601) instead of event time"),
          from_offsets: str = typer.Option(None, "--from-offsets", help="partition:offset,… or one offset for all"),
          from_beginning: bool = typer.Option(False, "--from-beginning", help="replay every retained record"),
          dry_run: bool = typer.Option(False, "--dry-run", help="report per partition what would be reprocessed"),
          seed: bool = typer.Option(True, help="not from the beginning: start the new index as a copy of the current one"),
          force: bool = typer.Option(False, "--force", help="swap even to a smaller index / seed from a partial one"),
          restart: bool = typer.Option(False, help="ignore an unfinished checkpoint and start over"),
          max_batches: int = typer.Option(None, hidden=True, help="stop after N batches (tests)"),
          batch_size: int = typer.Option(None, help="records per flushed batch (default: sink_batch_size)"),
          as_json: bool = typer.Option(False, "--json", help="print the report as JSON")) -> None:
    """Rebuild the incidents index from incidents.v1 into a new versioned index, catch up, swap the alias."""
    from streams.ops.replay import ReplayRefused, parse_timestamp, plans_as_rows, replay_index
    from streams.ops.replay_safety import parse_offsets

    if sum(bool(x) for x in (from_, from_produce_time, from_offsets, from_beginning)) != 1:
        raise typer.BadParameter("give exactly one of --from, --from-produce-time, --from-offsets, --from-beginning")
    settings = Settings.from_env()
    try:
        event_ms = parse_timestamp(from_, settings.timezone) if from_ else None
        produce_ms = parse_timestamp(from_produce_time, settings.timezone) if from_produce_time else None
        offsets = parse_offsets(from_offsets) if from_offsets else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    bar = None if (dry_run or as_json) else _progress()
    task = None

    def progress(done: int, total: int) -> None:
        nonlocal task
        if bar is None:
            return
        if task is None:
            task = bar.add_task("replay index", total=total)
        bar.advance(task, done)

    _interruptible()
    if bar:
        bar.start()
    try:
        report = asyncio.run(replay_index(settings, from_ms=produce_ms, from_event_ms=event_ms, from_offsets=offsets,
                                          dry_run=dry_run, seed=seed, restart=restart, force=force,
                                          max_batches=max_batches, batch_size=batch_size, progress=progress,
                                          announce=_say))
    except KeyboardInterrupt:
        if bar:
            bar.stop()
        typer.echo("interrupted: the replay's checkpoint is saved; run the same command again to resume "
                   "(--restart to start over)", err=True)
        raise typer.Exit(130) from None
    except ReplayRefused as exc:
        if bar:
            bar.stop()
        typer.echo(f"REFUSED: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        if bar:
            bar.stop()
    if as_json:
        out = {k: v for k, v in report.__dict__.items() if k not in ("plans", "shrink")}
        out["plans"] = plans_as_rows(report.plans)
        out["rate"] = report.rate
        out["shrink"] = report.shrink.as_dict() if report.shrink else None
        typer.echo(json.dumps(out, default=str))
        if report.refused:
            raise typer.Exit(1)
        return
    _print_plans(report)
    if dry_run:
        typer.echo(f"dry run: {report.total} record(s) would be replayed into {report.target_index}; nothing written")
        return
    if report.refused:
        _print_shrink(report)
        raise typer.Exit(1)
    if report.completed:
        typer.echo(f"{report.records} record(s) in {report.seconds:.1f}s ({report.rate:,.0f}/s): "
                   f"{report.indexed} indexed, {report.deleted} deleted, {report.stale} stale, {report.skipped} "
                   f"before the start, {report.dead_letters} dead; caught up {report.catchup_records} record(s) "
                   f"written meanwhile; alias → {report.target_index} (was {', '.join(report.swapped_from) or '-'})"
                   + ("" if report.complete_build else "; marked a PARTIAL build (not seeded)"))
    else:
        typer.echo(f"stopped after {report.batches} batch(es); rerun the same command to resume into "
                   f"{report.target_index}")


@app.command("pipeline")
def pipeline(from_beginning: bool = typer.Option(False, "--from-beginning", help="required: raw topics from offset 0"),
             target_prefix: str = typer.Option(None, help="topic prefix of the replayed outputs (default: a new one)"),
             restart: bool = typer.Option(False, help="discard an unfinished pipeline replay and start a new one"),
             force: bool = typer.Option(False, "--force", help="swap even if the new index is smaller"),
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

    _interruptible()
    try:
        with bar:
            report = replay_pipeline(settings, target_prefix=target_prefix, timeout_s=timeout_s, progress=progress,
                                     restart=restart, announce=_say, force=force)
    except KeyboardInterrupt:
        typer.echo("interrupted: the replay worker was stopped and its progress is committed; run the same command "
                   "again to resume (--restart to start over)", err=True)
        raise typer.Exit(130) from None
    except (RuntimeError, TimeoutError, ValueError) as exc:
        typer.echo(f"pipeline replay failed: {exc}. Run the same command again to resume.", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"pipeline: {report.raw_records} raw record(s) in {report.seconds_pipeline:.1f}s "
               f"({report.rate:,.0f}/s) under prefix {report.target_prefix!r}, app id {report.app_id}")
    if report.index and report.index.refused:
        _print_shrink(report.index)
        raise typer.Exit(1)
    if report.index:
        typer.echo(f"index: {report.index.records} incident record(s) → {report.index.target_index}; alias swapped "
                   f"from {', '.join(report.index.swapped_from) or '-'}")
    typer.echo("Run the live workers on the new namespace from now on: "
               f"PINGAN_TOPIC_PREFIX={report.target_prefix} PINGAN_INPUT_TOPIC_PREFIX={settings.raw_topic_prefix} "
               f"PINGAN_APP_ID={report.app_id}")


@app.command("diff")
def diff(rules: Path = typer.Option(..., "--rules", exists=True, file_okay=False,
                                    help="folder with the new correlation_rules.toml and/or tier_rules.toml"),
         since: str = typer.Option("7d", help="compare incidents changed within this long of the newest one "
                                              "(7d, 36h, 90m)"),
         out: Path = typer.Option(None, help="JSON file of the diff (default: run_dir/replay/diff-<stamp>.json)"),
         examples: int = typer.Option(5, help="examples printed per kind of change"),
         timeout_s: float = typer.Option(3600.0, help="give up when the shadow worker has not caught up")) -> None:
    """Preview a rule change: run the pipeline with the new rules into a shadow prefix and print what changes."""
    from streams.domain.ruleset import RulesError
    from streams.ops.replay import replay_diff
    from streams.ops.rules_diff import parse_since

    try:
        window = parse_since(since)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    settings = Settings.from_env()
    bar = _progress()
    task = None

    def progress(done: int, total: int) -> None:
        nonlocal task
        if task is None:
            task = bar.add_task("shadow pipeline (raw records)", total=total)
        bar.advance(task, done)

    _interruptible()
    try:
        with bar:
            report = replay_diff(settings, rules, window_ms=window, out_path=out, timeout_s=timeout_s,
                                 progress=progress)
    except RulesError as exc:
        typer.echo(f"invalid rules: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo("interrupted: nothing was swapped; run the command again for a new preview", err=True)
        raise typer.Exit(130) from None
    except (RuntimeError, TimeoutError, ValueError) as exc:
        typer.echo(f"replay diff failed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"shadow pipeline: {report.raw_records} raw record(s) in {report.seconds_pipeline:.1f}s under "
               f"{report.target_prefix!r} with rules {report.rules_version} ({report.rules_dir})")
    for line in report.diff.lines(examples):
        typer.echo(line)
    typer.echo(f"diff written to {report.json_path}")
    typer.echo("nothing swapped; `pingan replay promote` indexes the shadow incidents and swaps the alias")


@app.command("promote")
def promote_(force: bool = typer.Option(False, "--force", help="swap even if the new index is smaller")) -> None:
    """Index the last `replay diff` preview into a new index version and swap the alias."""
    from streams.ops.replay import ReplayRefused, promote

    settings = Settings.from_env()
    _interruptible()
    try:
        state, report = promote(settings, force=force, announce=_say)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    except ReplayRefused as exc:
        typer.echo(f"REFUSED: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("interrupted: run the same command again to resume", err=True)
        raise typer.Exit(130) from None
    if report.refused:
        _print_shrink(report)
        raise typer.Exit(1)
    typer.echo(f"promoted rules {state['rules_version']}: {report.records} incident record(s) → "
               f"{report.target_index}; alias swapped from {', '.join(report.swapped_from) or '-'}")
    typer.echo("Run the live workers on the new namespace and rules from now on: "
               f"PINGAN_TOPIC_PREFIX={state['target_prefix']} PINGAN_INPUT_TOPIC_PREFIX={settings.raw_topic_prefix} "
               f"PINGAN_APP_ID={state['app_id']} PINGAN_RULES_DIR={state['rules_dir']}")
