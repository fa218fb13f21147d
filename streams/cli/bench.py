"""`pingan bench`: benchmarks (mounted by `streams.cli`).

``throughput`` drives the real stack (`bench.throughput`); further commands (``quality``) are
registered on the same `app` (``quality``, ``queue``: the daily work queue of a simulated county).
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Benchmarks against the real stack and the pure pipeline", no_args_is_help=True)


@app.callback()
def _bench() -> None:
    """Benchmarks (a group, so that every command keeps its name)."""


@app.command()
def throughput(
    scale: Annotated[float, typer.Option(min=0.01, help="simulator scale of each simulated day")] = 3.0,
    rounds: Annotated[int, typer.Option(min=1, help="rounds; variants alternate order, medians are shown")] = 3,
    seed: Annotated[int, typer.Option(help="simulator seed")] = 1,
    min_seconds: Annotated[float, typer.Option(min=0.1, help="every variant runs at least this long (sized "
                                                          "from measured rates; more simulated days as needed)")] = 15.0,
    latency_seconds: Annotated[float, typer.Option(min=0.0, help="latency probe duration (0: skip)")] = 20.0,
    latency_runs: Annotated[int, typer.Option(min=1, help="latency probe runs (fresh topics and index each); "
                                                         "the row shows the run with the median p99")] = 3,
    latency_poll_s: Annotated[float, typer.Option(min=0.01, help="latency probe: seconds between the searches "
                                                               "for pending events (the error bound of each "
                                                               "latency; the searches load the node measured)")] = 0.1,
    flood_events: Annotated[int, typer.Option(min=0, help="flood row: events of the one growing incident "
                                                         "(0: skip)")] = 5000,
    flood_chunk: Annotated[int, typer.Option(min=1, help="flood row: events per timed chunk")] = 1000,
    json_path: Annotated[Path | None, typer.Option("--json", help="also write the numbers here")] = None,
    keep_dir: Annotated[bool, typer.Option(help="keep the work dir (simulator folders, subprocess logs)")] = False,
    only: Annotated[str, typer.Option(help="comma-separated variants: run only their groups (B1,normalize | "
                                           "B2,sink | B3,pure,pipeline,split); default all")] = "",
    profile: Annotated[Path | None, typer.Option(help="py-spy every timed window's processes (record --pid "
                                                      "--nonblocking) into this folder: raw collapsed stacks "
                                                      "per process and summary.txt")] = None,
) -> None:
    """Throughput of normalize, the index sink and the whole pipeline vs fair bare baselines (same work,
    no framework) and the pure in-process pipeline; the flood row; e2e latency. One table, one run."""
    from bench.throughput import Options, run_and_print

    run_and_print(Options(scale=scale, rounds=rounds, seed=seed, min_seconds=min_seconds,
                          latency_seconds=latency_seconds, latency_runs=latency_runs,
                          latency_poll_s=latency_poll_s,
                          flood_events=flood_events, flood_chunk=flood_chunk,
                          json_path=json_path, keep_dir=keep_dir, profile_dir=profile,
                          groups=frozenset(v.strip() for v in only.split(",") if v.strip())))


@app.command()
def quality(out: Path = typer.Option(None, help="simulator folder to use (default: generate one)"),
            seed: int = typer.Option(1, help="simulator seed"), days: int = typer.Option(1, help="simulated days"),
            offline: bool = typer.Option(False, help="pure pipeline only (no Kafka, no Elasticsearch)"),
            variants: bool = typer.Option(False, "--variants", help="the day as other counties' systems export it "
                                                                   "(pingan simulate --variants)")) -> None:
    """Pairwise link precision/recall and B-cubed F1 of incidents against the simulator's ground truth,
    through the real pipeline (real Kafka, a real worker, the real index) unless --offline."""
    import tempfile

    from rich.console import Console

    from bench.quality import evaluate_run, render, run_folder
    from bench.queue import county_clocks, fmt_ms, queue_of_run, totals_line
    from infra.processes import simulate_folder
    from streams.settings import Settings

    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        folder = out or Path(tmp) / "sim"
        if not (folder / "truth.json").exists():
            simulate_folder(folder, seed=seed, days=days, variants=variants)
        if offline:
            run = run_folder(folder)
            console.print(render(evaluate_run(run, folder), f"Correlation quality, offline (%) — seed {seed}"
                                 + (", variants" if variants else ""),
                                 width=console.width))
            console.print(totals_line(queue_of_run(run, folder)) + " (every delivery, county clock "
                          + ", ".join(f"{c} at {fmt_ms(ms)}" for c, ms in county_clocks(run).items()) + ")")
            return
        from bench.quality_live import evaluate_live

        live = evaluate_live(Settings.from_env(), folder)
        console.print(render(live.report, f"Correlation quality through Kafka + worker + index (%) — seed {seed}"
                             + (", variants" if variants else ""),
                             width=console.width))
        console.print(f"{live.events} events in {live.incidents} indexed incidents, {live.seconds:.1f}s from publish "
                      f"to fully indexed; index equals the offline pipeline: {live.equals_offline}")
        if not live.equals_offline:
            raise typer.Exit(1)


@app.command()
def queue(out: Path = typer.Option(None, help="simulator folder to use (default: generate one)"),
          seed: int = typer.Option(1, help="simulator seed"), days: int = typer.Option(3, help="simulated days"),
          variants: bool = typer.Option(False, "--variants", help="the days as other counties' systems export them")
          ) -> None:
    """The daily work queue of a simulated county through the pure pipeline: events, actionable incidents
    vs evidence-only clusters (by kind and tier), escalations by reason, single-event share, resolutions."""
    import tempfile

    from rich.console import Console

    from bench.queue import queue_run, render, totals_line
    from infra.processes import simulate_folder

    console = Console(width=max(Console().width, 120))
    with tempfile.TemporaryDirectory() as tmp:
        folder = out or Path(tmp) / "sim"
        if not (folder / "truth.json").exists():
            simulate_folder(folder, seed=seed, days=days, variants=variants)
        counts, run = queue_run(folder)
        console.print(render(counts, f"Work queue per day, offline pipeline — seed {seed}, {days} days"
                             + (", variants" if variants else "")))
        console.print(totals_line(counts))
        console.print(f"{run.held_back} records received after the last simulated day left out "
                      f"(scenario follow-ups, late re-deliveries); clock ticked to the end of the last day")


@app.command()
def ingest(
    count: Annotated[int, typer.Option(min=1, help="payloads POSTed per HTTP connector")] = 1000,
    concurrency: Annotated[int, typer.Option(min=1, help="HTTP requests in flight")] = 16,
    alarm110_rows: Annotated[int, typer.Option(min=1, help="rows in the SQLite JJD table the 110 poller reads")] = 3000,
    mediation_cases: Annotated[int, typer.Option(min=1, help="cases in the mediation CSV export")] = 1000,
    seed: Annotated[int, typer.Option(help="simulator seed of the payloads")] = 1,
    json_path: Annotated[Path | None, typer.Option("--json", help="also write the numbers here")] = None,
) -> None:
    """Ingest rate per connector (HTTP receivers, 110 poller, mediation CSV importer) into the real Kafka,
    next to the bare translate function's rate on the same payloads."""
    from bench.ingest import IngestOptions, run_and_print

    run_and_print(IngestOptions(count=count, concurrency=concurrency, alarm110_rows=alarm110_rows,
                                mediation_cases=mediation_cases, seed=seed, json_path=json_path))
