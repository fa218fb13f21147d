"""`pingan dlq`: list, show and re-drive dead letters (streams/ops/dlq.py)."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import typer
from pathlib import Path

from streams.settings import Settings

app = typer.Typer(help="Dead letters: triage and re-drive", no_args_is_help=True)


def _at(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _fail(msg: str) -> None:
    typer.echo(msg, err=True)
    raise typer.Exit(2)


def _resolve(letters: list, prefixes: list[str]) -> list:
    """Letters named by unique id prefixes (12 characters as `dlq list` prints them suffice)."""
    from streams.ops.dlq_state import PrefixError, resolve_prefix

    by_id = {}
    for x in letters:
        by_id.setdefault(x.id, x)
    out = []
    for p in prefixes:
        try:
            out.append(by_id[resolve_prefix(p, by_id)])
        except PrefixError as exc:
            _fail(str(exc))
    return out


@app.command("list")
def list_(source: str = typer.Option(None, help="only this source (camera, grid, gb28181, incidents …)"),
          stage: str = typer.Option(None, help="only this stage (translate, normalize, correlate, index …)"),
          reason_contains: str = typer.Option(None, help="case-insensitive substring of the reason"),
          state: str = typer.Option(None, help="only letters in this state (new, re-driven, resolved, failed-again)"),
          limit: int = typer.Option(50, help="newest N (0: all)"),
          as_json: bool = typer.Option(False, "--json", help="one JSON object per line instead of a table")) -> None:
    """Table of dead letters, one per failure: id, state, source, stage, type, reason, copies, origin, time."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from bench.tables import fit_table, text_column
    from streams.ops.dlq import REDRIVE_HEADER, grouped, journal, read_dead_letters

    settings = Settings.from_env()
    letters = read_dead_letters(settings, source=source, stage=stage, reason_contains=reason_contains)
    rows = [(x, g) for x, g in grouped(letters, journal(settings).states()) if not state or g.state.state == state]
    rows = rows[-limit:] if limit else rows
    if as_json:
        for letter, g in rows:
            rec = {k: v for k, v in letter.record.items() if k != "raw"}
            typer.echo(json.dumps({**rec, "raw_bytes": len(letter.record.get("raw") or b""),
                                   "redrive_header": letter.header(REDRIVE_HEADER), "state": g.state.state,
                                   "copies": g.copies, "attempts": g.state.attempts, "edited": g.state.body is not None},
                                  ensure_ascii=False))
        return
    table = Table(title=f"{len(rows)} dead letter(s)", caption="origin: topic/partition/offset; ids: any unique prefix")
    table.add_column("id", no_wrap=True)
    for col in ("state", "source", "stage", "type", "reason", "copies", "origin", "at"):
        text_column(table, col)
    for letter, g in rows:
        r = letter.record
        origin = f"{r.get('topic') or '-'}/{r.get('partition') if r.get('partition') is not None else '-'}/" \
                 f"{r.get('offset') if r.get('offset') is not None else '-'}"
        reason = str(r.get("reason") or "")
        if g.state.state == "failed-again" and g.state.history:
            reason = str(g.state.history[-1].get("detail") or g.derived or reason)
        st = g.state.state + (" (edited)" if g.state.body is not None else "")
        table.add_row(letter.id[:12], st, str(r.get("source")), str(r.get("stage")), str(r.get("error_type")),
                      escape(reason[:80] + ("…" if len(reason) > 80 else "")), str(len(g.copies) or ""), origin,
                      _at(r.get("at")))
    console = Console()
    console.print(fit_table(table, console.width, ("stage", "origin", "copies")))


@app.command()
def show(dead_letter_id: str = typer.Argument(..., help="id or a unique prefix of it")) -> None:
    """The full record of one dead letter, its state and history, raw bytes as hex and UTF-8 preview."""
    from rich.console import Console

    from streams.ops.dlq import REDRIVE_HEADER, journal, raw_preview, read_dead_letters

    settings = Settings.from_env()
    every = read_dead_letters(settings)
    [letter] = _resolve(every, [dead_letter_id])
    copies = [x for x in every if x.id == letter.id]
    st = journal(settings).states().get(letter.id)
    rec = dict(letter.record)
    raw = bytes(rec.pop("raw") or b"")
    rec["at_utc"] = _at(rec.get("at"))
    rec["dlq_position"] = f"{letter.dlq_partition}@{letter.dlq_offset}"
    rec["redrive_header"] = letter.header(REDRIVE_HEADER)
    rec["copies"] = len(copies)
    rec["state"] = st.state if st else "new"
    rec["history"] = st.history if st else []
    console = Console()
    console.print_json(json.dumps(rec, ensure_ascii=False, default=str))
    if st is not None and st.body is not None:
        console.print(f"[bold]edited body[/bold] ({len(st.body)} bytes; re-driven instead of the original)")
        console.print(st.body[:2000].decode("utf-8", "replace"), markup=False, highlight=False, soft_wrap=True)
    preview = raw_preview(raw)
    console.print(f"[bold]raw[/bold] ({len(raw)} bytes, {rec.get('content_type') or 'unknown type'})")
    console.print(preview["hex"], markup=False, highlight=False, soft_wrap=True)
    console.print("[bold]utf-8 preview[/bold]")
    console.print(preview["utf8"], markup=False, highlight=False, soft_wrap=True)


