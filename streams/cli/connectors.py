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
    sip_require_registration: bool = typer.Option(True, "--sip-require-registration/--sip-allow-unregistered",
                                                  help="refuse SIP MESSAGEs from devices not registered"),
    alarm110_url: Optional[str] = typer.Option(None, help="SQLAlchemy URL of the 110 desk database "
                                                          "(default: settings.alarm110_url; poller off when absent)"),
    alarm110_table: Optional[str] = typer.Option(None, help="the desk's table or view (default: the alarm110 "
                                                            "profile's `table`, else JJD)"),
    alarm110_interval: float = typer.Option(2.0),
    mediation_watch: Optional[Path] = typer.Option(None, help="folder to watch for mediation CSV/XLSX exports"),
    log_level: str = typer.Option("INFO"),
) -> None:
    """Start every configured receiver and poller; Ctrl-C/SIGTERM stops them cleanly."""
    from connectors.ingest.poller import Alarm110Poller, PollerConfig
    from connectors.ingest.sip_server import SipConfig, SipServer
    from connectors.ingest.importer import MediationImporter
    from connectors.ingest.receiver import HttpReceiver, IngestGateway, ReceiverConfig, registry_from_path
    from connectors.sources.auth import CredentialsError
    from streams.settings import MissingSecrets, Settings

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    try:
        settings.require_secrets("receivers", *(("sip",) if sip and sip_password is None else ()))
    except MissingSecrets as exc:
        typer.echo(f"pingan connectors run: {exc}", err=True)
        raise typer.Exit(2) from None
    cfg = ReceiverConfig(host=host, port=port, max_body_bytes=max_body_mb << 20, kafka_timeout_s=kafka_timeout,
                         spool_max_bytes=spool_max_mb << 20, spool_high_water=high_water,
                         isapi_check_peer=isapi_check_peer)
    registry = registry if registry is not None else settings.registry_path
    alarm110_url = alarm110_url if alarm110_url is not None else settings.alarm110_url
    try:
        gateway = IngestGateway.from_settings(settings, cfg, registry=registry_from_path(registry))
    except (MissingSecrets, CredentialsError) as exc:
        typer.echo(f"pingan connectors run: {exc}", err=True)
        raise typer.Exit(2) from None
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


