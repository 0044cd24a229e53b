"""LoD1 block models: building footprints extruded into closed, outward-oriented solids.

Each footprint polygon becomes one shell (Biljecki et al., "An improved LOD specification for 3D
building models", *Computers, Environment and Urban Systems* 59, 2016: LoD1 is a prism):

* rings are oriented first — exterior counter-clockwise seen from above, holes clockwise;
* the bottom face at ``min_height`` takes the rings reversed, so its normal points down;
* the top face at ``min_height + height`` takes them as they are, so its normal points up;
* every ring edge ``a → b`` gives one wall quad ``[a₀, b₀, b₁, a₁]``, whose normal points to the
  right of travel — out of the building for a counter-clockwise exterior and into the courtyard
  for a clockwise hole.

Every edge is then shared by exactly two faces that run it in opposite directions, which is what
:func:`is_closed_and_outward` checks (the ISO 19107 / val3dity notion of a valid solid, less the
geometric self-intersection tests).

All coordinates are gathered with shapely 2 into one array; indices, walls and faces are computed
with numpy over every building at once. Only the final split into per-building lists loops.

>>> from shapely.geometry import box
>>> blocks = extrude_footprints([box(0, 0, 10, 20)], [12.0])
>>> blocks.vertices.shape, len(blocks.shells[0][0])  # 4 corners × 2 levels; bottom + top + 4 walls
((8, 3), 6)
>>> is_closed_and_outward(blocks.solid(0))
(True, 'closed, outward, volume 2400.000 m³')
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray

logger = logging.getLogger(__name__)

Ring = list[int]
Surface = list[Ring]  # first ring exterior, then holes
Shell = list[Surface]


@dataclass(frozen=True)
class Solid:
    """One closed shell: surfaces of rings of indices into ``vertices`` (N×3, metres)."""

    vertices: NDArray[np.float64]
    surfaces: Shell


@dataclass(frozen=True)
class LoD1Blocks:
    """Extruded buildings sharing one vertex array.

    Attributes
    ----------
    vertices
        N×3 float64: for every footprint vertex its bottom copy, then (same order) its top copy.
    shells
        One entry per extruded building, in input order; each is a list of shells (one per
        footprint polygon). A shell's surfaces are the bottom face, the top face, then the walls.
    rows
        Position in the input of each extruded building (``shells[i]`` belongs to ``rows[i]``).
    problems
        ``(input position, reason)`` for each footprint that could not be extruded.
    """

    vertices: NDArray[np.float64]
    shells: list[list[Shell]]
    rows: NDArray[np.intp]
    problems: list[tuple[int, str]] = field(default_factory=list)

    def solid(self, building: int, part: int = 0) -> Solid:
        """The ``part``-th shell of the ``building``-th extruded building, as a :class:`Solid`."""
        return Solid(self.vertices, self.shells[building][part])


def extrude_footprints(
    footprints: Sequence[Any] | NDArray[Any],
    height: ArrayLike,
    min_height: ArrayLike | None = None,
) -> LoD1Blocks:
    """Extrude (multi)polygon footprints into LoD1 solids.

    Parameters
    ----------
    footprints
        Polygons or MultiPolygons (shapely) in a metric CRS.
    height
        Block height above ``min_height``, metres, one per footprint.
    min_height
        Bottom of each block, metres; 0 (the ground) when not given. Missing values count as 0.

    Returns
    -------
    LoD1Blocks
        Footprints that are empty, not polygonal, of zero area, touch themselves at a vertex
        (that would make a non-manifold edge) or have a height that is not a positive number
        are left out and listed in ``problems``; nothing raises for one bad footprint.

    Raises
    ------
    ValueError
        ``height`` or ``min_height`` does not have one value per footprint.
    """
    geoms = np.asarray(footprints, dtype=object).reshape(-1)
    top, bottom = _levels(len(geoms), height, min_height)
    problems: dict[int, str] = _check_footprints(geoms, top - bottom)
    candidates = np.setdiff1d(np.arange(len(geoms)), np.fromiter(problems, np.intp, len(problems)))
    rings = _ring_vertices(geoms[candidates], candidates)
    for position in np.unique(rings.owner[rings.pinched]).tolist():
        problems[position] = "footprint rings touch at a vertex (the block would be non-manifold)"
    rings = rings.without(np.isin(rings.owner, np.fromiter(problems, np.intp, len(problems))))
    vertices = np.vstack(
        [
            np.column_stack([rings.xy, bottom[rings.owner]]),
            np.column_stack([rings.xy, top[rings.owner]]),
        ]
    )
    kept, shells = _shells(rings)
    for position, reason in sorted(problems.items()):
        logger.debug("footprint %d not extruded: %s", position, reason)
    return LoD1Blocks(vertices, shells, kept, sorted(problems.items()))


def _levels(
    count: int, height: ArrayLike, min_height: ArrayLike | None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Top and bottom z of every block, checking that there is one value per footprint."""
    heights = np.asarray(height, dtype=np.float64).reshape(-1)
    bottoms = (
        np.zeros(count)
        if min_height is None
        else np.nan_to_num(np.asarray(min_height, np.float64).reshape(-1), nan=0.0)
    )
    for name, values in (("height", heights), ("min_height", bottoms)):
        if len(values) != count:
            raise ValueError(
                f"{name} has {len(values)} values; expected one per footprint ({count})"
            )
    return bottoms + heights, bottoms


