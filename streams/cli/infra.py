"""`pingan infra up|down|status|provision`: the local Kafka + Elasticsearch stack."""
from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from bench.tables import fit_table, number_column, text_column
from infra.stack import Stack, StackError, engine_versions
from streams.ops.provision import provision
from streams.settings import Settings

app = typer.Typer(help="Local Kafka (KRaft) and Elasticsearch on 127.0.0.1, from pinned Maven Central artifacts")
console = Console()


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(2)


@app.command()
def up(no_provision: bool = typer.Option(False, help="start only; skip topics and index templates"),
       timeout: float = typer.Option(180.0, help="seconds to wait for readiness")) -> None:
    """Start both engines (idempotent), wait until ready, then provision topics and indices."""
    settings = Settings.from_env()
    try:
        took = Stack(settings).up(timeout)
    except StackError as exc:
        _fail(exc)
        return
    console.print(f"[green]ready[/] in {took:.1f}s — Kafka {settings.kafka_bootstrap}, "
                  f"Elasticsearch {settings.es_url}; run dir {settings.run_dir}")
    if not no_provision:
        try:
            report = provision(settings)
        except Exception as exc:  # noqa: BLE001 - shown to the operator with its type, then exit 2
            _fail(RuntimeError(f"provisioning failed: {type(exc).__name__}: {exc}"))
            return
        console.print(f"provisioned: {len(report.created)} topics created, {len(report.existing)} present, "
                      f"{len(report.repartitioned)} repartitioned, {report.schemas_published} schema versions published; "
                      f"elasticsearch: {', '.join(report.es) or '-'}")


@app.command()
def down() -> None:
    """Stop both engines; no Java process of ours is left."""
    Stack(Settings.from_env()).down()
    console.print("stopped")


@app.command()
def status() -> None:
    """Pids, ports, readiness and resident memory of each engine."""
    settings = Settings.from_env()
    table = Table()
    text_column(table, "engine")
    number_column(table, "pid")
    text_column(table, "ports")
    text_column(table, "state")
    number_column(table, "RSS MB")
    rows = Stack(settings).status()
    for st in rows:
        table.add_row(st.name, str(st.pid or "-"), ", ".join(map(str, st.ports)), st.detail,
                      f"{st.rss_mb:.0f}" if st.rss_mb else "-")
    console.print(fit_table(table, console.width))
    console.print(f"versions: {engine_versions()}; run dir {settings.run_dir}")
    if not all(st.ready for st in rows):
        raise typer.Exit(1)


@app.command("provision")
def provision_cmd() -> None:
    """Create or update topics and Elasticsearch templates/aliases (idempotent)."""
    report = provision(Settings.from_env())
    console.print(report)
