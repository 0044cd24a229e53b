"""``citytwin analyze …`` — decision support from the command line: distribution maps, hotspots,
anomalies, noise indicators, forecasts and their backtest, traffic patterns, gentrification.

Every command writes its data (CSV/GeoJSON/GeoTIFF/JSON) and, with ``--out something.png``,
a picture; tables are printed for a person unless ``--json`` asks for machine output.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from citytwin.cli._shared import (
    StoreOption,
    console,
    domain_errors,
    err_console,
    settings_for,
    summary_table,
)
from citytwin.errors import ValidationError

if TYPE_CHECKING:
    from citytwin.store.base import Store

analyze_app = typer.Typer(
    help="Decision support: maps, hotspots, anomalies, noise, forecasts, traffic, gentrification.",
    no_args_is_help=True,
)

PropertyOption = Annotated[
    str, typer.Option("--property", "-p", help="Observed property key (see `citytwin vocabulary`).")
]
AtOption = Annotated[
    str | None,
    typer.Option(
        "--at",
        help="End of the time window, ISO 8601 with a zone (2020-03-15T14:00+09:00); "
        "default: the latest reading.",
        show_default=False,
    ),
]
WindowOption = Annotated[
    float, typer.Option("--window", min=0.01, help="Hours averaged before --at.")
]
OutOption = Annotated[Path, typer.Option("--out", "-o", help="Output file.")]


def parse_time(text: str | None, option: str) -> datetime | None:
    """An ISO 8601 time with a zone (``Z`` or ``+09:00``); a bare date/time is refused."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(
            f"{option} {text!r}: expected an ISO 8601 time such as 2020-03-15T14:00+09:00"
        ) from None
    if moment.tzinfo is None:
        raise ValidationError(f"{option} {text!r}: add a zone, e.g. {text}+09:00 (KST) or {text}Z")
    return moment.astimezone(UTC)


@contextmanager
def working(what: str, *, quiet: bool = False) -> Iterator[None]:
    """A spinner on the terminal (stderr) while a long computation runs; nothing when piped."""
    if quiet or not err_console.is_terminal:
        yield
        return
    with err_console.status(f"{what} …"):
        yield


def _wants_picture(out: Path, option: str, data_suffixes: tuple[str, ...]) -> bool:
    """True for a ``.png`` output, False for one of ``data_suffixes``; anything else is an error."""
    suffix = out.suffix.lower()
    if suffix == ".png":
        return True
    if suffix in data_suffixes:
        return False
    expected = ", ".join([*data_suffixes, ".png"])
    raise ValidationError(f"{option} {out}: unknown suffix {out.suffix!r}; expected {expected}")


@contextmanager
def store_work(store: str | None, what: str) -> Iterator[Store]:
    """The store for one analysis: domain errors as one line, a spinner while it works."""
    from citytwin.store import open_store

    with domain_errors(), working(what), open_store(settings_for(store).store_url) as opened:
        yield opened


@analyze_app.command("map")
def map_(
    observed_property: PropertyOption,
    out: OutOption = Path("map.png"),
    at: AtOption = None,
    window: WindowOption = 1.0,
    method: Annotated[str, typer.Option(help="kriging or idw.")] = "kriging",
    cell: Annotated[float, typer.Option(min=1.0, help="Grid cell size in metres.")] = 100.0,
    model: Annotated[
        str, typer.Option(help="Variogram: auto, spherical, exponential, gaussian, matern.")
    ] = "auto",
    format: Annotated[
        str | None, typer.Option("--format", help="png, tif or geojson (default: from --out).")
    ] = None,
    store: StoreOption = None,
) -> None:
    """A distribution map of one property: sensors' window means interpolated over the city.

    PNG (map with legend, district outlines and the sensor sites), GeoTIFF in the city CRS
    (bands mean and variance) or contour GeoJSON (filled bands, WGS84).
    """
    from citytwin.services.analyses import distribution_map, save_map

    with store_work(store, "interpolating") as opened:
        result = distribution_map(
            opened,
            observed_property,
            at=parse_time(at, "--at"),
            window=timedelta(hours=window),
            method=method,  # type: ignore[arg-type]
            cell=cell,
            model=model,
        )
        written = save_map(result, out, format=format)  # type: ignore[arg-type]
    cv = result.validation
    model_text = f", {result.variogram.kind} variogram" if result.variogram else ""
    console.print(
        f"{written}: {result.field.observed_property} from {len(result.field.sensors):,} sensors "
        f"{result.field.start:%Y-%m-%d %H:%M}–{result.field.end:%H:%M} UTC{model_text}; "
        f"grid {result.grid.width}×{result.grid.height} of {result.grid.cell:g} m; "
        f"leave-one-out RMSE {cv.rmse:.3g} {result.field.unit}, MAE {cv.mae:.3g}"
    )