def _check_footprints(geoms: NDArray[Any], heights: NDArray[np.float64]) -> dict[int, str]:
    """Reasons, by position, why footprints cannot be extruded."""
    problems: dict[int, str] = {}
    kinds = shapely.get_type_id(geoms)
    polygonal = np.isin(kinds, (3, 6))  # Polygon, MultiPolygon
    area = np.where(polygonal, shapely.area(geoms), 0.0)
    checks = (
        (~polygonal & (kinds >= 0), "footprint is not a Polygon or MultiPolygon"),
        (kinds < 0, "footprint is missing"),
        (polygonal & shapely.is_empty(geoms), "footprint is empty"),
        (polygonal & ~(area > 0), "footprint has zero area"),
        (~np.isfinite(heights), "height is not a number"),
        (np.isfinite(heights) & (heights <= 0), "height is not positive"),
    )
    for mask, reason in checks:
        for position in np.flatnonzero(mask).tolist():
            problems.setdefault(position, reason)
    return problems


@dataclass(frozen=True)
class _Rings:
    """Footprint ring vertices, flattened: closing point and repeated vertices removed."""

    xy: NDArray[np.float64]  # M×2
    ring: NDArray[np.intp]  # ring id of each vertex, non-decreasing
    part: NDArray[np.intp]  # polygon id of each vertex, non-decreasing
    owner: NDArray[np.intp]  # input position of each vertex
    pinched: NDArray[np.bool_]  # vertex repeats another vertex of its polygon

    def without(self, drop: NDArray[np.bool_]) -> _Rings:
        keep = ~drop
        return _Rings(
            self.xy[keep], self.ring[keep], self.part[keep], self.owner[keep], self.pinched[keep]
        )


def _ring_vertices(geoms: NDArray[Any], positions: NDArray[np.intp]) -> _Rings:
    """Oriented ring vertices of every polygon, without degenerate rings or repeated points."""
    oriented = shapely.orient_polygons(geoms, exterior_cw=False)
    parts, part_owner = shapely.get_parts(oriented, return_index=True)
    keep = shapely.area(parts) > 0  # a zero-area member of a MultiPolygon adds nothing
    parts, part_owner = parts[keep], part_owner[keep]
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    xy, ring_of = shapely.get_coordinates(rings, return_index=True)
    ring_end = np.r_[ring_of[1:] != ring_of[:-1], True]
    xy, ring_of = xy[~ring_end], ring_of[~ring_end]  # the closing point repeats the first
    xy, ring_of = _drop_repeats(xy, ring_of)
    counts = np.bincount(ring_of, minlength=len(rings))
    xy, ring_of = xy[counts[ring_of] >= 3], ring_of[counts[ring_of] >= 3]
    part_of = ring_part[ring_of]
    return _Rings(
        xy, ring_of, part_of, positions[part_owner[part_of]], _repeated_in_part(xy, part_of)
    )


