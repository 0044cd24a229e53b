"""``citytwin demo`` — build the demo city offline, then run the whole cyber-physical loop.

The build (today's five steps) makes a deterministic synthetic city, a day of S-DoT/KMA files,
ingests them, binds the sensors, exports 3D Tiles and runs the analyses. Then, unless
``--no-serve``, one process serves the twin (uvicorn) on the demo store while a live city is
stepped into it — in process through :class:`~citytwin.services.live.LocalCity` (the embedded
default), or over a broker with ``--mqtt`` — and the control loop runs a demo control file
derived from ``presets/demo.yaml`` (docs/demo.md).
"""

from __future__ import annotations

import csv
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml

from citytwin.cli._shared import StoreOption, console, domain_errors, settings_for
from citytwin.config import Settings, redact
from citytwin.errors import ConfigurationError

if TYPE_CHECKING:
    from citytwin.emulator.live import LiveCity

PRESET = Path(__file__).resolve().parents[1] / "control" / "presets" / "demo.yaml"
CITY_NAME = "demo"  # the emulated:// name the live city is attached under
DEVICE_TOPICS = ("citytwin/devices/#",)
DISTRICT_FILES = ("districts.gpkg", "districts.geojson", "districts.json", "districts.shp",
                  "districts.topojson")  # fmt: skip
BUILDING_FILES = ("buildings.gpkg", "buildings.geojson", "buildings.shp", "buildings.osm.pbf",
                  "buildings.osm")  # fmt: skip
LIVE_SENSORS = 300  # at most this many live sensors: every step stays well under a second
EPISODE = timedelta(minutes=45)
STOP_TIMEOUT_S = 30.0
EPISODE_PM25 = 120.0  # µg/m³ on top of the background: the dong mean crosses 75 at once


@dataclass(frozen=True)
class LiveOptions:
    """How the served demo runs (the command's options)."""

    host: str
    port: int
    mqtt: str | None
    sensors: int
    episode_after_s: float
    step_s: float
    backfill: timedelta


def demo(
    store: StoreOption = None,
    out: Annotated[Path, typer.Option(help="Folder for generated demo data.")] = Path("demo-data"),
    sensors: Annotated[int, typer.Option(min=1, help="Number of S-DoT sensors.")] = 1100,
    buildings: Annotated[int, typer.Option(min=1, help="Buildings of the demo city.")] = 20_000,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Folder with real layers replacing the synthetic ones: districts.gpkg|geojson|"
            "json|shp|topojson (gu and dong) and/or buildings.gpkg|geojson|shp|osm.pbf|osm.",
            show_default=False,
        ),
    ] = None,
    serve: Annotated[
        bool, typer.Option(help="After building, serve the live twin until Ctrl-C.")
    ] = True,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    mqtt: Annotated[
        str | None,
        typer.Option(
            help="Production mode: a broker (mqtt://host:port, e.g. `citytwin broker`); the live "
            "city publishes to it and the server ingests from it.",
            show_default=False,
        ),
    ] = None,
    episode_after: Annotated[
        float, typer.Option(help="Seconds after start when the PM episode begins (< 0: earlier).")
    ] = 60.0,
    step_seconds: Annotated[
        float, typer.Option(min=0.1, help="Real seconds between live steps.")
    ] = 15.0,
    backfill_minutes: Annotated[
        int, typer.Option(min=0, help="Minutes of live history back-filled at start.")
    ] = 60,
) -> None:
    """Build a demo city offline, run the spine over it, then serve the live twin.

    A deterministic synthetic city near Seoul (gu and dong, a river with bridges, buildings,
    roads, sensor sites) is imported into a DuckDB store; a day of S-DoT 2-minute data from its
    sensors (with realistic faults) and KMA hourly observations of five Seoul stations are
    generated and ingested; sensors are bound to their dong, nearest building and road link;
    the buildings are exported as 3D Tiles. Then (unless --no-serve) the twin is served with a
    live city stepped in real time, a PM episode in one dong and the control loop: a spray task
    awaits an operator's approval a few minutes after start. Ctrl-C stops.
    """
    with domain_errors():
        layers = _real_layers(data) if data is not None else {}
    settings = settings_for(store or f"duckdb:///{out / 'city.duckdb'}")
    city = _build(settings, out, sensors=sensors, buildings=buildings, layers=layers)
    _analyse(city, settings, out)
    if not serve:
        url = redact(settings.store_url)
        console.print(
            f"[green]done[/green] — explore with `citytwin stats --store {url}`, "
            f"`citytwin quarantine list --store {url}`, or aggregate by district "
            "in Python: store.aggregate(by='thing.gu', observed_property='pm25')"
        )
        return
    options = LiveOptions(
        host, port, mqtt, min(sensors, LIVE_SENSORS), episode_after, step_seconds,
        timedelta(minutes=backfill_minutes),
    )  # fmt: skip
    with domain_errors():
        serve_live(settings, out, options)