@analyze_app.command()
def hotspots(
    observed_property: PropertyOption,
    out: OutOption = Path("hotspots.geojson"),
    at: AtOption = None,
    window: WindowOption = 1.0,
    by: Annotated[str, typer.Option(help="gu, dong or grid.")] = "gu",
    statistic: Annotated[str, typer.Option(help="gi (Getis-Ord Gi*) or moran.")] = "gi",
    cell: Annotated[float, typer.Option(min=1.0, help="Cell size for --by grid (m).")] = 1000.0,
    permutations: Annotated[int, typer.Option(min=0, help="For pseudo p-values.")] = 999,
    store: StoreOption = None,
) -> None:
    """Hot and cold spots (Gi*) or clusters and outliers (Local Moran's I), with significance;
    GeoJSON or a PNG map (by --out's suffix)."""
    from citytwin.services.analyses import hotspots as find_hotspots
    from citytwin.services.analyses import save_hotspots

    with store_work(store, "hotspots") as opened:
        found = find_hotspots(
            opened,
            observed_property,
            at=parse_time(at, "--at"),
            window=timedelta(hours=window),
            statistic=statistic,  # type: ignore[arg-type]
            by=by,  # type: ignore[arg-type]
            cell=cell,
            permutations=permutations,
        )
        save_hotspots(found, out)
    counts = found.result.to_frame()["label"].value_counts()
    table = summary_table(f"{observed_property} by {by} → {out}", ["class", "sites"], ("sites",))
    for label, count in counts.items():
        table.add_row(str(label), f"{count:,}")
    console.print(table)