def _drop_repeats(
    xy: NDArray[np.float64], ring_of: NDArray[np.intp]
) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """Remove vertices equal to their cyclic predecessor (zero-length edges).

    One pass suffices: dropping ``v`` equal to its predecessor ``p`` leaves its successor
    compared with ``v``, which is ``p``. A ring of one repeated point vanishes entirely.
    """
    if not len(xy):
        return xy, ring_of
    starts = np.r_[True, ring_of[1:] != ring_of[:-1]]
    ends = np.r_[starts[1:], True]
    previous = np.arange(len(xy)) - 1
    previous[starts] = np.flatnonzero(ends)
    repeat = np.all(xy == xy[previous], axis=1)
    return xy[~repeat], ring_of[~repeat]


def _repeated_in_part(xy: NDArray[np.float64], part_of: NDArray[np.intp]) -> NDArray[np.bool_]:
    """Which vertices share their exact position with another vertex of the same polygon."""
    if not len(xy):
        return np.zeros(0, bool)
    keys = np.column_stack([part_of.astype(np.float64), xy])
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    pinched: NDArray[np.bool_] = counts[inverse.reshape(-1)] > 1
    return pinched


def _shells(rings: _Rings) -> tuple[NDArray[np.intp], list[list[Shell]]]:
    """Bottom, top and wall surfaces of every polygon, grouped by building."""
    count = len(rings.xy)
    index = np.arange(count)
    starts = np.r_[True, rings.ring[1:] != rings.ring[:-1]] if count else np.zeros(0, bool)
    following = index + 1
    ends = np.r_[starts[1:], True] if count else starts
    following[ends] = index[starts]
    walls = np.column_stack([index, following, following + count, index + count]).tolist()
    ring_breaks = np.flatnonzero(starts)[1:].tolist()
    bottoms = [ring[::-1] for ring in np.split(index, ring_breaks)]
    tops = np.split(index + count, ring_breaks)
    part_rings = _group_starts(rings.part[starts])
    part_vertices = _group_starts(rings.part)
    buildings: dict[int, list[Shell]] = {}
    for (ring_from, ring_to), (vertex_from, vertex_to) in zip(
        part_rings, part_vertices, strict=True
    ):
        shell: Shell = [
            [ring.tolist() for ring in bottoms[ring_from:ring_to]],
            [ring.tolist() for ring in tops[ring_from:ring_to]],
            *([quad] for quad in walls[vertex_from:vertex_to]),
        ]
        buildings.setdefault(int(rings.owner[vertex_from]), []).append(shell)
    return np.fromiter(buildings, np.intp, len(buildings)), list(buildings.values())