def _real_layers(folder: Path) -> dict[str, Path]:
    """The real layers in ``folder`` (see ``--data``); neither there is a clear error."""
    if not folder.is_dir():
        raise ConfigurationError(f"--data {folder}: not a folder")
    found: dict[str, Path] = {}
    for layer, names in (("districts", DISTRICT_FILES), ("buildings", BUILDING_FILES)):
        hits = [folder / name for name in names if (folder / name).is_file()]
        if hits:
            found[layer] = hits[0]
    if not found:
        expected = ", ".join((*DISTRICT_FILES, *BUILDING_FILES))
        raise ConfigurationError(
            f"--data {folder}: no real layer found; expected one of {expected}"
        )
    return found


def _build(
    settings: Settings, out: Path, *, sensors: int, buildings: int, layers: dict[str, Path]
) -> Any:
    """Steps 1–4: the city (real layers where given), a day of feeds, ingest, bind, 3D Tiles."""
    from citytwin.cli import _ingest_with_progress
    from citytwin.emulator.feeds import generate_day, load_stations
    from citytwin.space.city import bind_sensors, export_layer
    from citytwin.space.democity import build_demo_city, write_demo_city
    from citytwin.store import open_store

    console.print(
        f"[bold]1/5[/bold] building the demo city ({buildings:,} buildings, "
        f"{sensors:,} sensor sites) in {out}/city/"
    )
    city = build_demo_city(seed=0, buildings=buildings, sensors=sensors, crs=settings.city_crs)
    synthetic = write_demo_city(city, out / "city")
    for layer, path in layers.items():
        console.print(f"  {layer}: real layer {path} replaces the synthetic one")
    _import_city(settings, city, {**synthetic, **layers})
    console.print("[bold]2/5[/bold] generating a day of S-DoT and KMA data")
    sdot_file, kma_file = generate_day(out, sensors=sensors, registry=synthetic["sensors"])
    stations = _write_station_registry(out / "kma_stations.csv", load_stations(None))
    console.print(f"[bold]3/5[/bold] ingesting into {redact(settings.store_url)}")
    steps = [
        ("kma-stations", stations, {}),
        ("kma", kma_file, {"stations": str(stations)}),
        ("sdot", sdot_file, {"registry": str(synthetic["sensors"])}),
    ]
    for feed, path, options in steps:
        _ingest_with_progress(feed, [str(path)], settings, options)
    console.print("[bold]4/5[/bold] binding sensors to the city and exporting 3D Tiles")
    with open_store(settings.store_url) as opened:
        bound = bind_sensors(opened, crs=settings.city_crs)
        written, _ = export_layer(
            opened, "buildings", out / "tiles", format="3dtiles", crs=settings.city_crs
        )
    console.print(
        f"  {bound.bound:,} sensors placed in their dong; {len(bound.outside):,} "
        f"outside; {written:,} buildings in {out / 'tiles' / 'tileset.json'}"
    )
    return city


def _import_city(settings: Settings, city: Any, layers: dict[str, Path]) -> None:
    from citytwin.space.city import import_buildings, import_districts, store_network
    from citytwin.store import open_store

    with domain_errors(), open_store(settings.store_url) as opened:
        for report in (
            import_districts(opened, layers["districts"], crs=settings.city_crs),
            import_buildings(opened, layers["buildings"], crs=settings.city_crs),
            *store_network(opened, city.roads, kind="demo"),
        ):
            console.print(f"  {report.layer}: {report.read:,} features")


def _analyse(city: Any, settings: Settings, out: Path) -> None:
    console.print("[bold]5/5[/bold] decision support: maps, hotspots, traffic, gentrification")
    for name, path in _demo_analyses(city, settings.store_url, out).items():
        console.print(f"  {name}: {path}")


