"""`pingan worker run`: start one Faust worker of the bus (normalize, correlate, index)."""
from __future__ import annotations

import typer

from streams.settings import MissingSecrets, Settings

app = typer.Typer(help="Stream-processing workers (faust-streaming)")


@app.command()
def run(worker_id: int = typer.Option(None, help="distinct per worker on one host (data dir, web port)"),
        loglevel: str = typer.Option("warning", help="worker log level"),
        no_index: bool = typer.Option(False, help="do not run the Elasticsearch index agent in this worker"),
        role: str = typer.Option(None, help="all | correlate | edge (normalize + index); default "
                                                "PINGAN_WORKER_ROLE, else all")) -> None:
    """Run a worker until interrupted; several workers share the partitions (Faust rebalances)."""
    from faust import Worker

    from streams.worker.app import build_app

    overrides: dict = {} if worker_id is None else {"worker_id": worker_id}
    if role is not None:
        overrides["worker_role"] = role
    try:
        settings = Settings.from_env(**overrides)
    except ValueError as exc:  # pydantic's ValidationError: an unknown role, a malformed variable
        typer.echo(f"pingan worker run: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        settings.require_secrets("worker")
    except MissingSecrets as exc:
        typer.echo(f"pingan worker run: {exc}", err=True)
        raise typer.Exit(2) from None
    from connectors.ingest.schema_topic import ensure_published

    try:  # every schema this worker writes is on schemas.v1 before its first record
        ensure_published(settings)
    except Exception as exc:  # noqa: BLE001 - shown to the operator, then exit 2
        typer.echo(f"pingan worker run: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(2) from None
    from streams.domain.ruleset import RulesError

    try:
        faust_app = build_app(settings, with_index=not no_index)
    except RulesError as exc:
        typer.echo(f"pingan worker run: rules: {exc}", err=True)
        raise typer.Exit(2) from None
    from streams.worker.runtime import tune_gc, watch_gc

    tune_gc(settings)  # after the app is built: its objects are frozen with the rest of start-up
    watch_gc(faust_app.pingan_metrics.gc_paused)  # type: ignore[attr-defined]
    extra: dict = {}
    if settings.log_json:
        from streams.worker.observability import json_logging_config

        extra["logging_config"] = json_logging_config(loglevel)
    Worker(faust_app, loglevel=loglevel, quiet=True, **extra).execute_from_commandline()


@app.command("rules")
def rules(rules_dir: str = typer.Argument(None, help="rules folder to check (default: PINGAN_RULES_DIR)")) -> None:
    """Validate a rules folder and print its version and which files are in force (nothing starts)."""
    from pathlib import Path

    from streams.domain.ruleset import RulesError, load_ruleset

    folder = Path(rules_dir) if rules_dir else Settings.from_env().rules_dir
    try:
        rs = load_ruleset(folder)
    except RulesError as exc:
        typer.echo(f"invalid rules: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"rules version {rs.version}")
    for name, path in sorted(rs.files.items()):
        typer.echo(f"  {name}: {path}")
