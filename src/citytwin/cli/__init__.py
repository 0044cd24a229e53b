"""``citytwin`` — the command line. It owns the terminal: progress bars, tables, exit codes.

Exit codes: 0 success (rows may still be quarantined: see the summary), 1 nothing could be read,
2 bad usage or configuration. Input problems never print a traceback; ``--debug`` shows them.
"""

from __future__ import annotations

import csv
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from citytwin import __version__
from citytwin.cli._shared import (
    StoreOption,
    cli_state,
    console,
    domain_errors,
    err_console,
    progress_bar,
    settings_for,
    summary_table,
)
from citytwin.cli.analyze import analyze_app
from citytwin.cli.audit import audit_app
from citytwin.cli.control import control_app
from citytwin.cli.demo import demo
from citytwin.cli.lake import lake_app
from citytwin.cli.linkage import linkage
from citytwin.cli.scenario import scenario_app
from citytwin.cli.simulate import simulate_app
from citytwin.config import Settings, redact
from citytwin.errors import CitytwinError

if TYPE_CHECKING:  # heavy imports stay out of `citytwin --help`
    from citytwin.ingest.pipeline import IngestReport
    from citytwin.mqtt.ingest import MqttSummary
    from citytwin.space.districts import Level

app = typer.Typer(
    name="citytwin",
    help="citytwin — an urban digital twin: ingest city feeds, keep them in a standard model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
quarantine_app = typer.Typer(
    help="Inspect records that could not be ingested.", no_args_is_help=True
)
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(analyze_app, name="analyze")
app.add_typer(simulate_app, name="simulate")
app.add_typer(scenario_app, name="scenario")
app.add_typer(audit_app, name="audit")
app.add_typer(control_app, name="control")
app.add_typer(lake_app, name="lake")
app.command("linkage")(linkage)
app.command("demo")(demo)


def _version(value: bool) -> None:
    if value:
        console.print(f"citytwin {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """citytwin — ingest city feeds into a standard (OGC SensorThings) model."""
    cli_state["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


MQTT_FEED = "mqtt"
DEFAULT_BROKER_URL = "mqtt://127.0.0.1:1883"
MQTT_PANEL = "MQTT (feed mqtt only)"


@app.command()
def ingest(
    feed: Annotated[
        str,
        typer.Argument(
            help="Feed: sdot, kma, kma-stations, noise or generic (files), or mqtt (a live "
            "broker: see --broker, --topic)."
        ),
    ],
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Files or folders to ingest (not for mqtt).", show_default=False),
    ] = None,
    store: StoreOption = None,
    registry: Annotated[
        Path | None,
        typer.Option(help="S-DoT sensor registry CSV (시리얼,위도,경도) to place sensors."),
    ] = None,
    stations: Annotated[
        Path | None,
        typer.Option(
            help="KMA station registry CSV (STN_ID,STN_KO,…,LON,LAT,HT) to place stations."
        ),
    ] = None,
    mapping: Annotated[
        str | None,
        typer.Option(help="generic feed: mapping YAML file or preset name (airkorea, topis)."),
    ] = None,
    broker: Annotated[
        str | None,
        typer.Option(
            help=f"Broker URL mqtt://host:port (default: CITYTWIN_MQTT_URL, else "
            f"{DEFAULT_BROKER_URL}).",
            rich_help_panel=MQTT_PANEL,
            show_default=False,
        ),
    ] = None,
    topic: Annotated[
        list[str] | None,
        typer.Option(
            help="Topic filter to subscribe to at QoS 1; repeat for several (default: devices/#).",
            rich_help_panel=MQTT_PANEL,
            show_default=False,
        ),
    ] = None,
    client_id: Annotated[
        str | None,
        typer.Option(
            help="Client id of the persistent session: the broker queues messages for it "
            "while it is away (default: citytwin-ingest).",
            rich_help_panel=MQTT_PANEL,
            show_default=False,
        ),
    ] = None,
    max_messages: Annotated[
        int | None,
        typer.Option(min=1, help="End after this many messages.", rich_help_panel=MQTT_PANEL),
    ] = None,
    idle_exit: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="End after this many seconds without a message.",
            rich_help_panel=MQTT_PANEL,
        ),
    ] = None,
) -> None:
    """Read feed files (or an MQTT broker), check their quality and store them; print a summary.

    Rows that cannot be parsed are quarantined with file, line and reason (see `citytwin
    quarantine list`); QC flags are stored with the observations, nothing is dropped.

    `citytwin ingest mqtt --broker mqtt://127.0.0.1:1883 --topic 'devices/#'` subscribes with a
    persistent session and acknowledges each message only once it is stored; it runs until
    Ctrl-C (or --max-messages / --idle-exit). Message format: docs/mqtt.md.
    """
    mqtt_options = {
        "--broker": broker,
        "--topic": topic,
        "--client-id": client_id,
        "--max-messages": max_messages,
        "--idle-exit": idle_exit,
    }
    if feed == MQTT_FEED:
        if paths:
            raise typer.BadParameter(
                "the mqtt feed reads a broker, not files; drop the paths", param_hint="PATHS"
            )
        settings = settings_for(store)
        _ingest_mqtt(
            settings,
            broker or settings.mqtt_url or DEFAULT_BROKER_URL,
            topic or ["devices/#"],
            client_id=client_id,
            max_messages=max_messages,
            idle_exit=idle_exit,
        )
        return
    given = [name for name, value in mqtt_options.items() if value is not None]
    if given:
        raise typer.BadParameter(
            f"{', '.join(given)} only apply to the mqtt feed", param_hint=given[0]
        )
    if not paths:
        raise typer.BadParameter(f"the {feed} feed needs files or folders", param_hint="PATHS")
    if feed == "generic" and not mapping:
        raise typer.BadParameter(
            "the generic feed needs --mapping FILE.yaml or a preset (airkorea, topis)",
            param_hint="--mapping",
        )
    options = {
        k: str(v)
        for k, v in {"registry": registry, "stations": stations, "mapping": mapping}.items()
        if v
    }
    report = _ingest_with_progress(feed, [str(p) for p in paths], settings_for(store), options)
    if report.nothing_read:
        err_console.print("[red]nothing could be read[/red] from the given input")
        raise typer.Exit(1)


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event SIGINT and SIGTERM set (instead of raising), restored afterwards."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in signals}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _ingest_mqtt(
    settings: Settings,
    broker: str,
    topics: list[str],
    *,
    client_id: str | None,
    max_messages: int | None,
    idle_exit: float | None,
) -> None:
    """Run the durable subscriber until a signal, --max-messages or --idle-exit; summarise."""
    from citytwin.mqtt.broker import parse_broker_url
    from citytwin.mqtt.ingest import DEFAULT_CLIENT_ID, MqttIngest, MqttOptions
    from citytwin.store import open_store

    options = MqttOptions(
        client_id=client_id or DEFAULT_CLIENT_ID, max_messages=max_messages, idle_exit_s=idle_exit
    )
    with domain_errors():
        parse_broker_url(broker)
        with open_store(settings.store_url) as opened, _stop_on_signals() as stop:
            err_console.print(
                f"ingesting {', '.join(topics)} from {broker} as {options.client_id!r} into "
                f"{redact(settings.store_url)}; Ctrl-C to stop"
            )
            summary = MqttIngest(opened, broker, topics, options=options).run(stop)
    _print_mqtt_summary(summary)


def _print_mqtt_summary(summary: MqttSummary) -> None:
    counts = summary.COUNTS
    table = summary_table("mqtt ingest summary", [*counts, "msg/s"], right=(*counts, "msg/s"))
    rate = summary.received / summary.elapsed_s if summary.elapsed_s else 0.0
    table.add_row(*(f"{getattr(summary, c):,}" for c in counts), f"{rate:,.0f}")
    console.print(table)
    console.print(
        "[dim]received/acknowledged: messages; stored/duplicates/flagged: observations; "
        "quarantined: rejected messages (see `citytwin quarantine list --feed mqtt`)[/dim]"
    )
    for note in summary.notes:
        console.print(f"[yellow]note[/yellow] {note}")


def _ingest_with_progress(
    feed: str, files: list[str], settings: Settings, options: dict[str, str]
) -> IngestReport:
    """Run a feed over files behind a progress bar (bytes), then print the summary table."""
    from citytwin.ingest.runner import ingest_paths

    with progress_bar() as progress:
        task = progress.add_task(f"ingest {feed}", total=None)

        def advance(done: int, total: int, name: str) -> None:
            progress.update(task, completed=done, total=total, description=f"{feed}: {name}")

        with domain_errors():  # a store still unreachable after the retries: one red line
            report = ingest_paths(
                feed, files, settings, options=options, on_progress=advance,
                debug=cli_state["debug"],
            )  # fmt: skip
    _print_report(report)
    return report


def _print_report(report: IngestReport) -> None:
    counts = ("files", "rows", "read", "stored", "duplicates", "flagged", "quarantined")
    table = summary_table("ingest summary", ["feed", *counts], right=counts)
    for summary in report.feeds.values():
        table.add_row(
            summary.feed,
            *(
                f"{getattr(summary, c):,}"
                for c in ("files", "rows", "read", "stored", "duplicates", "flagged", "quarantined")
            ),
        )
    console.print(table)
    console.print(
        "[dim]rows: source rows; read/stored/duplicates/flagged: observations; "
        "quarantined: rejected rows (see `citytwin quarantine list`)[/dim]"
    )
    for summary in report.feeds.values():
        for note in summary.notes:
            console.print(f"[yellow]note[/yellow] {note}")
    for source, reason in report.failed:
        console.print(f"[red]could not read[/red] {source}: {reason}")


@app.command()
def stats(store: StoreOption = None) -> None:
    """Observation counts per feed and observed property, time span, quarantine reasons."""
    from citytwin.store import open_store

    with open_store(settings_for(store).store_url) as opened:
        rows = opened.stats()
        quarantined = opened.quarantined()
    table = summary_table(
        "observations",
        ["feed", "property", "datastreams", "observations", "flagged", "first (UTC)", "last (UTC)"],
        right=("datastreams", "observations", "flagged"),
    )
    for row in rows:
        table.add_row(
            row.feed,
            row.observed_property,
            f"{row.datastreams:,}",
            f"{row.observations:,}",
            f"{row.flagged:,}",
            f"{row.first:%Y-%m-%d %H:%M}" if row.first else "",
            f"{row.last:%Y-%m-%d %H:%M}" if row.last else "",
        )
    console.print(table)
    reasons: dict[tuple[str, str], int] = {}
    for record in quarantined:
        key = (record.feed, record.reason.split(":")[0][:80])
        reasons[key] = reasons.get(key, 0) + 1
    q = summary_table(
        f"quarantine ({len(quarantined):,} records)",
        ["feed", "reason", "records"],
        right=("records",),
    )
    for (feed, reason), count in sorted(reasons.items(), key=lambda kv: -kv[1]):
        q.add_row(feed, reason, f"{count:,}")
    console.print(q)


@quarantine_app.command("list")
def quarantine_list(
    store: StoreOption = None,
    feed: Annotated[str | None, typer.Option(help="Only this feed.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many records.")] = 50,
) -> None:
    """Show quarantined records: source, line, reason and raw text."""
    from citytwin.store import open_store

    with open_store(settings_for(store).store_url) as opened:
        records = opened.quarantined(feed=feed, limit=limit)
    table = summary_table(
        f"quarantined records (first {limit})", ["feed", "source", "line", "reason", "raw"]
    )
    for r in records:
        table.add_row(
            r.feed, r.source, "" if r.line is None else str(r.line), r.reason, r.raw[:120]
        )
    console.print(table)


@quarantine_app.command("export")
def quarantine_export(
    out: Annotated[Path, typer.Argument(help="CSV file to write.")],
    store: StoreOption = None,
    feed: Annotated[str | None, typer.Option(help="Only this feed.")] = None,
) -> None:
    """Write quarantined records to CSV (UTF-8 with BOM, opens cleanly in Excel)."""
    from citytwin.store import open_store

    with open_store(settings_for(store).store_url) as opened:
        records = opened.quarantined(feed=feed)
    with out.open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow(["feed", "source", "line", "reason", "raw", "recorded_at"])
        for r in records:
            writer.writerow([r.feed, r.source, r.line, r.reason, r.raw, r.recorded_at.isoformat()])
    console.print(f"wrote {len(records):,} records to {out}")


IMPORT_KINDS = ("boundaries", "buildings", "cityjson", "network", "osm")


@app.command("import")
def import_(
    kind: Annotated[
        str,
        typer.Argument(
            help="boundaries (gu/dong: GeoJSON, TopoJSON, Shapefile, GeoPackage), buildings "
            "(OSM .osm/.osm.pbf or footprints with height/floors), cityjson (LoD1/LoD2 "
            "buildings), network (SUMO .net.xml or OSM roads) or osm (buildings and roads)."
        ),
    ],
    path: Annotated[Path, typer.Argument(help="The file to import.")],
    store: StoreOption = None,
    level: Annotated[
        str | None,
        typer.Option(help="boundaries: gu or dong (default: from the codes: 5 digits = gu)."),
    ] = None,
    source_crs: Annotated[
        str | None,
        typer.Option(help="boundaries: the file's CRS when it does not say (e.g. EPSG:5179)."),
    ] = None,
) -> None:
    """Import city layers into the store, in the city CRS; re-importing replaces by key."""
    from citytwin.space.city import (
        import_buildings,
        import_cityjson,
        import_districts,
        import_network,
    )
    from citytwin.store import open_store

    if kind not in IMPORT_KINDS:
        raise typer.BadParameter(
            f"{kind!r}; expected one of: {', '.join(IMPORT_KINDS)}", param_hint="KIND"
        )
    if level not in (None, "gu", "dong"):
        raise typer.BadParameter(f"{level!r}; expected gu or dong", param_hint="--level")
    settings = settings_for(store)
    with domain_errors(), open_store(settings.store_url) as opened:
        if kind == "boundaries":
            reports = [
                import_districts(
                    opened,
                    path,
                    level=cast("Level | None", level),
                    crs=settings.city_crs,
                    source_crs=source_crs,
                )
            ]
        elif kind == "buildings":
            reports = [import_buildings(opened, path, crs=settings.city_crs)]
        elif kind == "cityjson":
            reports = [import_cityjson(opened, path, crs=settings.city_crs, source_crs=source_crs)]
        elif kind == "osm":  # an OSM extract: its buildings and its road graph
            reports = [
                import_buildings(opened, path, crs=settings.city_crs),
                *import_network(opened, path, crs=settings.city_crs),
            ]
        else:
            reports = import_network(opened, path, crs=settings.city_crs)
    table = summary_table(
        f"import {kind}",
        ["layer", "read", "inserted", "replaced", "problems"],
        right=("read", "inserted", "replaced", "problems"),
    )
    for r in reports:
        table.add_row(
            r.layer, *(f"{n:,}" for n in (r.read, r.inserted, r.replaced, len(r.problems)))
        )
    console.print(table)
    for r in reports:
        for note in r.notes:
            console.print(f"[yellow]note[/yellow] {note}")
        for key, reason in r.problems[:50]:
            console.print(f"[red]problem[/red] {key}: {reason}")


@app.command()
def export(
    format: Annotated[
        str,
        typer.Argument(
            help="geojson (WGS84), gpkg (city CRS), cityjson (CityJSON 2.0 LoD1 solids) or 3dtiles "
            "(3D Tiles 1.1: OUT is a folder for tileset.json and .glb tiles)."
        ),
    ],
    out: Annotated[Path, typer.Argument(help="Output file (folder for 3dtiles).")],
    store: StoreOption = None,
    layer: Annotated[
        str, typer.Option(help="Layer: districts, buildings, road_nodes or road_links.")
    ] = "buildings",
) -> None:
    """Export a city layer from the store."""
    from citytwin.space.city import EXPORT_FORMATS, export_layer
    from citytwin.store import open_store

    if format not in EXPORT_FORMATS:
        raise typer.BadParameter(
            f"{format!r}; expected one of {', '.join(EXPORT_FORMATS)}", param_hint="FORMAT"
        )
    settings = settings_for(store)
    with domain_errors(), open_store(settings.store_url) as opened:
        if layer not in opened.layers():
            known = ", ".join(opened.layers()) or "none yet (citytwin import …)"
            raise typer.BadParameter(f"{layer!r}; the store has: {known}", param_hint="--layer")
        try:
            written, skipped = export_layer(
                opened, layer, out, format=format, crs=settings.city_crs
            )
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="FORMAT/--layer") from None
    console.print(f"wrote {written:,} {layer} feature(s) to {out}")
    for key, reason in skipped[:20]:
        console.print(f"[yellow]left out[/yellow] {key}: {reason}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    store: StoreOption = None,
    mqtt: Annotated[
        str | None,
        typer.Option(
            help="MQTT broker (mqtt://host:port) for the SensorThings MQTT extension. "
            "Env: CITYTWIN_MQTT_URL.",
            show_default=False,
        ),
    ] = None,
    ingest_topic: Annotated[
        list[str] | None,
        typer.Option(
            help="With --mqtt: also ingest device readings from this topic filter in the server "
            "(as `citytwin ingest mqtt` does; one process owns the store). Repeatable. "
            "Env: CITYTWIN_MQTT_INGEST_TOPICS.",
            show_default=False,
        ),
    ] = None,
    control: Annotated[
        Path | None,
        typer.Option(
            help="Control file (actuators and rules; see `citytwin control check`): run the "
            "control loop, /control and the SensorThings Tasking API. Env: CITYTWIN_CONTROL_FILE.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the twin: OGC SensorThings API v1.1 (/v1.1, + MQTT with --mqtt), twin GeoJSON
    (/twin), OGC API - Features (/collections), NGSI-LD (/ngsi-ld/v1), live push (/ws),
    analyses (/analysis), what-if scenarios (/scenarios) and, with --control, autonomous
    control (/control, /v1.1/Tasks).

    Writes need a key from CITYTWIN_API_TOKENS (roles: docs/security.md). Links in MQTT
    notifications start at CITYTWIN_PUBLIC_URL, by default http://HOST:PORT. OpenAPI document:
    /openapi.json, /docs.
    """
    import os

    import uvicorn

    from citytwin.api import create_app
    from citytwin.mqtt.broker import parse_broker_url

    # the env wins when set (a proxy in front); else links name the address served
    public = None if "CITYTWIN_PUBLIC_URL" in os.environ else f"http://{host}:{port}"
    with domain_errors():
        topics = tuple(ingest_topic) if ingest_topic else None
        settings = settings_for(
            store, mqtt_url=mqtt, public_url=public, mqtt_ingest_topics=topics,
            control_file=str(control) if control else None,
        )  # fmt: skip
        if settings.mqtt_ingest_topics and not settings.mqtt_url:
            err_console.print("[red]error:[/red] --ingest-topic needs --mqtt (the broker)")
            raise typer.Exit(2)
        if settings.mqtt_url:
            parse_broker_url(settings.mqtt_url)
        application = create_app(settings)  # a bad control file or key fails here, in one line
        uvicorn.run(application, host=host, port=port, log_level="info")


@app.command()
def broker(
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port on 127.0.0.1.")] = 1883,
    directory: Annotated[
        Path,
        typer.Option(
            "--dir", help="Folder for the configuration, persistence (queued messages) and log."
        ),
    ] = Path(".citytwin/mosquitto"),
    autosave: Annotated[
        int,
        typer.Option(
            min=0,
            help="Save persistence every N seconds (fast; a crash may lose the last N s) "
            "instead of on every change (0: safest, a few hundred queued messages/s).",
        ),
    ] = 0,
) -> None:
    """Run citytwin's own mosquitto on loopback, with persistence, until Ctrl-C.

    Persistent sessions and their queued QoS 1 messages are saved in --dir and survive a
    restart; `citytwin ingest mqtt` and `citytwin serve --mqtt` connect to it.
    """
    from citytwin.mqtt.broker import Mosquitto

    with domain_errors():
        running = Mosquitto(directory, port=port, autosave_s=autosave).start()
    with _stop_on_signals() as stop:
        console.print(
            f"mosquitto listening on {running.url}; persistence and log in {directory}; "
            "Ctrl-C to stop"
        )
        try:
            while not stop.wait(0.5):
                if not running.running and not stop.wait(0.2):
                    err_console.print(f"[red]mosquitto exited[/red]; see {running.log_path}")
                    raise typer.Exit(1)
        finally:
            running.stop()
    console.print("mosquitto stopped (persistence saved)")


@app.command()
def bind(store: StoreOption = None) -> None:
    """Place every located sensor in its dong and gu (needs imported boundaries)."""
    from citytwin.space.city import bind_sensors
    from citytwin.store import open_store

    settings = settings_for(store)
    with open_store(settings.store_url) as opened:
        try:
            report = bind_sensors(opened, crs=settings.city_crs)
        except ValueError as exc:
            err_console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
    console.print(
        f"bound {report.bound:,} sensor(s) to their dong and gu; "
        f"{len(report.outside):,} outside every dong; "
        f"{report.without_location:,} without a location"
    )
    for key in report.outside[:20]:
        console.print(f"[yellow]outside[/yellow] {key}")
    if len(report.outside) > 20:
        console.print(f"… and {len(report.outside) - 20:,} more")


@app.command()
def vocabulary() -> None:
    """List the observed properties: key, names, UCUM unit, valid range."""
    from citytwin.model.vocabulary import PROPERTIES

    table = summary_table(
        f"{len(PROPERTIES)} observed properties", ["key", "name", "이름", "UCUM", "valid range"]
    )
    for p in PROPERTIES:
        table.add_row(p.key, p.name, p.name_ko, p.unit.ucum, f"{p.valid_min:g} … {p.valid_max:g}")
    console.print(table)


def main() -> None:
    """Console entry point: domain errors become one clear line, not a traceback."""
    try:
        app()
    except CitytwinError as exc:
        if cli_state["debug"]:
            raise
        err_console.print(f"[red]error:[/red] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
