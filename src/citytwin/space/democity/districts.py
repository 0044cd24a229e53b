"""Demo gu and dong: a Voronoi partition of the city into dong, grouped into gu.

Dong are the Voronoi cells (Voronoi 1908; GEOS's Delaunay-based construction) of jittered grid
points, clipped to the city limit, so they tile it without gaps or overlaps. Each dong joins the
gu whose seed (a dong seed chosen by farthest-point sampling) is nearest; a gu is the union of its
dong. Codes follow KOSTAT's shape — gu 5 digits, dong 7 digits starting with its gu code — under
the prefix ``99``, which no real 시도 uses.
"""

from __future__ import annotations

from typing import Final

import geopandas as gpd
import numpy as np
import shapely
from numpy.typing import NDArray

from citytwin.space.democity.layout import F64, PLAN_CRS, CityPlan

CODE_PREFIX: Final = "99"
GU_STEMS: Final = (
    ("한빛", "Hanbit"), ("가람", "Garam"), ("누리", "Nuri"), ("새솔", "Saesol"),
    ("다온", "Daon"), ("미르", "Mireu"), ("아라", "Ara"), ("별빛", "Byeolbit"),
    ("하늘", "Haneul"), ("푸른", "Pureun"), ("은빛", "Eunbit"), ("솔내", "Sollae"),
)  # fmt: skip
DONG_STEMS: Final = (
    ("가온", "Gaon"), ("나래", "Narae"), ("다솜", "Dasom"), ("라온", "Raon"), ("마루", "Maru"),
    ("새터", "Saeteo"), ("솔밭", "Solbat"), ("시내", "Sinae"), ("아름", "Areum"), ("여울", "Yeoul"),
    ("온누리", "Onnuri"), ("우람", "Uram"), ("윤슬", "Yunseul"), ("이음", "Ieum"),
    ("꽃뫼", "Kkotmoe"), ("너른", "Neoreun"), ("늘봄", "Neulbom"), ("달빛", "Dalbit"),
    ("돌담", "Doldam"), ("들녘", "Deulnyeok"), ("맑은", "Malgeun"), ("모래내", "Moraenae"),
    ("물빛", "Mulbit"), ("바람", "Baram"), ("밤골", "Bamgol"), ("버들", "Beodeul"),
    ("벼리", "Byeori"), ("보라", "Bora"), ("봄내", "Bomnae"), ("비단", "Bidan"),
    ("샘골", "Saemgol"), ("서리", "Seori"), ("소담", "Sodam"), ("송골", "Songgol"),
    ("아침", "Achim"), ("오름", "Oreum"),
    ("잔디", "Jandi"), ("참솔", "Chamsol"), ("큰골", "Keungol"), ("한울", "Hanul"),
    ("햇살", "Haetsal"), ("매봉", "Maebong"),
)  # fmt: skip


def build_districts(plan: CityPlan, rng: np.random.Generator) -> gpd.GeoDataFrame:
    """Gu and dong rows in :class:`~citytwin.space.districts.DistrictLayer`'s columns.

    Between 48 and 80 dong (a grid of 8–10 × 6–8 jittered seeds) in 6–9 gu.
    """
    seeds = _dong_seeds(plan, rng)
    cells = shapely.voronoi_polygons(
        shapely.multipoints(seeds), extend_to=plan.boundary, ordered=True
    )
    dong = shapely.intersection(shapely.get_parts(cells), plan.boundary)
    gu_of = _group(seeds, int(rng.integers(6, 10)))
    gu_order = np.argsort(gu_of, kind="stable")  # dong listed gu by gu, north-west first
    gu_codes = [f"{CODE_PREFIX}{10 * (g + 1):03d}" for g in range(gu_of.max() + 1)]
    gu_names = [GU_STEMS[i] for i in rng.permutation(len(GU_STEMS))[: len(gu_codes)]]
    dong_names = _dong_names(len(seeds), rng)
    rows: list[dict[str, object]] = []
    for g, code in enumerate(gu_codes):
        name, eng = gu_names[g]
        union = shapely.union_all(dong[gu_of == g])
        rows.append(_row(code, f"{name}구", f"{eng}-gu", "gu", None, union))
    counters = dict.fromkeys(gu_codes, 0)
    for d in gu_order:
        parent = gu_codes[gu_of[d]]
        counters[parent] += 1
        name, eng = dong_names[d]
        rows.append(_row(f"{parent}{counters[parent]:02d}", name, eng, "dong", parent, dong[d]))
    return gpd.GeoDataFrame(rows, geometry="geometry", crs=PLAN_CRS)


def _row(
    code: str, name: str, eng: str, level: str, parent: str | None, geometry: shapely.Geometry
) -> dict[str, object]:
    return {
        "key": f"{level}:{code}", "code": code, "name": name, "name_eng": eng, "level": level,
        "parent_code": parent, "geometry": geometry,
    }  # fmt: skip


def _dong_seeds(plan: CityPlan, rng: np.random.Generator) -> F64:
    """Cell centres of a cols × rows grid, each moved by up to 35 % of a cell."""
    west, south, east, north = plan.bounds
    cols, rows = int(rng.integers(8, 11)), int(rng.integers(6, 9))
    dx, dy = (east - west) / cols, (north - south) / rows
    i, j = np.meshgrid(np.arange(cols), np.arange(rows)[::-1])
    x = west + (i.ravel() + 0.5 + rng.uniform(-0.35, 0.35, i.size)) * dx
    y = south + (j.ravel() + 0.5 + rng.uniform(-0.35, 0.35, j.size)) * dy
    seeds: F64 = np.c_[x, y]
    return seeds


def _group(seeds: F64, count: int) -> NDArray[np.intp]:
    """Gu of each seed: nearest of ``count`` centres spread by farthest-point sampling.

    Gu are numbered from north-west to south-east by their centre, as codes are assigned.
    """
    chosen = [0]
    distance = np.hypot(*(seeds - seeds[0]).T)
    for _ in range(count - 1):
        chosen.append(int(np.argmax(distance)))
        distance = np.minimum(distance, np.hypot(*(seeds - seeds[chosen[-1]]).T))
    centres = seeds[chosen]
    rank = np.lexsort((centres[:, 0], -np.round(centres[:, 1], -3)))
    offset = seeds[:, None, :] - centres[None, rank, :]
    nearest: NDArray[np.intp] = np.argmin(np.hypot(offset[..., 0], offset[..., 1]), axis=1)
    return nearest


def _dong_names(count: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    """Distinct names; a stem used twice is numbered (``가온1동``, ``가온2동``), as in Seoul."""
    stems = [DONG_STEMS[i] for i in rng.permutation(len(DONG_STEMS))]
    uses = np.bincount(np.arange(count) % len(stems), minlength=len(stems))
    names = []
    for k in range(count):
        stem, eng = stems[k % len(stems)]
        number = str(k // len(stems) + 1) if uses[k % len(stems)] > 1 else ""
        names.append((f"{stem}{number}동", f"{eng}{number}-dong"))
    return names