@app.command("import")
def import_folder(
    folder: Path = typer.Argument(..., exists=True, file_okay=False, help="a folder of native files: any mix of the "
                                  "six feeds' pushes, captures and exports, simulator folders included"),
    feed: Optional[str] = typer.Option(None, help="the feed of every file (default: detected per file)"),
    registry: Optional[Path] = typer.Option(None, help="device registry CSV (default: settings.registry_path; a "
                                                       "simulator folder's own registry.csv when neither is set)"),
    profile_dir: Optional[Path] = typer.Option(None, help="profile folder (default: settings.profile_dir)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="translate and count; publish nothing"),
) -> None:
    """Publish a folder of native files through the receivers' translate path: records to the raw topics,
    rejections to the dead-letter topic; a progress bar and a summary per source."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from bench.tables import number_column, text_column
    from connectors.ingest.files import Delivery
    from connectors.ingest.folder import Skipped, iter_folder, plan_folder
    from connectors.ingest.publish import PublishReport, publish_deliveries
    from connectors.sources.devices import DeviceRegistry
    from connectors.sources.registry import feeds
    from streams.settings import Settings

    settings = Settings.from_env()
    if feed is not None and feed not in feeds():
        raise typer.BadParameter(f"unknown feed {feed!r} (one of {', '.join(feeds())})", param_hint="--feed")
    registry = registry if registry is not None else settings.registry_path
    devices = DeviceRegistry.from_csv(registry) if registry is not None else None
    plan = plan_folder(folder)
    if not plan.units:
        typer.echo(f"{folder}: no native files found", err=True)
        raise typer.Exit(1)
    skipped: list[Skipped] = []
    console = Console(stderr=True)
    bar = Progress(TextColumn("[bold]import"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=console)
    task = bar.add_task("import", total=plan.units)

    def deliveries():  # noqa: ANN202 - Iterator[Delivery]
        for item in iter_folder(plan, devices, profile_dir=profile_dir if profile_dir is not None else
                                settings.profile_dir, feed=feed, timezone=settings.timezone,
                                progress=lambda n: bar.advance(task, n)):
            if isinstance(item, Skipped):
                skipped.append(item)
            else:
                yield item

    with bar:
        if dry_run:
            report = PublishReport()
            for d in deliveries():
                assert isinstance(d, Delivery)
                report.deliveries_by_feed[d.feed] += 1
                report.accepted_by_feed[d.feed] += len(d.result.records)
                report.dead_by_feed[d.feed] += len(d.result.rejected)
        else:
            report = publish_deliveries(settings, deliveries())
    table = Table(title=f"{folder}: {len(plan.simulator_folders)} simulator folder(s), {len(plan.files)} file(s)"
                  + (" — dry run, nothing published" if dry_run else ""))
    text_column(table, "source")
    for col in ("deliveries", "accepted", "dead-lettered"):
        number_column(table, col)
    for name in sorted(report.deliveries_by_feed):
        table.add_row(name, str(report.deliveries_by_feed[name]), str(report.accepted_by_feed[name]),
                      str(report.dead_by_feed[name]))
    table.add_row("all", str(sum(report.deliveries_by_feed.values())), str(sum(report.accepted_by_feed.values())),
                  str(sum(report.dead_by_feed.values())), style="bold")
    out = Console()
    out.print(table)
    for s in skipped:
        out.print(f"skipped {escape(s.path)}: {escape(s.reason)}")
    if report.dead_letters and not dry_run:
        out.print("dead letters: pingan dlq list --stage translate (then fix and pingan dlq redrive)")


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
    table: Optional[str] = typer.Option(None, help="table or view (default: the alarm110 profile's `table`, else JJD)"),
    once: bool = typer.Option(False, help="poll until caught up, then exit"),
) -> None:
    """Run only the 110 poller (``--once``: catch up and exit)."""
    from connectors.ingest.poller import Alarm110Poller, PollerConfig, PollerSetupError
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

    try:
        asyncio.run(go())
    except PollerSetupError as exc:  # a configuration mistake: one line, not a traceback
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _shown(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path


_HOW = {"alias": "profile alias", "value": "same values", "unmapped": "UNMAPPED", "ignored": "ignored (profile)",
        "unused": "values not in records", "empty": "always empty",
        "fallback": "if empty:"}


@app.command("inspect")
def inspect_sample(
    path: Optional[Path] = typer.Argument(None, exists=True, help="sample file, folder of samples, or simulator folder"),
    feed: Optional[str] = typer.Option(None, help="the feed (default: detected from each file)"),
    profile_dir: Optional[Path] = typer.Option(None, help="profile folder (default: settings.profile_dir)"),
    registry: Optional[Path] = typer.Option(None, help="device registry CSV (default: settings.registry_path)"),
    url: Optional[str] = typer.Option(None, help="SQLAlchemy URL of a database to read a table or view from"),
    table: Optional[str] = typer.Option(None, help="table or view to read with --url (default: the profile's "
                                                   "table, else JJD)"),
    limit: int = typer.Option(1000, help="rows to read with --url"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """Run a sample through its feed's translate and normalize (nothing is published) and report
    field mappings, unknown codes, parse failures, odd coordinates and times, and the accept share."""
    import json
    import secrets

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from bench.tables import fit_table, number_column, text_column
    from connectors.ingest.inspect import InspectError, inspect_path, inspect_rows, read_database
    from connectors.sources.devices import DeviceRegistry
    from connectors.sources.profile import ProfileError, load_profile
    from streams.settings import Settings

    settings = Settings.from_env()
    registry = registry if registry is not None else settings.registry_path
    common: dict[str, Any] = {
        "devices": DeviceRegistry.from_csv(registry) if registry is not None else None,
        "profile_dir": profile_dir if profile_dir is not None else settings.profile_dir,
        # onboarding only: without the deployment's secret the sample's person keys use a throwaway one
        "secret": settings.person_key() if settings.person_key_secret else secrets.token_bytes(32),
        "timezone": settings.timezone}
    try:
        if url:
            table = table or str(load_profile(feed or "alarm110", common["profile_dir"]).get("table") or "JJD")
            report = inspect_rows(read_database(url, table, limit), feed or "alarm110", target=f"{table} at {url}",
                                  detected="--feed" if feed else "--url (the 110 desk is the feed read from a database)",
                                  **common)
        elif path is not None:
            report = inspect_path(path, feed=feed, **common)
        else:
            raise typer.BadParameter("give a sample PATH or --url with --table", param_hint="PATH")
    except (InspectError, ProfileError, KeyError) as exc:
        typer.echo(f"inspect: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(report.to_json(), ensure_ascii=False, indent=1))
        return
    console = Console()

    def show(title: str, headers: list[tuple[str, bool]], rows: list[list[Any]], drop: tuple[str, ...] = ()) -> None:
        if not rows:
            return
        t = Table(title=title, title_justify="left")
        for header, numeric in headers:
            (number_column if numeric else text_column)(t, header)
        for row in rows:
            t.add_row(*("" if v is None else escape(str(v)) for v in row))  # values are data, not markup
        console.print(fit_table(t, console.width, drop))

    for f in report.feeds:
        pct = lambda n: f"{n} ({f.share(n):.0%})"  # noqa: E731
        console.print(f"[bold]{f.feed}[/bold]: feed from {escape(f.detected)}; {len(f.inputs)} input(s), "
                      f"{f.deliveries} deliveries" + (f", {f.dropped} dropped (heartbeats)" if f.dropped else ""))
        console.print(f"{f.records} records: {pct(f.accepted)} accepted, {pct(f.warned)} with warnings, "
                      f"{pct(f.dead_lettered)} dead-lettered")
        console.print("profile: " + escape(", ".join(_shown(p) for p in f.profile_files or ["built-in only"])))
        show("Native fields", [("native field", False), ("rows", True), ("maps to", False), ("how", False)],
             [[m.native, m.records, m.maps_to or "—", _HOW.get(m.how, m.how) + (f" {m.after}" if m.after else "")]
              for m in f.fields])
        show("Unknown codes", [("field", False), ("reason", False), ("count", True), ("example", False)],
             [[c.field, c.reason, c.count, c.example] for c in f.unknown_codes], ("example",))
        show("Values that failed to parse", [("field", False), ("reason", False), ("count", True)],
             [[c.field, c.reason, c.count] for c in f.parse_failures])
        s, w, n, e = report.bounds
        show(f"Coordinates outside the county ({s:.2f}..{n:.2f}N {w:.2f}..{e:.2f}E)",
             [("field", False), ("count", True), ("example", False)],
             [[c.field, c.count, c.example] for c in f.out_of_bounds])
        show("Times that look wrong", [("reason", False), ("count", True)], [[c.reason, c.count] for c in f.times])
        show("Dead letters", [("error", False), ("reason", False), ("count", True), ("input", False)],
             [[c.field, c.reason, c.count, c.example] for c in f.dead_letters], ("input",))
        if any(m.how in ("unmapped", "unused") for m in f.fields):
            console.print(escape(f"hint: name a column under [aliases] (or ignore = [...]) in PROFILE_DIR/{f.feed}.toml;"
                                 f" the record fields are the keys of [aliases] in the built-in profile"))
        console.print()
    for why in report.skipped:
        console.print(f"skipped: {escape(why)}")
    console.print("Nothing was published." if report.feeds else "No records found.")