@app.command()
def edit(dead_letter_id: str = typer.Argument(..., help="id or a unique prefix of it"),
         patch: Path = typer.Option(None, "--patch", exists=True, dir_okay=False,
                                    help="JSON merge patch (RFC 7386) applied to a JSON body or an Avro record"),
         body: Path = typer.Option(None, "--body", exists=True, dir_okay=False,
                                   help="a whole new body (XML, multipart …) replacing the letter's"),
         content_type: str = typer.Option(None, help="the content type to re-drive the body with")) -> None:
    """Correct a letter before re-driving it (the topic keeps the original; the journal the correction)."""
    from streams.ops.dlq import edit_letter, read_dead_letters
    from streams.ops.dlq_state import PatchError

    if (patch is None) == (body is None):
        raise typer.BadParameter("give exactly one of --patch FILE or --body FILE")
    settings = Settings.from_env()
    [letter] = _resolve(read_dead_letters(settings), [dead_letter_id])
    try:
        doc = json.loads(patch.read_text(encoding="utf-8")) if patch is not None else None
    except ValueError as exc:
        _fail(f"{patch}: not JSON ({exc})")
    try:
        new = edit_letter(settings, letter, patch=doc, body=body.read_bytes() if body is not None else None,
                          content_type=content_type)
    except PatchError as exc:
        _fail(f"{letter.id[:12]}: {exc}")
    typer.echo(f"{letter.id[:12]}: edited ({len(new)} bytes); re-drive it with: pingan dlq redrive --id {letter.id[:12]}")


@app.command()
def resolve(ids: list[str] = typer.Argument(..., help="ids or unique prefixes"),
            note: str = typer.Option("", help="why (kept in the letter's history)")) -> None:
    """Mark letters resolved by hand (bulk re-drives skip them)."""
    from streams.ops.dlq import mark_resolved, read_dead_letters

    settings = Settings.from_env()
    for letter in _resolve(read_dead_letters(settings), ids):
        mark_resolved(settings, letter, note)
        typer.echo(f"{letter.id[:12]}: resolved")


@app.command("redrive")
def redrive_(ids: list[str] = typer.Option(None, "--id", help="dead letter id or unique prefix (repeatable)"),
             source: str = typer.Option(None, help="with --stage: every letter of this source and stage"),
             stage: str = typer.Option(None, help="with --source"),
             include_resolved: bool = typer.Option(False, help="also letters already resolved"),
             dry_run: bool = typer.Option(False, "--dry-run", help="show what would be sent; send nothing")) -> None:
    """Re-publish raw bytes to their origin topic (or translate again), tagged pingan-redrive-of; record the state."""
    from streams.ops.dlq import read_dead_letters, redrive

    if not ids and not (source and stage):
        raise typer.BadParameter("give --id ID (repeatable) or both --source and --stage")
    settings = Settings.from_env()
    if ids:
        letters = _resolve(read_dead_letters(settings), ids)
    else:
        letters = read_dead_letters(settings, source=source, stage=stage)
    unique = {x.id: x for x in letters if not x.record.get("redrive_of")}  # one letter per id
    outcomes = redrive(settings, list(unique.values()), dry_run=dry_run, include_resolved=include_resolved)
    skipped = 0
    for o in outcomes:
        if o.action == "skipped" and o.detail == "already resolved" and not ids:
            skipped += 1
            continue
        extra = f": {o.detail[:160]}" if o.detail else ""
        typer.echo(f"{'[dry-run] ' if dry_run else ''}{o.dead_letter_id[:12]}: {o.action} "
                   f"{o.records} record(s) → {', '.join(o.topics) or '-'}{extra}")
    if skipped:
        typer.echo(f"{skipped} resolved letter(s) skipped (--include-resolved to re-drive them too)")
    if any(o.action == "failed-again" for o in outcomes):
        typer.echo("failed again: fix the cause (registry, profile, connector) or correct the letter with "
                   "`pingan dlq edit ID --patch FILE`, then re-drive it", err=True)
