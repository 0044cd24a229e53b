"""``citytwin simulate …`` — what-if models: traffic assignment (a TNTP network or the city's own
roads), chemical release, sunlight, flooding.

Each prints the figures that judge the run and writes its results (CSV, GeoTIFF, GeoJSON, PNG).
Scenarios that are stored and compared live under ``citytwin scenario``.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from citytwin.cli._shared import StoreOption, console, domain_errors, err_console, summary_table
from citytwin.cli.analyze import parse_time, store_work
from citytwin.errors import ValidationError

simulate_app = typer.Typer(
    help="What-if models: traffic assignment, chemical release, building sunlight.",
    no_args_is_help=True,
)


def parse_pairs(texts: list[str], option: str) -> list[tuple[int, int]]:
    """``FROM-TO`` node pairs (``10-16``), each naming a directed link."""
    pairs = []
    for position, text in enumerate(texts, start=1):
        left, sep, right = text.partition("-")
        if not sep or not left.strip().isdigit() or not right.strip().isdigit():
            raise ValidationError(
                f"{option} #{position} {text!r}: expected FROM-TO node numbers, e.g. 10-16"
            )
        pairs.append((int(left), int(right)))
    return pairs


@simulate_app.command()
def assignment(
    network: Annotated[Path, typer.Option(help="TNTP directory or its *_net.tntp file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Link flows CSV.")] = Path("flows.csv"),
    gap: Annotated[float, typer.Option(min=1e-12, max=1.0, help="Relative gap to reach.")] = 1e-5,
    close: Annotated[
        list[str] | None, typer.Option("--close", help="Close the link FROM-TO (repeatable).")
    ] = None,
    toll_factor: Annotated[float, typer.Option(min=0.0, help="Weight of toll in cost.")] = 0.0,
    distance_factor: Annotated[
        float, typer.Option(min=0.0, help="Weight of length in cost.")
    ] = 0.0,
    algorithm: Annotated[str, typer.Option(help="bfw, cfw or fw (Frank-Wolfe).")] = "bfw",
    max_iterations: Annotated[int, typer.Option(min=1)] = 2000,
) -> None:
    """Static user-equilibrium assignment (BPR costs) of a TNTP network and trip table.

    Writes one row per link (from, to, volume, cost) and prints iterations, the relative gap and
    the Beckmann objective. The factors weight toll and length in the generalised cost, as each
    network's TNTP README lists them.
    """
    from citytwin.simulate.assignment import assign, load_tntp_case
    from citytwin.simulate.assignment_whatif import close_links

    with domain_errors():
        net, demand = load_tntp_case(network)
        if close:
            net = close_links(net, parse_pairs(close, "--close"))
        with err_console.status("assigning …") as status:

            def progress(iteration: int, reached: float) -> None:
                status.update(f"assigning … iteration {iteration}, relative gap {reached:.2e}")

            result = assign(
                net, demand, gap=gap, max_iterations=max_iterations, algorithm=algorithm,
                toll_factor=toll_factor, distance_factor=distance_factor, on_progress=progress,
            )  # fmt: skip
    result.to_frame()[["from", "to", "volume", "cost"]].to_csv(
        out, index=False, float_format="%.10g"
    )
    verdict = "converged" if result.converged else "[yellow]stopped before the gap[/yellow]"
    console.print(
        f"{out}: {net.n_links:,} links; {result.iterations} iterations ({result.algorithm}, "
        f"{verdict}); relative gap {result.relative_gap:.3e}; Beckmann objective "
        f"{result.objective:,.3f}; total system travel time {result.tstt:,.3f}"
    )


@simulate_app.command("city-traffic")
def city_traffic(
    close: Annotated[
        list[str] | None,
        typer.Option(
            "--close", help="Close the street of this link_id (both directions; repeatable)."
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("traffic"),
    store: StoreOption = None,
) -> None:
    """Peak-hour traffic on the city's own roads (zones from dongs, trips from buildings,
    user equilibrium on the arterials); with --close, the same hour with those streets closed."""
    from citytwin.services.traffic_model import TrafficModels, build_traffic_model, save_flows

    models = TrafficModels()
    with store_work(store, "assigning the peak hour") as opened:
        flows = models.base((), lambda: build_traffic_model(opened))
        closure = models.closure(flows, close) if close else None
        written = save_flows(flows, out, closure=closure)
    model, table = flows.model, flows.table()
    console.print(
        f"{len(model.trips.zones)} zones, {model.trips.total:,.0f} trips in the peak hour on "
        f"{len(table):,} links; {flows.vehicle_hours:,.1f} vehicle-hours "
        f"(gap {flows.result.relative_gap:.1e} after {flows.result.iterations} iterations)"
    )
    _print_links("Busiest links", table.nlargest(5, "volume"), "volume", "vc")
    if closure is not None:
        change = closure.vehicle_hours_change
        console.print(f"closed {', '.join(close or [])}: {change:+,.1f} vehicle-hours")
        _print_links("Most added traffic", closure.links.nlargest(5, "volume_change"),
                     "volume_change", "vc_after")  # fmt: skip
    for name, path in written.items():
        console.print(f"  {name}: {path}")


def _print_links(title: str, rows: Any, column: str, vc: str) -> None:
    heads = ["link", "name", "class", column.replace("_", " "), "v/c"]
    table = summary_table(title, heads, tuple(heads[3:]))
    for row in rows.itertuples():
        table.add_row(str(row.link_id), str(row.name), str(row.road_class),
                      f"{getattr(row, column):,.0f}", f"{getattr(row, vc):.2f}")  # fmt: skip
    console.print(table)


@simulate_app.command()
def release(
    substance: Annotated[str, typer.Option(help="chlorine, ammonia, hydrogen sulfide, …")],
    rate: Annotated[float, typer.Option(min=0.0, help="Emission rate (g/s).")],
    at: Annotated[str, typer.Option(help="Source as LON,LAT (WGS84).")],
    height: Annotated[float, typer.Option(min=0.0, help="Release height (m).")] = 0.0,
    wind_speed: Annotated[
        float | None, typer.Option(help="m/s; default: the nearest sensors' latest.")
    ] = None,
    wind_direction: Annotated[
        float | None, typer.Option(help="Degrees the wind comes from; default: the sensors'.")
    ] = None,
    stability: Annotated[
        str | None, typer.Option(help="Pasquill class A–F; default: from the sun and wind.")
    ] = None,
    when: Annotated[
        str | None, typer.Option(help="Time of the release (ISO 8601 with zone); default now.")
    ] = None,
    cloud_cover: Annotated[float, typer.Option(min=0, max=8, help="Oktas, for the night.")] = 4.0,
    extent: Annotated[float, typer.Option(min=100, help="Side of the area computed (m).")] = 5000.0,
    cell: Annotated[float, typer.Option(min=1, help="Grid cell (m).")] = 25.0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("release"),
    store: StoreOption = None,
) -> None:
    """Hazardous-chemical release: a Gaussian plume over the city, AEGL-1/2/3 zones, and the
    buildings and residents inside them."""
    from citytwin.services.simulations import Release, chemical_release, save_release
    from citytwin.space.crs import DEFAULT_CITY_CRS, to_city

    lon, lat = _lonlat(at)
    x, y = to_city(lon, lat, DEFAULT_CITY_CRS)
    with store_work(store, "dispersing") as opened:
        result = chemical_release(
            opened, Release(substance, rate, float(x), float(y), height),
            wind_speed=wind_speed, wind_direction=wind_direction, stability=stability,
            when=parse_time(when, "--when"), cloud_cover=cloud_cover, extent_m=extent, cell=cell,
        )  # fmt: skip
        written = save_release(result, out, store=opened)
    console.print(
        f"wind {result.wind_speed:.1f} m/s from {result.wind_direction:.0f}° "
        f"({result.wind_source}), stability {result.stability}; peak "
        f"{float(result.concentration.max()) * 1000:.3g} mg/m³"
    )
    table = summary_table(
        f"{substance}: AEGL zones",
        ["level", "threshold (ppm)", "area (km²)", "buildings", "residents"],
        ("threshold (ppm)", "area (km²)", "buildings", "residents"),
    )
    exposure = result.exposure  # indexed by level
    for zone in result.zones.itertuples():
        row = exposure.loc[zone.level] if exposure is not None else None
        table.add_row(
            str(zone.level), f"{zone.threshold_ppm:g}", f"{zone.area_m2 / 1e6:.3f}",
            "—" if row is None else f"{int(row['buildings']):,}",
            "—" if row is None else f"{int(row['residents']):,}",
        )  # fmt: skip
    console.print(table)
    for name, path in written.items():
        console.print(f"  {name}: {path}")


@simulate_app.command()
def sunlight(
    at: Annotated[str, typer.Option(help="Proposed building centre as LON,LAT (WGS84).")],
    height: Annotated[float, typer.Option(min=1.0, help="Proposed height (m).")],
    width: Annotated[float, typer.Option(min=1.0, help="Footprint east–west (m).")] = 30.0,
    depth: Annotated[float, typer.Option(min=1.0, help="Footprint north–south (m).")] = 30.0,
    day: Annotated[str, typer.Option(help="Day (YYYY-MM-DD); default: the winter solstice.")] = "",
    radius: Annotated[float, typer.Option(min=50.0, help="Neighbourhood studied (m).")] = 400.0,
    cell: Annotated[float, typer.Option(min=1.0, help="Ground cell (m).")] = 10.0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("sunlight"),
    store: StoreOption = None,
) -> None:
    """Hours of direct sun (09–15 local) the neighbours and the ground lose to a proposed
    building, from the store's LoD1 buildings."""
    from citytwin.services.sunlight import proposed_building_loss

    lon, lat = _lonlat(at)
    chosen = date.fromisoformat(day) if day else None
    with store_work(store, "tracing shadows") as opened:
        report = proposed_building_loss(
            opened, lon, lat, height=height, width=width, depth=depth, day=chosen,
            radius=radius, cell=cell, out=out,
        )  # fmt: skip
    console.print(report.summary)
    for name, path in report.written.items():
        console.print(f"  {name}: {path}")