def _demo_analyses(city: Any, store_url: str, out: Path) -> dict[str, Path]:
    """The analysis half of the demo: a PM2.5 map and its hotspots from the store, a month of
    TOPIS speeds for the city's arterials and a per-dong panel, each analysed into
    ``out/analysis``."""
    from citytwin.emulator.gentrification import generate_panel
    from citytwin.emulator.topis import write_topis_month
    from citytwin.services.analyses import distribution_map, hotspots, save_hotspots, save_map
    from citytwin.services.reports import gentrification_report, traffic_report
    from citytwin.store import open_store

    folder = out / "analysis"
    folder.mkdir(parents=True, exist_ok=True)
    arterials = city.roads.links[city.roads.links["road_class"] == "primary"]
    month = write_topis_month(out, arterials, year=2020, month=3, seed=0)
    panel, _ = generate_panel(city.districts, seed=0)
    panel_path = out / "dong_panel.csv"
    panel.to_csv(panel_path, index=False, encoding="utf-8-sig")
    written: dict[str, Path] = {}
    with open_store(store_url) as opened:
        pm25 = distribution_map(opened, "pm25")
        written["PM2.5 map"] = save_map(pm25, folder / "pm25.png")
        save_map(pm25, folder / "pm25.tif")
        written["PM2.5 hotspots"] = save_hotspots(
            hotspots(opened, "pm25", by="dong"), folder / "pm25_hotspots.png"
        )
        traffic = traffic_report([month.path], folder / "traffic", store=opened)
        planning = gentrification_report(panel_path, folder / "gentrification", store=opened)
    written["traffic heatmap"] = traffic.written["heatmap"]
    written["gentrification stages"] = planning.written.get("map", planning.written["index"])
    return written


