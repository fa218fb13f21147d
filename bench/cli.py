"""`pingan bench`: benchmarks (mounted by `streams.cli`).

``throughput`` drives the real stack (`bench.throughput`); further commands (``quality``) are
registered on the same `app`.
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
    scale: Annotated[float, typer.Option(min=0.01, help="simulator scale of the one-day payload")] = 5.0,
    rounds: Annotated[int, typer.Option(min=1, help="rounds; variants alternate order, medians are shown")] = 3,
    seed: Annotated[int, typer.Option(help="simulator seed")] = 1,
    latency_seconds: Annotated[float, typer.Option(min=0.0, help="latency probe duration (0: skip)")] = 20.0,
    min_docs: Annotated[int, typer.Option(min=1, help="index variants load the incident docs repeated "
                                                     "until at least this many")] = 10000,
    json_path: Annotated[Path | None, typer.Option("--json", help="also write the numbers here")] = None,
    keep_dir: Annotated[bool, typer.Option(help="keep the work dir (simulator folder, worker logs)")] = False,
) -> None:
    """Throughput of normalize, the index sink and the whole pipeline vs bare baselines; e2e latency."""
    from bench.throughput import Options, run_and_print

    run_and_print(Options(scale=scale, rounds=rounds, seed=seed, latency_seconds=latency_seconds,
                          min_docs=min_docs, json_path=json_path, keep_dir=keep_dir))
