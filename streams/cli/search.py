"""`pingan search …`: run the search API and page; initialise the index.

Contract: ``serve`` reads `Settings.from_env()`, credentials from ``--credentials`` (JSON/TOML)
or the settings ``search_credentials`` / ``search_tokens`` (``PINGAN_SEARCH_CREDENTIALS`` /
``PINGAN_SEARCH_TOKENS``), appends audit records to
``--audit-log`` (default ``<run_dir>/audit/search-audit.jsonl``) and listens on 127.0.0.1 by
default. ``init-index`` creates the template, ``…-incidents-v000001`` and the alias if missing.
``verify-audit`` checks the audit log's HMAC chain, its sequence numbers and its anchors on
``audit-anchors.v1`` (exit 1 if anything fails).

The audit key: ``PINGAN_AUDIT_KEY`` (``Settings.audit_key``). Without it only a server bound to a
loopback address starts (development, the demo, the tests), with the generated development key
``<run_dir>/secrets/audit.key`` and a loud warning; any other bind address refuses to start. A log
whose last record does not verify under the key is moved aside in development and refuses the
start otherwise.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

if TYPE_CHECKING:  # pragma: no cover
    from streams.settings import Settings

app = typer.Typer(help="事件检索 API 与页面 (search API and page)", no_args_is_help=True)
log = logging.getLogger("pingan.search")


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _audit_key(settings: "Settings", host: str | None) -> tuple[bytes, bool]:
    """(key, development?) — the configured key, else the development key for loopback hosts."""
    from streams.web.audit import dev_key

    if settings.audit_key:
        return settings.audit_key.encode("utf-8"), False
    if host is not None and not _loopback(host):
        typer.echo(f"PINGAN_AUDIT_KEY is not set: refusing to serve on {host} with an unkeyed audit log "
                   "(only a loopback server may use the development key)", err=True)
        raise typer.Exit(2)
    key = dev_key(settings.run_dir)
    log.warning("*** PINGAN_AUDIT_KEY is not set: the search audit log is keyed with the DEVELOPMENT key %s. "
                "Anyone who can read that file can rewrite the log undetected. Set PINGAN_AUDIT_KEY in any "
                "real deployment. ***", settings.run_dir / "secrets" / "audit.key")
    return key, True


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

    from connectors.elasticsearch.client import async_client
    from streams.settings import MissingSecrets, Settings
    from streams.web.audit import ANCHOR_TOPIC, AuditError, AuditLog, KafkaAnchors, rotate_aside
    from streams.web.auth import credentials_from_settings
    from streams.web.server import PathOnlyAccessLogger, make_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings.from_env()
    try:
        settings.require_secrets("search")
    except MissingSecrets as exc:
        typer.echo(f"pingan search serve: {exc}", err=True)
        raise typer.Exit(2) from None
    creds = credentials_from_settings(settings, credentials)
    key, development = _audit_key(settings, host)
    audit_path = audit_log or settings.run_dir / "audit" / "search-audit.jsonl"
    anchors = KafkaAnchors(settings.kafka_bootstrap, settings.topic(ANCHOR_TOPIC),
                           security=settings.kafka_client_options())
    audit = AuditLog(audit_path, key=key, anchors=anchors, anchor_every=settings.audit_anchor_every)
    try:
        audit.check_head()
    except AuditError as exc:
        if not development:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
        moved = rotate_aside(audit_path)
        log.warning("%s; development: moved it to %s and starting a new log", exc, moved)
        audit = AuditLog(audit_path, key=key, anchors=anchors, anchor_every=settings.audit_anchor_every)

    async def build() -> web.Application:
        es = async_client(settings)
        application = make_app(settings, es, creds, audit)

        async def close_es(_: web.Application) -> None:
            await es.close()

        async def close_audit(_: web.Application) -> None:
            await asyncio.get_running_loop().run_in_executor(None, audit.close)  # anchors the head

        application.on_cleanup.append(close_es)
        application.on_cleanup.append(close_audit)
        return application

    typer.echo(f"平安总线 事件检索: http://{host}:{port or settings.search_port}/  ({len(creds)} credentials)")
    web.run_app(build(), host=host, port=port or settings.search_port,
                access_log_class=PathOnlyAccessLogger, print=None)


@app.command("init-index")
def init_index() -> None:
    """Create the index template, the first versioned index and the alias (idempotent)."""
    from connectors.elasticsearch.admin import IndexNames, ensure_incident_index
    from connectors.elasticsearch.client import async_client
    from streams.settings import Settings

    settings = Settings.from_env()

    async def run() -> str:
        es = async_client(settings)
        try:
            return await ensure_incident_index(es, IndexNames(settings.es_index_prefix), settings.es_refresh_interval)
        finally:
            await es.close()

    index = asyncio.run(run())
    typer.echo(f"{IndexNames(settings.es_index_prefix).alias} → {index}")


@app.command("verify-audit")
def verify_audit(
    path: Optional[Path] = typer.Argument(None, help="audit JSONL (default: run_dir/audit/…)"),
    anchors_dir: Optional[Path] = typer.Option(None, help="read anchors from this directory (FileAnchors) "
                                                          "instead of the Kafka topic audit-anchors.v1"),
) -> None:
    """Verify the audit log: every line's HMAC and chain link, seq 1, 2, …, and every anchor of the log."""
    from streams.settings import Settings
    from streams.web.audit import ANCHOR_TOPIC, AuditError, FileAnchors, KafkaAnchors, verify_chain

    settings = Settings.from_env()
    target = path or settings.run_dir / "audit" / "search-audit.jsonl"
    key, _ = _audit_key(settings, None)
    source = FileAnchors(anchors_dir) if anchors_dir else KafkaAnchors(settings.kafka_bootstrap,
                                                                       settings.topic(ANCHOR_TOPIC),
                                                                       security=settings.kafka_client_options())
    try:
        check = verify_chain(target, key, source)
    except AuditError as exc:
        typer.echo(f"CANNOT VERIFY: {exc}", err=True)
        raise typer.Exit(1) from None
    if check.ok:
        typer.echo(f"OK: {check.lines} lines, HMAC chain intact, {check.anchors} anchors match"
                   + (f" ({check.reason})" if check.reason else ""))
        return
    where = f"at line {check.first_bad_line}" if check.first_bad_line else ""
    typer.echo(f"BROKEN {where}: {check.reason}", err=True)
    raise typer.Exit(1)