@analyze_app.command()
def anomalies(
    observed_property: PropertyOption,
    start: Annotated[str | None, typer.Option(help="ISO 8601 start (default: all).")] = None,
    end: Annotated[str | None, typer.Option(help="ISO 8601 end (exclusive).")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Episodes as .csv, or a .png map.")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Sensor faults (one sensor diverging from its neighbours) versus real events (a spatially
    coherent rise), using neighbours in space and the QC flags."""
    from citytwin.services.analyses import sensor_anomalies

    with store_work(store, "detecting anomalies") as opened:
        result, sensors = sensor_anomalies(
            opened,
            observed_property,
            start=parse_time(start, "--start"),
            end=parse_time(end, "--end"),
        )
        episodes = result.to_frame()
        things = sensors["thing"].to_numpy()
        episodes["thing"] = [things[s] if s >= 0 else "" for s in episodes["sensor"]]
        episodes["members"] = [" ".join(things[list(m)]) for m in episodes["members"]]
        if out is not None and _wants_picture(out, "--out", (".csv",)):
            from citytwin.services.pictures import anomaly_picture

            anomaly_picture(result, sensors, out)
        elif out is not None:
            episodes.drop(columns=["sensor"]).to_csv(out, index=False)
    counts = result.counts()
    table = summary_table(
        f"{observed_property}: {counts['fault']:,} faulty and {counts['event']:,} event readings",
        ["kind", "sensor(s)", "start", "end", "cause", "peak"],
        ("peak",),
    )
    for row in episodes.head(30).to_dict("records"):
        members = str(row["members"]).split()
        who = str(row["thing"]) or f"{len(members)} sensors"
        cells = [row["start_time"], row["end_time"], row["cause"], f"{row['peak_score']:.1f}"]
        table.add_row(str(row["kind"]), who, *(str(c) for c in cells))
    console.print(table)
    if len(episodes) > 30:
        console.print(f"… {len(episodes) - 30:,} more episodes" + (f" in {out}" if out else ""))


@analyze_app.command()
def noise(
    thing: Annotated[str | None, typer.Option(help="One station (Thing key).")] = None,
    periods: Annotated[str, typer.Option(help="eu (Lden) or korea (06–22/22–06).")] = "eu",
    daily: Annotated[bool, typer.Option(help="One row per station and day.")] = False,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Levels as .csv, or a .png map.")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Noise indicators from stored hourly LEQ: Lday, Levening, Lnight, Lden (EU END) or the
    Korean day/night levels, averaged energetically."""
    from citytwin.services.series import noise_report

    with store_work(store, "noise indicators") as opened:
        report = noise_report(opened, thing=thing, periods=periods, daily=daily)  # type: ignore[arg-type]
        if out is not None and _wants_picture(out, "--out", (".csv",)):
            from citytwin.services.pictures import noise_picture

            noise_picture(report, opened, out)
        elif out is not None:
            report.to_csv(out, index=False)
    levels = [c for c in report.columns if c.startswith("L")]
    table = summary_table(
        f"noise indicators ({periods})",
        ["station", *(["day"] if daily else []), *levels],
        tuple(levels),
    )
    for record in report.head(40).to_dict("records"):
        cells = [str(record["name"] or record["thing"])]
        if daily:
            cells.append(str(record["day"]))
        cells += [_db(record[c]) for c in levels]
        table.add_row(*cells)
    console.print(table)


def _db(value: Any) -> str:
    return (
        "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}"
    )


@analyze_app.command()
def backtest(
    file: Annotated[Path, typer.Argument(help="CSV with a time column and a value column.")],
    time: Annotated[str, typer.Option("--time", help="Time (or date) column.")],
    value: Annotated[str, typer.Option("--value", help="Value column.")],
    date_format: Annotated[
        str | None, typer.Option(help="strptime format of --time, e.g. %d/%m/%Y.")
    ] = None,
    hour: Annotated[
        str | None, typer.Option(help="Hour-of-day column when --time holds dates only.")
    ] = None,
    horizon: Annotated[int, typer.Option(min=1, max=168, help="Hours ahead.")] = 24,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    plot: Annotated[
        Path | None, typer.Option(help="Also draw MAE per horizon into this .png.")
    ] = None,
) -> None:
    """Rolling-origin backtest of the forecaster against persistence and seasonal-naive:
    MAE and RMSE per horizon."""
    from citytwin.analysis.backtest import backtest as run_backtest
    from citytwin.analysis.backtest import load_series_csv

    with domain_errors(), working(f"backtesting {file.name}", quiet=as_json):
        series = load_series_csv(
            str(file), time=time, value=value, date_format=date_format, hour=hour
        )
        result = run_backtest(series, horizon=horizon)
        if plot is not None:
            from citytwin.services.pictures import backtest_picture

            _wants_picture(plot, "--plot", ())
            backtest_picture(result, plot, name=value)
    summary = result.to_dict()
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False, indent=2))
        return
    table = summary_table(
        f"{file.name}: {value}, rolling-origin backtest",
        ["h", "model MAE", "persistence MAE", "seasonal-naive MAE", "model RMSE"],
        ("h", "model MAE", "persistence MAE", "seasonal-naive MAE", "model RMSE"),
    )
    for horizon, row in zip(result.table.index, result.table.to_dict("records"), strict=True):
        cells = ("model_mae", "persistence_mae", "seasonal_naive_mae", "model_rmse")
        table.add_row(str(horizon), *(f"{row[c]:.3f}" for c in cells))
    console.print(table)
    overall = result.overall
    skill = 1 - overall["model_mae"] / overall["seasonal_naive_mae"]
    console.print(
        f"{len(result.origins):,} origins; mean MAE over 1–{horizon} h: model "
        f"{overall['model_mae']:.3f}, seasonal-naive {overall['seasonal_naive_mae']:.3f} "
        f"({skill:+.0%} skill), persistence {overall['persistence_mae']:.3f}"
    )


