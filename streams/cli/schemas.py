"""``pingan schemas ...``: AsyncAPI document, compatibility gate, release snapshots."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import typer

from schemas import asyncapi, compat
from schemas.loader import RELEASED_DIR, SCHEMA_DIR, load_dir, load_order, short_name
from schemas.serde import SchemaStore

LOAD_ORDER = "load-order.txt"

app = typer.Typer(help="Avro schemas: AsyncAPI document, compatibility gate, releases", no_args_is_help=True)


@app.command("asyncapi")
def asyncapi_cmd(
    check: bool = typer.Option(False, "--check", help="Exit 1 if docs/asyncapi.json is not current; write nothing."),
    path: Path = typer.Option(asyncapi.ASYNCAPI_PATH, help="Where the document lives."),
) -> None:
    """Write docs/asyncapi.json from the catalogue and schemas (or check it)."""
    store = SchemaStore()
    if check:
        if not asyncapi.is_current(store, path):
            typer.echo(f"{path} is stale: run `pingan schemas asyncapi`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{path} is current")
        return
    changed = asyncapi.write(store, path)
    typer.echo(f"{'wrote' if changed else 'unchanged'} {path}")


@app.command("compat")
def compat_cmd(
    mode: str = typer.Option("GATE", help="GATE (BACKWARD, FULL for downstream topics), BACKWARD, FORWARD or FULL."),
) -> None:
    """Check current schemas against the last release; exit 1 when incompatible."""
    if mode.upper() == "GATE":
        report = compat.gate(SCHEMA_DIR, RELEASED_DIR)
    else:
        report = compat.check(SCHEMA_DIR, RELEASED_DIR, mode.upper())  # type: ignore[arg-type]
    typer.echo(report.render())
    if not report.ok:
        raise typer.Exit(1)


@app.command("release")
def release_cmd(
    version: str = typer.Argument(..., help="Release name v<N>, e.g. v2."),
    force: bool = typer.Option(False, help="Release even if the compatibility gate fails."),
) -> None:
    """Snapshot the current .avsc files into schemas/released/VERSION/."""
    if not re.fullmatch(r"v\d+", version):
        typer.echo("version must look like v<N>", err=True)
        raise typer.Exit(2)
    target = RELEASED_DIR / version
    if target.exists():
        typer.echo(f"{target} already exists; releases are immutable", err=True)
        raise typer.Exit(1)
    report = compat.gate(SCHEMA_DIR, RELEASED_DIR)
    if not report.ok and not force:
        typer.echo(report.render(), err=True)
        raise typer.Exit(1)
    order = load_order(load_dir(SCHEMA_DIR))  # refuse to snapshot a broken set
    target.mkdir(parents=True)
    for file in sorted(SCHEMA_DIR.glob("*.avsc")):
        shutil.copy2(file, target / file.name)
    (target / LOAD_ORDER).write_text("".join(f"{short_name(n)}.avsc\n" for n in order), encoding="utf-8")
    typer.echo(f"released {len(list(target.glob('*.avsc')))} schemas as {version}")


@app.command("publish")
def publish_cmd(
    check: bool = typer.Option(False, "--check", help="Only check that every current schema is published; exit 1 if not."),
) -> None:
    """Publish every schema version the bus may write on schemas.v1 (idempotent), or check it."""
    from connectors.ingest.schema_topic import publish_schemas, read_published
    from schemas.registry import missing
    from streams.settings import Settings

    settings = Settings.from_env()
    store = SchemaStore()
    if check:
        absent = missing(store, read_published(settings, store))
        for sv in absent:
            typer.echo(f"not published: {sv.name} {sv.fingerprint.hex()}", err=True)
        if absent:
            raise typer.Exit(1)
        typer.echo(f"every current schema is published on {settings.topic('schemas.v1')}")
        return
    n = publish_schemas(settings, store)
    typer.echo(f"published {n} schema versions on {settings.topic('schemas.v1')}")