def _write_station_registry(path: Path, stations: Any) -> Path:
    """The demo's KMA station table in KMA's layout (STN_ID, STN_KO, …, LON, LAT, HT)."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["STN_ID", "STN_KO", "LON", "LAT", "HT"])
        writer.writerows([s.stn_id, s.name, s.lon, s.lat, s.height] for s in stations)
    return path


# -- the live side -------------------------------------------------------------------------


def demo_control(path: Path, *, mqtt: str | None) -> Path:
    """Write the demo control file: ``presets/demo.yaml`` with its actuators on the live city
    (``emulated://demo``, or the given broker's task topics) and a ``dong-pm25-demo`` rule —
    the fine-dust rule on 5-minute windows, firing on the first one — so a PM episode makes a
    spray task within minutes instead of two hours."""
    config = yaml.safe_load(PRESET.read_text(encoding="utf-8"))
    url = f"emulated://{CITY_NAME}" if mqtt is None else f"{mqtt.rstrip('/')}/citytwin/tasks"
    for actuator in config["actuators"]:
        actuator["url"] = url
    fine_dust = next(r for r in config["rules"] if r["name"] == "dong-pm25-high")
    quick = yaml.safe_load(yaml.safe_dump(fine_dust))  # a deep copy of plain data
    quick["name"] = "dong-pm25-demo"
    quick["description"] = "The demo's fine-dust rule: 5-minute dong mean above 75 µg/m³ once"
    quick["when"].update({"window": "5min", "for": 1})
    quick["cooldown"] = "1h"
    config["rules"].insert(0, quick)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def episode_dong(city: LiveCity) -> tuple[str, str]:
    """The dong with the most live sensors (code, name): the episode's, so it is well seen."""
    code = Counter(s.dong_code for s in city.sensors).most_common(1)[0][0]
    return code, city.dongs[code]


def demo_tokens() -> dict[str, str]:
    """A fresh operator and admin key for this run (role → token)."""
    return {role: secrets.token_urlsafe(18) for role in ("operator", "admin")}


def floor_to_second(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=0)


def serve_live(settings: Settings, out: Path, options: LiveOptions) -> None:
    """Serve the demo store with the live city stepping into it until Ctrl-C (see the module)."""
    import uvicorn

    from citytwin.api import create_app
    from citytwin.emulator.live import LiveCity
    from citytwin.store import open_store

    tokens = demo_tokens()
    control = demo_control(out / "control-demo.yaml", mqtt=options.mqtt)
    city = LiveCity.demo(seed=0, sensors=options.sensors, traffic=False)
    code, name = episode_dong(city)
    start = floor_to_second(datetime.now(UTC)) + timedelta(seconds=options.episode_after_s)
    city.raise_pm(code, start=start, duration=EPISODE, add=EPISODE_PM25)
    settings = settings.model_copy(update={
        "api_tokens": tuple(f"{token}={role}@demo-{role}" for role, token in tokens.items()),
        "control_file": str(control), "audit_log": str(out / "audit.jsonl"),
        "public_url": f"http://{options.host}:{options.port}", "mqtt_url": options.mqtt,
        "mqtt_ingest_topics": DEVICE_TOPICS if options.mqtt else (),
    })  # fmt: skip
    console.print(f"[bold]live[/bold] control file {control} (actuators on {_where(options)})")
    console.print(
        f"  {len(city.sensors):,} live sensors; PM episode (+{EPISODE_PM25:.0f} µg/m³, "
        f"{EPISODE.seconds // 60} min) in dong {name} ({code}) from {start:%H:%M:%S} UTC"
    )
    with open_store(settings.store_url) as store:
        app = create_app(settings, store=store)
        config = uvicorn.Config(app, host=options.host, port=options.port, log_level="warning")
        _run_until_stopped(uvicorn.Server(config), app, city, options, tokens)
    console.print("[green]stopped[/green]: live city, server and store closed")


def _where(options: LiveOptions) -> str:
    return f"emulated://{CITY_NAME}" if options.mqtt is None else f"{options.mqtt} (MQTT)"


def _run_until_stopped(
    server: Any, app: Any, city: LiveCity, options: LiveOptions, tokens: dict[str, str]
) -> None:
    """uvicorn in a thread (so Ctrl-C is ours, and stops the live city before the server); the
    live city steps into it once it is up; a failing side stops the whole demo."""
    from citytwin.cli import _stop_on_signals

    thread = threading.Thread(target=server.run, name="citytwin-demo-server", daemon=True)
    with _stop_on_signals() as stop:
        thread.start()
        while not server.started:
            if not thread.is_alive():
                raise ConfigurationError(
                    f"the server did not start on {options.host}:{options.port} (port in use?)"
                )
            if stop.wait(0.05):
                break
        try:
            if not stop.is_set():
                _step_until(stop, thread, app, city, options, tokens)
        finally:
            server.should_exit = True
            thread.join(STOP_TIMEOUT_S)


def _step_until(
    stop: threading.Event,
    thread: threading.Thread,
    app: Any,
    city: LiveCity,
    options: LiveOptions,
    tokens: dict[str, str],
) -> None:
    with _LiveStepping(app, city, options) as stepper:
        console.print(
            f"  back-filling the last {options.backfill.seconds // 60} min of the live city, "
            f"then a step every {options.step_s:g} s"
        )
        _announce(options, tokens)
        threading.Thread(target=_warm_traffic, args=(app,), daemon=True).start()
        while not stop.wait(0.5):
            if stepper.error is not None:
                raise ConfigurationError(f"the live city stopped: {stepper.error}")
            if not thread.is_alive():
                raise ConfigurationError("the server stopped; see the log above")


def _warm_traffic(app: Any) -> None:
    """Assign the peak hour once in the background, so the dashboard's traffic layer opens at
    once; a city without roads or buildings just has no traffic layer."""
    from citytwin.api.layers import base_flows
    from citytwin.errors import CitytwinError

    started = time.perf_counter()
    try:
        flows = base_flows(app, app.state.store_access)
    except CitytwinError as exc:
        console.print(f"  traffic model: not available ({exc})")
        return
    console.print(
        f"  traffic model ready: {flows.model.trips.total:,.0f} peak-hour trips on "
        f"{len(flows.model.links):,} links ({time.perf_counter() - started:.1f} s)"
    )


class _LiveStepping:
    """The live city stepping into the server's store, in process or over MQTT."""

    def __init__(self, app: Any, city: LiveCity, options: LiveOptions) -> None:
        self.app, self.city, self.options = app, city, options
        self.closers: list[Any] = []

    def __enter__(self) -> Any:
        from citytwin.services.live import LocalCity, RealTimeStepper

        if self.options.mqtt is None:
            access = self.app.state.store_access
            with access.lock:
                store = access.store()
            local = LocalCity(
                self.city, store, bus=self.app.state.bus, name=CITY_NAME, store_lock=access.lock
            )
            self.closers.append(local.close)
            step: Any = local.step
        else:
            from citytwin.emulator.live_mqtt import LiveCityRunner

            runner = LiveCityRunner(self.city, self.options.mqtt, traffic=False).connect()
            self.closers.append(runner.close)
            step = runner.publish_step
        stepper = RealTimeStepper(
            step, backfill=self.options.backfill, interval_s=self.options.step_s
        )
        self.closers.insert(0, stepper.stop)
        return stepper.start()

    def __exit__(self, *exc: object) -> None:
        for close in self.closers:
            close()


def _announce(options: LiveOptions, tokens: dict[str, str]) -> None:
    root = f"http://{options.host}:{options.port}"
    console.print(f"[bold green]serving[/bold green] dashboard {root}/ui/")
    console.print(f"  API root {root}/v1.1 · control {root}/control · OpenAPI {root}/docs")
    for role, token in tokens.items():
        console.print(f"  {role} token: {token}")
    console.print("  (this run's keys: `Authorization: Bearer <token>`)")
    console.print("Ctrl-C to stop")