def _group_starts(labels: NDArray[np.intp]) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of equal values in a sorted label array."""
    if not len(labels):
        return []
    breaks = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    bounds = np.r_[0, breaks, len(labels)]
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))


def is_closed_and_outward(solid: Solid) -> tuple[bool, str]:
    """Whether a shell is a closed 2-manifold with outward-pointing faces, and why not.

    Vertices at the same position are merged first (as val3dity does), so two indices for one
    point do not hide an open seam. Then every directed edge must occur exactly once and its
    reverse exactly once, no edge may have zero length, and the signed volume (divergence
    theorem over fan-triangulated faces) must be positive.

    >>> cube = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0],
    ...                  [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], float)
    >>> faces = [[[0, 3, 2, 1]], [[4, 5, 6, 7]], [[0, 1, 5, 4]], [[1, 2, 6, 5]],
    ...          [[2, 3, 7, 6]], [[3, 0, 4, 7]]]
    >>> is_closed_and_outward(Solid(cube, faces))
    (True, 'closed, outward, volume 1.000 m³')
    >>> is_closed_and_outward(Solid(cube, faces[:-1]))[0]
    False
    """
    rings = [ring for surface in solid.surfaces for ring in surface]
    if not rings or any(len(ring) < 3 for ring in rings):
        return False, "a surface ring has fewer than 3 vertices"
    flat = np.concatenate([np.asarray(ring, np.intp) for ring in rings])
    if flat.min() < 0 or flat.max() >= len(solid.vertices):
        return False, f"a vertex index is outside 0..{len(solid.vertices) - 1}"
    # work on this shell's vertices only: the array may be shared by a whole city
    used, local = np.unique(flat, return_inverse=True)
    vertices = np.asarray(solid.vertices, np.float64)[used]
    _, merged = np.unique(vertices, axis=0, return_inverse=True)
    edges = _directed_edges(rings, merged.reshape(-1)[local.reshape(-1)])
    reason = _edge_problem(edges, vertices, merged.reshape(-1))
    if reason:
        return False, reason
    volume = _signed_volume(vertices, _renumber(solid.surfaces, local.reshape(-1)))
    if not volume > 0:
        return False, f"signed volume {volume:.3f} m³ is not positive (faces point inwards)"
    return True, f"closed, outward, volume {volume:.3f} m³"


def _directed_edges(rings: list[Ring], flat_ids: NDArray[np.intp]) -> NDArray[np.intp]:
    """E×2 directed edges of all rings, given the (merged) vertex id of each ring position."""
    sizes = np.array([len(ring) for ring in rings])
    starts = np.repeat(np.cumsum(sizes) - sizes, sizes)
    position = np.arange(len(flat_ids))
    following = starts + (position - starts + 1) % np.repeat(sizes, sizes)
    return np.column_stack([flat_ids, flat_ids[following]])


def _renumber(surfaces: Shell, local: NDArray[np.intp]) -> Shell:
    """The same surfaces with indices replaced by ``local`` (given ring by ring, in order)."""
    values = iter(local.tolist())
    return [[[next(values) for _ in ring] for ring in surface] for surface in surfaces]


def _edge_problem(
    edges: NDArray[np.intp], vertices: NDArray[np.float64], merged: NDArray[np.intp]
) -> str:
    """Why the edges do not pair up into a closed, consistently oriented surface ('' if they do)."""
    where = {int(m): vertices[i].round(3).tolist() for i, m in enumerate(merged.tolist())}
    degenerate = edges[:, 0] == edges[:, 1]
    if degenerate.any():
        return f"zero-length edge at {where[int(edges[degenerate][0, 0])]}"
    directed, counts = np.unique(edges, axis=0, return_counts=True)
    if (counts > 1).any():
        a, b = directed[counts > 1][0].tolist()
        return f"edge {where[a]} → {where[b]} is used more than once in the same direction"
    forward = {(a, b) for a, b in directed.tolist()}
    unpaired = [(a, b) for a, b in forward if (b, a) not in forward]
    if unpaired:
        a, b = min(unpaired)
        return f"edge {where[a]} → {where[b]} has no opposite edge (the shell is open)"
    return ""


def _signed_volume(vertices: NDArray[np.float64], surfaces: Shell) -> float:
    """Signed volume: Σ det(c, vᵢ, vᵢ₊₁) / 6 over fans around each face's first vertex."""
    origin = vertices.mean(axis=0)
    total = 0.0
    for surface in surfaces:
        apex = vertices[surface[0][0]] - origin
        for ring in surface:
            points = vertices[np.asarray(ring, np.intp)] - origin
            cross = np.cross(points, np.roll(points, -1, axis=0))
            total += float((cross @ apex).sum())
    return total / 6.0