def _lonlat(text: str) -> tuple[float, float]:
    try:
        lon, lat = (float(part) for part in text.split(","))
    except ValueError:
        raise ValidationError(f"--at {text!r}: expected LON,LAT such as 127.10,37.51") from None
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise ValidationError(f"--at {text!r}: longitude or latitude out of range")
    return lon, lat


@simulate_app.command()
def flood(
    dem: Annotated[
        Path, typer.Option(help="DEM GeoTIFF in a metric CRS (the demo: city/dem.tif).")
    ],
    intensity: Annotated[float, typer.Option(min=0.0, help="Rainfall intensity (mm/h).")],
    duration: Annotated[float, typer.Option(min=0.0, help="Duration (h).")] = 1.0,
    runoff: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Runoff coefficient (share that ponds).")
    ] = 1.0,
    threshold: Annotated[float, typer.Option(min=0.0, help="Flooded from this depth (m).")] = 0.1,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("flood"),
    store: StoreOption = None,
) -> None:
    """Rainfall flooding: ponding depth by fill-and-spill (depressions fill and overflow
    downstream) and the buildings and road links it floods."""
    from citytwin.services.flooding import rainfall_flood

    with store_work(store, "filling and spilling") as opened:
        report = rainfall_flood(
            opened, dem, out, intensity_mm_h=intensity, duration_h=duration,
            runoff_coefficient=runoff, threshold_m=threshold,
        )  # fmt: skip
    ponding = report.ponding
    console.print(
        f"rain {ponding.rain_m3:,.0f} m³ = ponded {ponding.ponded_m3:,.0f} + left the DEM "
        f"{ponding.outflow_m3:,.0f} + kept out {ponding.infiltrated_m3:,.0f} (balance error "
        f"{ponding.balance_error_m3:.2g}); {ponding.lakes:,} ponds, "
        f"{ponding.flooded_area_m2(threshold=threshold) / 1e6:.3f} km² deeper than {threshold:g} m"
    )
    if report.buildings is not None and report.links is not None:
        console.print(
            f"flooded: {int(report.buildings['flooded'].sum()):,} of {len(report.buildings):,} "
            f"buildings, {int(report.links['flooded'].sum()):,} of {len(report.links):,} road links"
        )
    for name, path in report.written.items():
        console.print(f"  {name}: {path}")
