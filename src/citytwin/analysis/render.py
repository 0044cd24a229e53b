"""Files and pictures of analysis results: GeoTIFF, contour GeoJSON and PNG maps.

- :func:`write_geotiff` — float32 GeoTIFF in the grid's CRS (EPSG:5186), one named band per
  layer (``mean``, ``variance`` …), for GIS software;
- :func:`contour_geojson` — filled contour bands (isobands) as GeoJSON polygons, for web maps;
- :func:`render_map`, :func:`render_choropleth`, :func:`render_heatmap` — PNG pictures for a
  person: a north-up map with legend, district outlines and a scale bar; polygons coloured by
  value or class (hot-spot maps); a labelled matrix (hour × weekday).

Pictures are drawn on a :class:`matplotlib.figure.Figure` with the Agg canvas directly, never
through pyplot, so no global backend or state changes (the machine has no display).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import contourpy
import numpy as np
import shapely
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection, PatchCollection
from matplotlib.colors import Colormap, Normalize, to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch, PathPatch, Rectangle
from matplotlib.path import Path as MplPath
from matplotlib.ticker import MaxNLocator
from numpy.typing import ArrayLike, NDArray
from pyproj import Transformer

from citytwin.analysis.grid import CITY_CRS, Grid
from citytwin.errors import ValidationError

logger = logging.getLogger(__name__)

#: Colour maps that read naturally for common properties (callers pick one for ``cmap``).
PROPERTY_CMAPS = {
    "temperature": "RdYlBu_r", "humidity": "Blues", "pm10": "YlOrRd", "pm25": "YlOrRd",
    "noise": "inferno", "congestion": "RdYlGn_r", "variance": "Greys",
}  # fmt: skip
#: Hot-spot (Gi*) and LISA classes in legend order, in the customary red-to-blue colours.
CLASS_COLOURS = {
    "hot spot 99%": "#d62f27", "hot spot 95%": "#ed7551", "hot spot 90%": "#fab984",
    "HH": "#d62f27", "HL": "#f4a6a6", "not significant": "#eeeeea", "LH": "#a6c8f4",
    "LL": "#4575b5", "cold spot 90%": "#c0ccbe", "cold spot 95%": "#849eba",
    "cold spot 99%": "#4575b5", "no data": "#ffffff",
}  # fmt: skip
_SIZE_INCHES, _DPI = (8.0, 20.0 / 3.0), 150  # 1200 × 1000 px


def write_geotiff(
    path: str | Path,
    grid: Grid,
    bands: Mapping[str, ArrayLike],
    *,
    nodata: float = math.nan,
) -> Path:
    """Write ``bands`` (each ``grid.shape``) as one float32, deflate-compressed GeoTIFF.

    CRS and geotransform come from the grid; each band's description is its name, so GIS
    software shows "mean" and "variance" instead of "Band 1". Non-finite values become
    ``nodata``. Rasters of 512 px or more on a side are written in 256-px tiles.

    Examples
    --------
    >>> import tempfile, rasterio
    >>> grid = Grid(west=200000.0, north=550000.0, cell=100.0, width=4, height=3)
    >>> out = write_geotiff(tempfile.mkdtemp() + "/m.tif", grid, {"mean": np.ones(grid.shape)})
    >>> with rasterio.open(out) as tif:
    ...     tif.crs.to_epsg(), tif.descriptions, tif.read(1).shape
    (5186, ('mean',), (3, 4))
    """
    import rasterio
    from rasterio.transform import Affine

    layers = {name: np.asarray(values, dtype=np.float64) for name, values in bands.items()}
    wrong = [f"{name} {a.shape}" for name, a in layers.items() if a.shape != grid.shape]
    if not layers or wrong:
        raise ValidationError(
            f"geotiff bands: {', '.join(wrong) or 'none given'}; expected arrays of {grid.shape}"
        )
    tiled = max(grid.shape) >= 512
    profile: dict[str, Any] = {
        "driver": "GTiff", "height": grid.height, "width": grid.width, "count": len(layers),
        "dtype": "float32", "crs": grid.crs, "transform": Affine(*grid.transform),
        "nodata": nodata, "compress": "deflate", "predictor": 3, "tiled": tiled,
    }  # fmt: skip
    if tiled:
        profile.update(blockxsize=256, blockysize=256)
    out = Path(path)
    with rasterio.open(out, "w", **profile) as dataset:
        for index, (name, values) in enumerate(layers.items(), start=1):
            dataset.write(np.where(np.isfinite(values), values, nodata).astype(np.float32), index)
            dataset.set_band_description(index, name)
    logger.info("wrote %s: %d band(s) of %s", out, len(layers), grid.shape)
    return out


def contour_geojson(
    grid: Grid,
    values: ArrayLike,
    *,
    levels: int | Sequence[float] | None = None,
    unit: str | None = None,
    to_crs: str | None = "EPSG:4326",
) -> dict[str, Any]:
    """Filled contour bands as a GeoJSON FeatureCollection, one (Multi)Polygon per band.

    A band holds the area where ``lower < value ≤ upper`` (marching squares on cell centres,
    contourpy's filled contours; holes kept, NaN cells left out). ``levels`` are the band edges;
    an int asks for about that many "nice" bands (default 10). Coordinates are reprojected with
    ``always_xy=True`` to ``to_crs`` (WGS84 lon/lat; ``None`` keeps the grid CRS in metres).

    Examples
    --------
    >>> grid = Grid(west=0.0, north=100.0, cell=10.0, width=10, height=10, crs="EPSG:5186")
    >>> x, _ = grid.centres()
    >>> bands = contour_geojson(grid, x, levels=[0, 50, 100], unit="m", to_crs=None)
    >>> [f["properties"] for f in bands["features"]]
    [{'lower': 0.0, 'upper': 50.0, 'unit': 'm'}, {'lower': 50.0, 'upper': 100.0, 'unit': 'm'}]
    >>> round(shapely.from_geojson(json.dumps(bands["features"][0]["geometry"])).area)
    4050
    """
    field = np.ma.masked_invalid(np.asarray(values, dtype=np.float64))
    if field.shape != grid.shape or field.count() == 0:
        raise ValidationError(f"contour values {field.shape}: expected {grid.shape}, some finite")
    edges = _levels(field, levels)
    x, y = grid.centres()
    generator = contourpy.contour_generator(x[0], y[::-1, 0], field[::-1], fill_type="OuterOffset")
    transformer = Transformer.from_crs(grid.crs, to_crs or grid.crs, always_xy=True)
    features = []
    for lower, upper in itertools.pairwise(edges):
        band = _band(generator, lower, upper)
        if band is None:
            continue
        if to_crs is not None:
            band = shapely.transform(band, lambda xy: np.column_stack(transformer.transform(*xy.T)))
        properties: dict[str, Any] = {"lower": lower, "upper": upper}
        if unit is not None:
            properties["unit"] = unit
        geometry = json.loads(shapely.to_geojson(band))
        features.append({"type": "Feature", "geometry": geometry, "properties": properties})
    return {"type": "FeatureCollection", "features": features}


def _band(generator: Any, lower: float, upper: float) -> Any:
    """The (Multi)Polygon where ``lower < value ≤ upper``: outer rings with their holes."""
    rings, offsets = generator.filled(lower, upper)
    parts = []
    for points, offset in zip(rings, offsets, strict=True):
        holes = [points[a:b] for a, b in itertools.pairwise(offset[1:])]
        parts.append(shapely.Polygon(points[offset[0] : offset[1]], holes))
    return shapely.make_valid(shapely.union_all(parts)) if parts else None


def _levels(
    field: np.ma.MaskedArray[Any, Any], levels: int | Sequence[float] | None
) -> list[float]:
    low, high = float(field.min()), float(field.max())
    if levels is None or isinstance(levels, int):
        ticks = MaxNLocator(levels or 10).tick_values(low, high)
        edges = [float(t) for t in ticks]
    else:
        edges = sorted(float(level) for level in levels)
    if len(edges) < 2 or len(set(edges)) != len(edges):
        raise ValidationError(f"contour levels {edges}: expected at least two distinct edges")
    return edges


def render_map(
    path: str | Path,
    grid: Grid,
    values: ArrayLike,
    *,
    title: str,
    unit: str,
    districts: Any = None,
    points: ArrayLike | None = None,
    cmap: str | Colormap = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    caption: str | None = None,
) -> Path:
    """A north-up PNG map of a grid of values (1200 × 1000 px at 150 dpi).

    The colour bar is titled with ``unit``; ``districts`` (a GeoDataFrame of outlines, any CRS)
    are reprojected and drawn on top, ``points`` (``(x, y)`` in the grid CRS, e.g. the sensor
    sites behind a kriged surface) as small dots. Axes are in metres with a scale bar and a
    north arrow; NaN cells stay white.

    Examples
    --------
    >>> import tempfile
    >>> grid = Grid(west=200000.0, north=550000.0, cell=100.0, width=30, height=20)
    >>> x, y = grid.centres()
    >>> out = render_map(tempfile.mkdtemp() + "/t.png", grid, x - 200000, title="T", unit="m")
    >>> out.suffix
    '.png'
    """
    field = np.ma.masked_invalid(np.asarray(values, dtype=np.float64))
    if field.shape != grid.shape:
        raise ValidationError(f"map values {field.shape}: expected the grid shape {grid.shape}")
    figure, axes = new_figure(title)
    minx, miny, maxx, maxy = grid.bounds
    image = axes.imshow(
        field, extent=(minx, maxx, miny, maxy), origin="upper", cmap=cmap,
        vmin=vmin, vmax=vmax, interpolation="nearest",
    )  # fmt: skip
    figure.colorbar(image, ax=axes, shrink=0.8).set_label(unit)
    if districts is not None:
        _draw_outlines(axes, districts.to_crs(grid.crs).geometry.to_numpy())
    if points is not None:
        xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        axes.scatter(xy[:, 0], xy[:, 1], s=6, c="black", edgecolors="white", linewidths=0.4)
    axes.set_xlim(minx, maxx)
    axes.set_ylim(miny, maxy)
    _decorate(axes, grid.crs)
    if caption:
        figure.text(0.01, 0.005, caption, fontsize=7, color="0.3", ha="left", va="bottom")
    return save_figure(figure, path)


def render_choropleth(
    path: str | Path,
    frame: Any,
    column: str,
    *,
    title: str,
    unit: str | None = None,
    categorical: bool = False,
    cmap: str | Colormap | None = None,
) -> Path:
    """A PNG of polygons (or points) of a GeoDataFrame coloured by ``column``.

    Continuous values get a colour bar titled ``unit``; ``categorical=True`` a legend of
    classes, with the customary hot-spot colours (:data:`CLASS_COLOURS`) for the labels of
    :mod:`.hotspots` and a qualitative palette otherwise. Geographic frames are drawn in
    EPSG:5186 so that distances on the map are true.

    Examples
    --------
    >>> import tempfile, geopandas as gpd
    >>> frame = gpd.GeoDataFrame({"v": [1.0, 2.0]}, geometry=[shapely.box(0, 0, 1, 1),
    ...     shapely.box(1, 0, 2, 1)], crs="EPSG:5186")
    >>> render_choropleth(tempfile.mkdtemp() + "/c.png", frame, "v", title="V").name
    'c.png'
    """
    if column not in frame.columns:
        raise ValidationError(
            f"choropleth column {column!r}: expected one of {list(frame.columns)}"
        )
    if frame.crs is not None and frame.crs.is_geographic:
        frame = frame.to_crs(CITY_CRS)
    figure, axes = new_figure(title)
    geoms = frame.geometry.to_numpy()
    if categorical:
        colours, handles = _category_colours(frame[column].astype(str).to_numpy(), cmap)
        axes.legend(handles=handles, title=unit, loc="upper left", bbox_to_anchor=(1.01, 1))
    else:
        values = frame[column].to_numpy(dtype=np.float64)
        mappable = _scalar_mappable(values, cmap or "viridis")
        colours = mappable.to_rgba(values)
        figure.colorbar(mappable, ax=axes, shrink=0.8).set_label(unit or column)
    polygonal = shapely.get_dimensions(geoms) == 2
    axes.add_collection(PatchCollection(
        _patches(geoms[polygonal]), facecolors=colours[polygonal], edgecolors="0.25",
        linewidths=0.5,
    ))  # fmt: skip
    if (~polygonal).any():
        xy = shapely.get_coordinates(shapely.centroid(geoms[~polygonal]))
        axes.scatter(xy[:, 0], xy[:, 1], s=18, c=colours[~polygonal], edgecolors="0.25")
    minx, miny, maxx, maxy = shapely.total_bounds(geoms)
    pad = 0.02 * max(maxx - minx, maxy - miny, 1.0)
    axes.set_xlim(minx - pad, maxx + pad)
    axes.set_ylim(miny - pad, maxy + pad)
    _decorate(axes, str(frame.crs or CITY_CRS))
    return save_figure(figure, path)


def render_heatmap(
    path: str | Path,
    table: ArrayLike,
    *,
    rows: Sequence[str],
    columns: Sequence[str],
    title: str,
    unit: str,
    cmap: str | Colormap = "viridis",
) -> Path:
    """A labelled matrix picture, e.g. mean congestion by hour (rows) and weekday (columns).

    Cells are annotated with their value when there are at most 200 of them.

    Examples
    --------
    >>> import tempfile
    >>> table = np.arange(6.0).reshape(3, 2)
    >>> render_heatmap(tempfile.mkdtemp() + "/h.png", table, rows=["0h", "1h", "2h"],
    ...                columns=["Mon", "Tue"], title="Speed", unit="km/h").name
    'h.png'
    """
    matrix = np.asarray(table, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape != (len(rows), len(columns)):
        raise ValidationError(
            f"heatmap table {matrix.shape}: expected ({len(rows)}, {len(columns)}) for the labels"
        )
    figure, axes = new_figure(title)
    image = axes.imshow(np.ma.masked_invalid(matrix), cmap=cmap, aspect="auto")
    figure.colorbar(image, ax=axes).set_label(unit)
    axes.set_xticks(range(len(columns)), labels=list(columns))
    axes.set_yticks(range(len(rows)), labels=list(rows))
    if matrix.size <= 200:
        rgba = image.cmap(image.norm(matrix))
        dark = rgba[..., :3] @ np.array([0.299, 0.587, 0.114]) < 0.5  # ITU-R BT.601 luma
        for (row, col), value in np.ndenumerate(matrix):
            if np.isfinite(value):
                axes.text(col, row, f"{value:.3g}", ha="center", va="center", fontsize=6,
                          color="white" if dark[row, col] else "black")  # fmt: skip
    return save_figure(figure, path)


def new_figure(title: str, *, size: tuple[float, float] = _SIZE_INCHES) -> tuple[Figure, Any]:
    """A titled figure on the Agg canvas (no pyplot state) and its one axes; ``size`` in inches
    at 150 dpi (default 8 × 6.67 = 1200 × 1000 px)."""
    figure = Figure(figsize=size, dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title(title)
    return figure, axes


def save_figure(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` as a PNG at 150 dpi and return the path."""
    out = Path(path)
    figure.savefig(out, dpi=_DPI, format="png")
    logger.info("wrote %s", out)
    return out


def _decorate(axes: Any, crs: str) -> None:
    """Metric axes, equal aspect, a scale bar (1-2-5 length ≈ ⅕ of the width), a north arrow."""
    axes.set_aspect("equal")
    axes.set_xlabel(f"easting (m, {crs})")
    axes.set_ylabel("northing (m)")
    axes.ticklabel_format(style="plain", useOffset=False)
    minx, maxx = axes.get_xlim()
    miny, maxy = axes.get_ylim()
    target = (maxx - minx) / 5
    magnitude = 10 ** math.floor(math.log10(target))
    length = max(s * magnitude for s in (1, 2, 5) if s * magnitude <= target)
    x0, y0, height = minx + 0.04 * (maxx - minx), miny + 0.04 * (maxy - miny), 0.012 * (maxy - miny)
    axes.add_patch(Rectangle((x0, y0), length, height, facecolor="black", edgecolor="white"))
    text = f"{length / 1000:g} km" if length >= 1000 else f"{length:g} m"
    axes.text(x0 + length / 2, y0 + 2 * height, text, ha="center", va="bottom", fontsize=8)
    arrow = {"arrowstyle": "-|>", "color": "black"}
    axes.annotate("N", (0.95, 0.95), (0.95, 0.85), "axes fraction", arrowprops=arrow, ha="center")


def _draw_outlines(axes: Any, geoms: NDArray[Any]) -> None:
    lines = shapely.get_parts(shapely.boundary(geoms[shapely.get_dimensions(geoms) == 2]))
    coords, index = shapely.get_coordinates(lines, return_index=True)
    segments = np.split(coords, np.flatnonzero(np.diff(index)) + 1)
    axes.add_collection(LineCollection(segments, colors="0.15", linewidths=0.6))


def _patches(geoms: NDArray[Any]) -> list[PathPatch]:
    """One compound path per polygon part, exterior and holes, so holes stay transparent."""
    patches = []
    for polygon in shapely.get_parts(geoms):
        rings = [polygon.exterior, *polygon.interiors]
        paths = [MplPath(np.asarray(ring.coords)[:, :2], closed=True) for ring in rings]
        patches.append(PathPatch(MplPath.make_compound_path(*paths)))
    return patches


def _category_colours(labels: NDArray[Any], cmap: str | Colormap | None) -> tuple[Any, list[Any]]:
    """Hot-spot classes in their customary colours; other categories from ``cmap`` (tab10)."""
    present = list(dict.fromkeys(labels))
    known = all(label in CLASS_COLOURS for label in present)
    order = [c for c in CLASS_COLOURS if c in present] if known else sorted(present)
    palette = colormaps[cmap] if isinstance(cmap, str) else cmap or colormaps["tab10"]
    lookup = {
        label: CLASS_COLOURS[label] if known else palette(i % palette.N)
        for i, label in enumerate(order)
    }
    colours = np.array([to_rgba(lookup[label]) for label in labels]).reshape(-1, 4)
    handles = [Patch(facecolor=lookup[label], edgecolor="0.25", label=label) for label in order]
    return colours, handles


def _scalar_mappable(values: NDArray[np.float64], cmap: str | Colormap) -> Any:
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    return ScalarMappable(norm=Normalize(low, high), cmap=cmap)
