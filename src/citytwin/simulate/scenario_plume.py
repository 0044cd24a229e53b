"""The hazardous-release scenario model: a Gaussian plume on the city grid and its AEGL zones.

``base`` is the place: ``{bounds: [minx, miny, maxx, maxy], cell: 50, source: [x, y]}`` in the
city CRS (``crs``, default EPSG:5186). ``parameters`` describe the release and the weather —
``substance``, ``q`` (g/s), ``wind_speed`` (m/s), ``wind_direction`` (° the wind comes from),
``height`` (m), ``stability`` (Pasquill A–F), ``dispersion``, ``terrain``, ``duration`` (AEGL
period). ``changes`` override them in order::

    changes:
      - release: {q: 50, height: 10}       # a larger leak from a taller stack
      - wind: {direction: 180, speed: 2}   # the wind turns south and drops

The model is :func:`.plume.plume_grid` (steady Gaussian plume, Briggs 1973 / Pasquill–Gifford
dispersion) and :func:`.exposure.threshold_zones` (AEGL-1/2/3, US EPA). The comparison gives the
change of peak concentration and of each zone's area, and the difference raster.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pydantic import Field, model_validator

from citytwin.analysis.grid import CITY_CRS, Grid
from citytwin.analysis.render import render_map, write_geotiff
from citytwin.errors import ValidationError
from citytwin.simulate.exposure import threshold_zones
from citytwin.simulate.plume import plume_grid
from citytwin.simulate.scenario import (
    OneChange,
    Progress,
    Scenario,
    ScenarioComparison,
    ScenarioResult,
    SpecPart,
    Summary,
    parse_part,
)
from citytwin.simulate.substances import LEVELS, get_substance

Finite = Annotated[float, Field(allow_inf_nan=False)]
Point = tuple[Finite, Finite]


class PlumeBase(SpecPart):
    bounds: tuple[Finite, Finite, Finite, Finite]
    cell: float = Field(gt=0, allow_inf_nan=False)
    source: Point
    crs: str = CITY_CRS

    @model_validator(mode="after")
    def _size(self) -> PlumeBase:
        minx, miny, maxx, maxy = self.bounds
        if not (maxx > minx and maxy > miny):
            raise ValueError(
                "bounds: expected [minx, miny, maxx, maxy] with minx < maxx, miny < maxy"
            )
        if (maxx - minx) * (maxy - miny) / self.cell**2 > 25_000_000:
            raise ValueError("bounds/cell: more than 25 million cells; use a coarser cell")
        return self


class PlumeParameters(SpecPart):
    substance: str = "chlorine"
    q: float = Field(gt=0, allow_inf_nan=False)
    wind_speed: float = Field(gt=0, allow_inf_nan=False)
    wind_direction: float = Field(ge=0, le=360)
    height: float = Field(0.0, ge=0, allow_inf_nan=False)
    stability: Literal["A", "B", "C", "D", "E", "F"] = "D"
    dispersion: Literal["briggs", "pasquill-gifford"] = "briggs"
    terrain: Literal["rural", "urban"] = "urban"
    duration: Literal["10min", "30min", "60min", "4h", "8h"] = "60min"


class ReleaseChange(SpecPart):
    q: float | None = Field(None, gt=0, allow_inf_nan=False)
    height: float | None = Field(None, ge=0, allow_inf_nan=False)
    substance: str | None = None


class WindChange(SpecPart):
    speed: float | None = Field(None, gt=0, allow_inf_nan=False)
    direction: float | None = Field(None, ge=0, le=360)
    stability: Literal["A", "B", "C", "D", "E", "F"] | None = None


class PlumeChange(OneChange):
    """Exactly one of ``release``, ``wind``, ``source`` (a new release point)."""

    release: ReleaseChange | None = None
    wind: WindChange | None = None
    source: Point | None = None


class PlumeAdapter:
    """Scenario adapter of :func:`.plume.plume_grid` (see the module docstring)."""

    name = "plume"
    result_files = ("concentration.tif", "zones.geojson")
    path_keys: tuple[str, ...] = ()

    def check(self, scenario: Scenario) -> list[str]:
        problems: list[str] = []
        parse_part(PlumeBase, scenario.base, "base", problems)
        for i, change in enumerate(scenario.changes):
            parse_part(PlumeChange, change, f"changes[{i}]", problems)
        parameters = parse_part(PlumeParameters, scenario.parameters, "parameters", problems)
        if parameters is not None:
            try:
                get_substance(parameters.substance)
            except ValidationError as exc:
                problems.append(f"parameters.substance: {exc}")
        return problems

    def inputs(self, scenario: Scenario) -> list[Path]:
        return []

    def run(self, scenario: Scenario, *, on_progress: Progress | None = None) -> ScenarioResult:
        base = PlumeBase.model_validate(scenario.base)
        p, source = _with_changes(scenario)
        grid = Grid.covering(base.bounds, cell=base.cell, crs=base.crs)
        field = plume_grid(
            source, p.q, p.wind_speed, p.wind_direction, grid, height=p.height,
            stability=p.stability, dispersion=p.dispersion, terrain=p.terrain,
        )  # fmt: skip
        zones = threshold_zones(grid, field, p.substance, duration=p.duration)
        if on_progress is not None:
            on_progress(1, 0.0)
        summary: Summary = {"substance": get_substance(p.substance).name,
                            "peak_g_m3": float(field.max()), "cells": grid.size}  # fmt: skip
        for level, area in zip(zones["level"], zones["area_m2"], strict=True):
            summary[f"{level}_area_m2"] = float(area)
        table = pd.DataFrame(zones.drop(columns="geometry"))
        return ScenarioResult(self.name, summary, table, grid, field, zones)

    def save(self, result: ScenarioResult, folder: Path) -> list[Path]:
        if result.grid is None or result.raster is None or result.layer is None:
            raise ValidationError("plume result: expected a grid, a raster and zones to save")
        tif = write_geotiff(folder / "concentration.tif", result.grid,
                            {"concentration": result.raster})  # fmt: skip
        zones = folder / "zones.geojson"
        zones.write_text(_zones_json(result.layer), encoding="utf-8")
        return [tif, zones]

    def load(self, folder: Path, summary: dict[str, Any]) -> ScenarioResult:
        import rasterio

        with rasterio.open(folder / "concentration.tif") as tif:
            raster = tif.read(1)
            t = tif.transform
            grid = Grid(west=t.c, north=t.f, cell=t.a, width=tif.width, height=tif.height,
                        crs=str(tif.crs))  # fmt: skip
        zones = gpd.read_file(folder / "zones.geojson")
        table = pd.DataFrame(zones.drop(columns="geometry"))
        return ScenarioResult(self.name, dict(summary), table, grid, raster, zones)

    def compare(self, variant: ScenarioResult, base: ScenarioResult) -> ScenarioComparison:
        return compare_plumes(variant, base)

    def picture(self, comparison: ScenarioComparison, scenario: Scenario, path: Path) -> Path:
        grid, difference = comparison.extra["grid"], comparison.extra["difference"]
        limit = float(np.nanmax(np.abs(difference))) or 1.0
        return render_map(
            path, grid, difference, title=f"{scenario.name}: concentration change",
            unit="g/m³ (scenario − base)", cmap="RdBu_r", vmin=-limit, vmax=limit,
        )  # fmt: skip


def _with_changes(scenario: Scenario) -> tuple[PlumeParameters, tuple[float, float]]:
    """The parameters and release point after every change, in order."""
    values = PlumeParameters.model_validate(scenario.parameters).model_dump()
    source = PlumeBase.model_validate(scenario.base).source
    for change in (PlumeChange.model_validate(c) for c in scenario.changes):
        if change.release is not None:
            values.update(change.release.model_dump(exclude_none=True))
        if change.wind is not None:
            wind = change.wind.model_dump(exclude_none=True)
            values.update({f"wind_{k}" if k != "stability" else k: v for k, v in wind.items()})
        if change.source is not None:
            source = change.source
    return PlumeParameters.model_validate(values), source


def _zones_json(zones: gpd.GeoDataFrame) -> str:
    """Zones as GeoJSON with sorted keys and ``repr`` floats, so equal zones give equal bytes."""
    features = [
        {"type": "Feature", "geometry": json.loads(shapely.to_geojson(geom)),
         "properties": {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}}
        for geom, (_, row) in zip(zones.geometry, zones.drop(columns="geometry").iterrows(),
                                  strict=True)
    ]  # fmt: skip
    crs = {"type": "name", "properties": {"name": str(zones.crs)}}
    collection = {"type": "FeatureCollection", "crs": crs, "features": features}
    return json.dumps(collection, sort_keys=True, separators=(",", ":")) + "\n"


def compare_plumes(variant: ScenarioResult, base: ScenarioResult) -> ScenarioComparison:
    """Zone areas, cells and peak concentration ``variant − base``; the difference raster."""
    if variant.grid != base.grid or variant.raster is None or base.raster is None:
        raise ValidationError(
            f"compare plumes: grids differ ({variant.grid} vs {base.grid}); expected the same base"
        )
    keep = ["level", "cells", "area_m2"]
    table = base.table[keep].merge(variant.table[keep], on="level", suffixes=("_base", "_variant"))
    table["area_change_m2"] = table["area_m2_variant"] - table["area_m2_base"]
    table["cells_change"] = table["cells_variant"] - table["cells_base"]
    peak_base, peak_variant = float(base.raster.max()), float(variant.raster.max())
    summary: Summary = {"peak_base_g_m3": peak_base, "peak_variant_g_m3": peak_variant,
                        "peak_change_g_m3": peak_variant - peak_base}  # fmt: skip
    for level, change in zip(table["level"], table["area_change_m2"], strict=True):
        summary[f"{level}_area_change_m2"] = float(change)
    difference = variant.raster.astype(np.float64) - base.raster.astype(np.float64)
    extra = {"grid": variant.grid, "difference": difference}
    assert list(table["level"]) == list(LEVELS)
    return ScenarioComparison("plume", table, summary, extra)
