"""`pingan dlq`: list, show and re-drive dead letters (streams/ops/dlq.py)."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import typer

from streams.settings import Settings

app = typer.Typer(help="Dead letters: triage and re-drive", no_args_is_help=True)


def _at(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


@app.command("list")
def list_(source: str = typer.Option(None, help="only this source (camera, grid, gb28181, incidents …)"),
          stage: str = typer.Option(None, help="only this stage (translate, normalize, correlate, index …)"),
          reason_contains: str = typer.Option(None, help="case-insensitive substring of the reason"),
          limit: int = typer.Option(50, help="newest N (0: all)"),
          as_json: bool = typer.Option(False, "--json", help="one JSON object per line instead of a table")) -> None:
    """Table of dead letters: id, source, stage, error class/type, reason, origin, time."""
    from rich.console import Console
    from rich.table import Table

    from bench.tables import fit_table, text_column
    from streams.ops.dlq import REDRIVE_HEADER, read_dead_letters

    letters = read_dead_letters(Settings.from_env(), source=source, stage=stage, reason_contains=reason_contains,
                                limit=limit or None)
    if as_json:
        for letter in letters:
            rec = {k: v for k, v in letter.record.items() if k != "raw"}
            typer.echo(json.dumps({**rec, "raw_bytes": len(letter.record.get("raw") or b""),
                                   "redrive_header": letter.header(REDRIVE_HEADER)}, ensure_ascii=False))
        return
    table = Table(title=f"{len(letters)} dead letter(s)", caption="origin: topic/partition/offset")
    table.add_column("id", no_wrap=True)
    for col in ("source", "stage", "class", "type", "reason", "origin", "at"):
        text_column(table, col)
    for letter in letters:
        r = letter.record
        origin = f"{r.get('topic') or '-'}/{r.get('partition') if r.get('partition') is not None else '-'}/" \
                 f"{r.get('offset') if r.get('offset') is not None else '-'}"
        reason = str(r.get("reason") or "")
        table.add_row(letter.id[:12], str(r.get("source")), str(r.get("stage")), str(r.get("error_class")),
                      str(r.get("error_type")), reason[:80] + ("…" if len(reason) > 80 else ""), origin, _at(r.get("at")))
    console = Console()
    console.print(fit_table(table, console.width, ("class", "stage", "origin")))


def _find(settings: Settings, dl_id: str) -> list:
    from streams.ops.dlq import read_dead_letters

    letters = [x for x in read_dead_letters(settings) if x.id.startswith(dl_id)]
    return letters


@app.command()
def show(dead_letter_id: str = typer.Argument(..., help="id or a unique prefix of it")) -> None:
    """The full record of one dead letter, raw bytes as hex and UTF-8 preview."""
    from rich.console import Console

    from streams.ops.dlq import REDRIVE_HEADER, raw_preview

    letters = _find(Settings.from_env(), dead_letter_id)
    if not letters:
        raise typer.BadParameter(f"no dead letter {dead_letter_id!r}")
    if len({x.id for x in letters}) > 1:
        raise typer.BadParameter(f"{dead_letter_id!r} is ambiguous: {sorted({x.id for x in letters})[:5]}")
    letter = letters[-1]
    rec = dict(letter.record)
    raw = bytes(rec.pop("raw") or b"")
    rec["at_utc"] = _at(rec.get("at"))
    rec["dlq_position"] = f"{letter.dlq_partition}@{letter.dlq_offset}"
    rec["redrive_header"] = letter.header(REDRIVE_HEADER)
    rec["copies"] = len(letters)
    console = Console()
    console.print_json(json.dumps(rec, ensure_ascii=False, default=str))
    preview = raw_preview(raw)
    console.print(f"[bold]raw[/bold] ({len(raw)} bytes, {rec.get('content_type') or 'unknown type'})")
    console.print(preview["hex"], markup=False, highlight=False, soft_wrap=True)
    console.print("[bold]utf-8 preview[/bold]")
    console.print(preview["utf8"], markup=False, highlight=False, soft_wrap=True)


@app.command("redrive")
def redrive_(ids: list[str] = typer.Option(None, "--id", help="dead letter id (repeatable)"),
             source: str = typer.Option(None, help="with --stage: every letter of this source and stage"),
             stage: str = typer.Option(None, help="with --source"),
             dry_run: bool = typer.Option(False, "--dry-run", help="show what would be sent; send nothing")) -> None:
    """Re-publish raw bytes to their origin topic (or translate again), tagged pingan-redrive-of."""
    from streams.ops.dlq import read_dead_letters, redrive

    if not ids and not (source and stage):
        raise typer.BadParameter("give --id ID (repeatable) or both --source and --stage")
    settings = Settings.from_env()
    letters = read_dead_letters(settings, ids=ids or None, source=source, stage=stage)
    unique = {x.id: x for x in letters}  # the same failure may have been dead-lettered more than once
    missing = set(ids or []) - set(unique)
    if missing:
        typer.echo(f"not found: {', '.join(sorted(missing))}", err=True)
    outcomes = redrive(settings, list(unique.values()), dry_run=dry_run)
    for o in outcomes:
        extra = f" new dead letter {o.new_dead_letter_id}: {o.detail[:120]}" if o.new_dead_letter_id else ""
        typer.echo(f"{'[dry-run] ' if dry_run else ''}{o.dead_letter_id}: {o.action} "
                   f"{o.records} record(s) → {', '.join(o.topics) or '-'}{extra}")
    if missing:
        raise typer.Exit(1)
