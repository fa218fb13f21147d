"""`pingan connectors …`: run the receivers and pollers, or import one mediation export.

This is the edge: ``PINGAN_*`` variables are read only through `Settings.from_env` (registry path,
SIP port and password, 110 desk URL, timezone …); an option given on the command line overrides its
setting explicitly, and everything is passed down.
"""
from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Any, Optional

import typer

app = typer.Typer(help="Source connectors: HTTP/SIP receivers, the 110 poller, the mediation importer.",
                  no_args_is_help=True)


@app.callback()
def _main() -> None:
    """Source connectors."""


async def _serve(components: list[Any], gateway: Any) -> None:
    from connectors.ingest.base import run_components

    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, main.cancel)
    try:
        await run_components(components)
    except asyncio.CancelledError:
        logging.getLogger(__name__).info("stopping connectors")
    finally:
        await gateway.close()


@app.command()
def run(
    host: str = typer.Option("127.0.0.1", help="HTTP listen address"),
    port: Optional[int] = typer.Option(None, help="HTTP port (default: settings.receiver_port)"),
    registry: Optional[Path] = typer.Option(None, help="device registry CSV (default: settings.registry_path)"),
    spool_max_mb: int = typer.Option(512, help="local spool bound (MiB)"),
    high_water: float = typer.Option(0.5, help="spool fill ratio above which retrying senders get 429"),
    kafka_timeout: float = typer.Option(2.0, help="seconds to wait for Kafka acks before spooling"),
    max_body_mb: int = typer.Option(8, help="largest accepted request body (MiB)"),
    isapi_check_peer: bool = typer.Option(False, help="ISAPI/door devices must post from their registered IP"),
    sip: bool = typer.Option(True, help="run the GB/T 28181 SIP listener"),
    sip_host: str = typer.Option("127.0.0.1"),
    sip_port: Optional[int] = typer.Option(None, help="SIP port (default: settings.sip_port)"),
    sip_platform_id: str = typer.Option("51322100002000000001"),
    sip_realm: str = typer.Option("5132210000"),
    sip_password: Optional[str] = typer.Option(None, help="SIP digest password (default: settings.sip_password; "
                                                          "prefer PINGAN_SIP_PASSWORD over a visible argument)"),
    sip_require_registration: bool = typer.Option(False),
    alarm110_url: Optional[str] = typer.Option(None, help="SQLAlchemy URL of the 110 desk database "
                                                          "(default: settings.alarm110_url; poller off when absent)"),
    alarm110_table: str = typer.Option("JJD"),
    alarm110_interval: float = typer.Option(2.0),
    mediation_watch: Optional[Path] = typer.Option(None, help="folder to watch for mediation CSV/XLSX exports"),
    log_level: str = typer.Option("INFO"),
) -> None:
    """Start every configured receiver and poller; Ctrl-C/SIGTERM stops them cleanly."""
    from connectors.ingest.poller import Alarm110Poller, PollerConfig
    from connectors.ingest.sip_server import SipConfig, SipServer
    from connectors.ingest.importer import MediationImporter
    from connectors.ingest.receiver import HttpReceiver, IngestGateway, ReceiverConfig, registry_from_path
    from streams.settings import Settings

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    cfg = ReceiverConfig(host=host, port=port, max_body_bytes=max_body_mb << 20, kafka_timeout_s=kafka_timeout,
                         spool_max_bytes=spool_max_mb << 20, spool_high_water=high_water,
                         isapi_check_peer=isapi_check_peer)
    registry = registry if registry is not None else settings.registry_path
    alarm110_url = alarm110_url if alarm110_url is not None else settings.alarm110_url
    gateway = IngestGateway.from_settings(settings, cfg, registry=registry_from_path(registry))
    components: list[Any] = [gateway, HttpReceiver(gateway)]
    if sip:
        components.append(SipServer(gateway, SipConfig.from_settings(
            settings, host=sip_host, port=sip_port, platform_id=sip_platform_id, realm=sip_realm,
            password=sip_password, require_registration=sip_require_registration)))
    if alarm110_url:
        components.append(Alarm110Poller(settings, gateway.producer, PollerConfig(
            url=alarm110_url, table=alarm110_table, interval_s=alarm110_interval)))
    if mediation_watch is not None:
        components.append(MediationImporter(settings, gateway.producer, watch_dir=mediation_watch))
    asyncio.run(_serve(components, gateway))


@app.command("import-mediation")
def import_mediation(files: list[Path] = typer.Argument(..., exists=True, dir_okay=False)) -> None:
    """Import mediation CSV/XLSX exports once (idempotent by case number) and print what was sent."""
    from connectors.ingest.importer import MediationImporter
    from connectors.ingest.producer import RecordProducer
    from streams.settings import Settings

    settings = Settings.from_env()

    async def go() -> None:
        producer = RecordProducer.from_settings(settings)
        imp = MediationImporter(settings, producer)
        await imp.setup()
        try:
            for path in files:
                report = await imp.import_file(path)
                typer.echo(f"{path.name}: {report.cases} case(s), {report.sent} sent, {report.unchanged} unchanged, "
                           f"{len(report.rejected)} rejected")
                for reason in report.rejected:
                    typer.echo(f"  rejected: {reason}", err=True)
        finally:
            await producer.stop()

    asyncio.run(go())


@app.command("import-alarm110")
def import_alarm110(files: list[Path] = typer.Argument(..., exists=True, dir_okay=False)) -> None:
    """Import 110 call-sheet CSV/XLSX exports once (mapped with the alarm110 profile) and print what was sent."""
    from connectors.ingest.importer import Alarm110Importer
    from connectors.ingest.producer import RecordProducer
    from streams.settings import Settings

    settings = Settings.from_env()

    async def go() -> None:
        producer = RecordProducer.from_settings(settings)
        imp = Alarm110Importer(settings, producer)
        try:
            for path in files:
                report = await imp.import_file(path)
                typer.echo(f"{path.name}: {report.rows} row(s), {report.sent} sent ({report.flagged} with quality "
                           f"flags), {len(report.rejected)} rejected → {report.dead_letters} dead letter(s)")
                for reason in report.rejected:
                    typer.echo(f"  rejected: {reason}", err=True)
                for column, count in sorted(report.unmapped.items()):
                    typer.echo(f"  unmapped column {column} ({count} row(s)): add it to an alias or to ignore "
                               f"in alarm110.toml", err=True)
        finally:
            await producer.stop()

    asyncio.run(go())


@app.command("poll-alarm110")
def poll_alarm110(
    url: Optional[str] = typer.Option(None, help="SQLAlchemy URL (default: settings.alarm110_url)"),
    table: str = typer.Option("JJD"),
    once: bool = typer.Option(False, help="poll until caught up, then exit"),
) -> None:
    """Run only the 110 poller (``--once``: catch up and exit)."""
    from connectors.ingest.poller import Alarm110Poller, PollerConfig
    from connectors.ingest.producer import RecordProducer
    from streams.settings import Settings

    settings = Settings.from_env()
    url = url if url is not None else settings.alarm110_url
    if not url:
        raise typer.BadParameter("no 110 desk database: set PINGAN_ALARM110_URL or pass --url", param_hint="--url")

    async def go() -> None:
        producer = RecordProducer.from_settings(settings)
        poller = Alarm110Poller(settings, producer, PollerConfig(url=url, table=table))
        await poller.setup()
        try:
            if once:
                while await poller.poll_once():
                    pass
                typer.echo(f"caught up: {poller.stats}")
            else:
                await poller.run()
        finally:
            await poller.stop()
            await producer.stop()

    asyncio.run(go())
