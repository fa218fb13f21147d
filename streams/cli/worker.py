"""`pingan worker run`: start one Faust worker of the bus (normalize, correlate, index)."""
from __future__ import annotations

import typer

from streams.settings import MissingSecrets, Settings

app = typer.Typer(help="Stream-processing workers (faust-streaming)")


@app.command()
def run(worker_id: int = typer.Option(None, help="distinct per worker on one host (data dir, web port)"),
        loglevel: str = typer.Option("warning", help="worker log level"),
        no_index: bool = typer.Option(False, help="do not run the Elasticsearch index agent in this worker")) -> None:
    """Run a worker until interrupted; several workers share the partitions (Faust rebalances)."""
    from faust import Worker

    from streams.worker.app import build_app

    overrides = {} if worker_id is None else {"worker_id": worker_id}
    settings = Settings.from_env(**overrides)
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
    faust_app = build_app(settings, with_index=not no_index)
    extra: dict = {}
    if settings.log_json:
        from streams.worker.observability import json_logging_config

        extra["logging_config"] = json_logging_config(loglevel)
    Worker(faust_app, loglevel=loglevel, quiet=True, **extra).execute_from_commandline()
