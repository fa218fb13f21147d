"""``pingan schemas ...``: AsyncAPI document, compatibility gate, release snapshots."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import typer

from schemas import asyncapi, compat
from schemas.loader import RELEASED_DIR, SCHEMA_DIR, load_dir
from schemas.serde import SchemaStore

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
    mode: str = typer.Option("BACKWARD", help="BACKWARD (the gate), FORWARD or FULL."),
) -> None:
    """Check current schemas against the last release; exit 1 when incompatible."""
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
    report = compat.check(SCHEMA_DIR, RELEASED_DIR)
    if not report.ok and not force:
        typer.echo(report.render(), err=True)
        raise typer.Exit(1)
    load_dir(SCHEMA_DIR)  # refuse to snapshot a broken set
    target.mkdir(parents=True)
    for file in sorted(SCHEMA_DIR.glob("*.avsc")):
        shutil.copy2(file, target / file.name)
    typer.echo(f"released {len(list(target.glob('*.avsc')))} schemas as {version}")
