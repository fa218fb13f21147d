"""`pingan search …`: run the search API and page; initialise the index.

Contract: ``serve`` reads `Settings.from_env()`, credentials from ``--credentials`` (JSON/TOML)
or the settings ``search_credentials`` / ``search_tokens`` (``PINGAN_SEARCH_CREDENTIALS`` /
``PINGAN_SEARCH_TOKENS``), appends audit records to
``--audit-log`` (default ``<run_dir>/audit/search-audit.jsonl``) and listens on 127.0.0.1 by
default. ``init-index`` creates the template, ``…-incidents-v000001`` and the alias if missing.
``verify-audit`` checks the audit hash chain (exit 1 if broken).
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="事件检索 API 与页面 (search API and page)", no_args_is_help=True)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="bind address"),
    port: Optional[int] = typer.Option(None, help="port (default: settings.search_port)"),
    credentials: Optional[Path] = typer.Option(None, help="JSON/TOML file: token → {user, admin_code} "
                                                           "(default: settings.search_credentials, else search_tokens)"),
    audit_log: Optional[Path] = typer.Option(None, help="audit JSONL path"),
) -> None:
    """Serve the search API and page until interrupted."""
    from aiohttp import web
    from elasticsearch import AsyncElasticsearch

    from streams.settings import Settings
    from streams.web.audit import AuditLog
    from streams.web.auth import credentials_from_settings
    from streams.web.server import PathOnlyAccessLogger, make_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings.from_env()
    creds = credentials_from_settings(settings, credentials)
    audit = AuditLog(audit_log or settings.run_dir / "audit" / "search-audit.jsonl")

    async def build() -> web.Application:
        es = AsyncElasticsearch([settings.es_url])
        application = make_app(settings, es, creds, audit)

        async def close_es(_: web.Application) -> None:
            await es.close()

        application.on_cleanup.append(close_es)
        return application

    typer.echo(f"平安总线 事件检索: http://{host}:{port or settings.search_port}/  ({len(creds)} credentials)")
    web.run_app(build(), host=host, port=port or settings.search_port,
                access_log_class=PathOnlyAccessLogger, print=None)


@app.command("init-index")
def init_index() -> None:
    """Create the index template, the first versioned index and the alias (idempotent)."""
    from elasticsearch import AsyncElasticsearch

    from connectors.elasticsearch.admin import IndexNames, ensure_incident_index
    from streams.settings import Settings

    settings = Settings.from_env()

    async def run() -> str:
        es = AsyncElasticsearch([settings.es_url])
        try:
            return await ensure_incident_index(es, IndexNames(settings.es_index_prefix), settings.es_refresh_interval)
        finally:
            await es.close()

    index = asyncio.run(run())
    typer.echo(f"{IndexNames(settings.es_index_prefix).alias} → {index}")


@app.command("verify-audit")
def verify_audit(path: Optional[Path] = typer.Argument(None, help="audit JSONL (default: run_dir/audit/…)")) -> None:
    """Verify the audit log's hash chain."""
    from streams.settings import Settings
    from streams.web.audit import verify_chain

    target = path or Settings.from_env().run_dir / "audit" / "search-audit.jsonl"
    check = verify_chain(target)
    if check.ok:
        typer.echo(f"OK: {check.lines} lines, chain intact")
        return
    typer.echo(f"BROKEN at line {check.first_bad_line}: {check.reason}", err=True)
    raise typer.Exit(1)