@analyze_app.command("forecast")
def forecast_(
    observed_property: PropertyOption,
    thing: Annotated[str | None, typer.Option(help="One sensor (Thing key).")] = None,
    district: Annotated[
        str | None, typer.Option(help="A district's sensor mean: gu:<code> or dong:<code>.")
    ] = None,
    horizon: Annotated[int, typer.Option(min=1, max=24, help="Hours ahead.")] = 24,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Forecast as .csv, or a .png chart.")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Forecast 1–24 h ahead for one sensor or one district from its stored hourly history."""
    from citytwin.services.series import series_forecast

    with store_work(store, "forecasting") as opened:
        result = series_forecast(
            opened, observed_property, thing=thing, district=district, horizon=horizon
        )
        if out is not None and _wants_picture(out, "--out", (".csv",)):
            from citytwin.services.pictures import forecast_picture

            forecast_picture(result, out)
        elif out is not None:
            result.forecast.rename("forecast").to_frame().to_csv(out, index_label="time")
    table = summary_table(
        f"{observed_property} forecast for {result.subject}",
        ["time (UTC)", "forecast"],
        ("forecast",),
    )
    for moment, value in result.forecast.items():
        table.add_row(f"{moment:%Y-%m-%d %H:%M}", f"{value:.2f}")
    console.print(table)


@analyze_app.command()
def traffic(
    files: Annotated[list[Path], typer.Argument(help="TOPIS monthly link-speed CSV files.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("traffic"),
    weekday: Annotated[
        str, typer.Option(help="Weekday of the map layer (Mon…Sun, 월…일).")
    ] = "Mon",
    hour: Annotated[int, typer.Option(min=0, max=23, help="Hour of the map layer (KST).")] = 8,
    store: StoreOption = None,
) -> None:
    """Traffic patterns from TOPIS link speeds: congestion index per link × weekday × hour,
    recurring bottlenecks, an hour × weekday heatmap and (links in the store) a map layer."""
    from citytwin.services.reports import traffic_report

    with store_work(store, "traffic patterns") as opened:
        report = traffic_report(files, out, store=opened, weekday=weekday, hour=hour)
    _print_report("traffic patterns", report)


@analyze_app.command()
def gentrification(
    table: Annotated[Path, typer.Argument(help="Per-dong yearly table (CSV or Excel).")],
    mapping: Annotated[str, typer.Option(help="Mapping YAML, or a preset name (demo).")] = "demo",
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path(
        "gentrification"
    ),
    store: StoreOption = None,
) -> None:
    """Gentrification index and stage per dong from an indicator table (business turnover,
    rents, franchise share, population and age change …) read through a mapping."""
    from citytwin.services.reports import gentrification_report

    with store_work(store, "gentrification") as opened:
        report = gentrification_report(table, out, mapping=mapping, store=opened)
    _print_report("gentrification", report)


def _print_report(title: str, report: Any) -> None:
    table = summary_table(title, ["", "count"], ("count",))
    for name, count in report.counts.items():
        table.add_row(name, f"{count:,}")
    console.print(table)
    for name, path in report.written.items():
        console.print(f"  {name}: {path}")
    for note in report.notes:
        console.print(f"  [yellow]{note}[/yellow]")
