"""OGC API – Features Part 1 (Core), read side, over the store's city layers.

Reference: OGC 17-069r4, OGC API – Features – Part 1: Core — ``/collections``,
``/collections/{collectionId}``, ``/collections/{collectionId}/items`` (``bbox``, ``limit``,
``offset`` paging with a ``next`` link) and ``/collections/{collectionId}/items/{featureId}``.

The store keeps geometries in the city CRS (``Settings.city_crs``, EPSG:5186 for Korea); every
response is GeoJSON (RFC 7946) in WGS84 longitude/latitude, and every ``bbox`` parameter is
WGS84 ``minLon,minLat,maxLon,maxLat``. A WGS84 bbox becomes a city-CRS bbox by transforming its
four corners and taking their envelope (a superset of the exact reprojected box: the store's
intersection test then keeps every feature that intersects it).

Feature ids are the store keys (``gu:11240``, ``osm:way/123``); they may contain ``/``, so a
client should URL-encode them (``osm:way%2F123``); both forms resolve.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any

import numpy as np
import shapely
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from numpy.typing import NDArray

from citytwin.api.errors import InvalidParameterError, NotFoundError
from citytwin.api.sta import Access
from citytwin.space.crs import transformer
from citytwin.store.base import FeatureBatch, Store

WGS84 = "EPSG:4326"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
GEOJSON = "application/geo+json"
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
# the city layers published as collections, in this order, when the store has them
COLLECTIONS: dict[str, str] = {
    "districts": "Administrative districts (gu and dong)",
    "buildings": "Buildings",
    "road_links": "Road network links",
    "road_nodes": "Road network nodes",
}
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]
BBox = tuple[float, float, float, float]


class FeatureNotFoundError(NotFoundError):
    """A collection, feature or city object the request names does not exist."""

    def __init__(self, what: str, name: str, *, parameter: str) -> None:
        self.parameter = parameter
        Exception.__init__(self, f"{what} {name!r} not found")


# -- parameters ---------------------------------------------------------------------------------
def parse_bbox(value: str | None, parameter: str = "bbox") -> BBox | None:
    """``minLon,minLat,maxLon,maxLat`` in WGS84, validated; ``None`` when absent.

    >>> parse_bbox("126.9,37.5,127.1,37.6")
    (126.9, 37.5, 127.1, 37.6)
    """
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) != 4:
        raise InvalidParameterError(
            parameter, f"expected 4 numbers minLon,minLat,maxLon,maxLat, got {value!r}"
        )
    try:
        west, south, east, north = (float(p) for p in parts)
    except ValueError:
        raise InvalidParameterError(parameter, f"not a list of numbers: {value!r}") from None
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        raise InvalidParameterError(parameter, f"values must be finite: {value!r}")
    if not (-180 <= west <= east <= 180 and -90 <= south <= north <= 90):
        raise InvalidParameterError(
            parameter,
            f"expected WGS84 -180 <= minLon <= maxLon <= 180 and -90 <= minLat <= maxLat <= 90, "
            f"got {value!r}",
        )
    return west, south, east, north


def check_interval(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and start >= end:
        raise InvalidParameterError("end", f"end ({end.isoformat()}) must be after start")


def city_bbox(bbox: BBox, crs: str) -> BBox:
    """The city-CRS envelope of a WGS84 bbox's four transformed corners."""
    west, south, east, north = bbox
    xs, ys = transformer(WGS84, crs).transform(
        np.array([west, east, east, west]), np.array([south, south, north, north])
    )
    return float(np.min(xs)), float(np.min(ys)), float(np.max(xs)), float(np.max(ys))


# -- rendering ----------------------------------------------------------------------------------
def plain(value: Any) -> Any:
    """A JSON-able value: numpy scalars unwrapped, NaN/NaT → None, timestamps → ISO 8601."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, datetime):
        return None if value != value else value.isoformat()  # NaT compares unequal
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is not None and not isinstance(value, str | int | float | bool):
        try:
            if value != value:  # pandas NA / NaT
                return None
        except (TypeError, ValueError):
            pass
    return value


def to_wgs84_geometries(wkb: list[bytes], crs: str) -> NDArray[np.object_]:
    """Store WKB (city CRS) → shapely geometries in WGS84 lon/lat."""
    shapes = shapely.from_wkb(np.asarray(wkb, dtype=object))
    if not len(shapes):
        return np.asarray(shapes, dtype=object)
    forward = transformer(crs, WGS84)

    def project(xy: NDArray[np.float64]) -> NDArray[np.float64]:
        lon, lat = forward.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([lon, lat])

    return np.asarray(shapely.transform(shapes, project), dtype=object)


def geojson_features(batch: FeatureBatch, crs: str) -> list[dict[str, Any]]:
    """GeoJSON Features (WGS84) of a store batch; the store key is the feature ``id``."""
    shapes = to_wgs84_geometries(batch.wkb, crs)
    return [
        {
            "type": "Feature",
            "id": key,
            "geometry": None if shape is None else shapely.geometry.mapping(shape),
            "properties": plain(props),
        }
        for key, props, shape in zip(batch.ids, batch.properties, shapes, strict=True)
    ]


def take(batch: FeatureBatch, start: int, stop: int) -> FeatureBatch:
    return FeatureBatch(batch.ids[start:stop], batch.properties[start:stop], batch.wkb[start:stop])


def find_feature(store: Store, layer: str, key: str) -> FeatureBatch:
    """The feature of ``layer`` with id ``key`` (zero or one)."""
    batch = store.features(layer)
    index = [i for i, k in enumerate(batch.ids) if k == key]
    return take(batch, index[0], index[0] + 1) if index else take(batch, 0, 0)


def wgs84_extent(batch: FeatureBatch, crs: str) -> list[float] | None:
    if not len(batch):
        return None
    bounds = shapely.total_bounds(shapely.from_wkb(np.asarray(batch.wkb, dtype=object)))
    if not np.isfinite(bounds).all():
        return None
    xs, ys = transformer(crs, WGS84).transform(
        np.array([bounds[0], bounds[2], bounds[2], bounds[0]]),
        np.array([bounds[1], bounds[1], bounds[3], bounds[3]]),
    )
    return [float(np.min(xs)), float(np.min(ys)), float(np.max(xs)), float(np.max(ys))]


def geojson_response(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, media_type=GEOJSON)


# -- dependencies -------------------------------------------------------------------------------
def city_crs(request: Request) -> str:
    crs: str = request.app.state.settings.city_crs
    return crs


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def present_collections(store: Store) -> list[str]:
    layers = store.layers()
    return [name for name in COLLECTIONS if layers.get(name)]


def _check_collection(store: Store, collection_id: str) -> None:
    if collection_id not in present_collections(store):
        raise FeatureNotFoundError("collection", collection_id, parameter="collectionId")


def _describe(store: Store, collection_id: str, base: str, crs: str) -> dict[str, Any]:
    url = f"{base}/collections/{collection_id}"
    extent = wgs84_extent(store.features(collection_id), crs)
    return {
        "id": collection_id,
        "title": COLLECTIONS[collection_id],
        "itemType": "feature",
        "crs": [CRS84],
        "extent": {"spatial": {"bbox": [extent] if extent else [], "crs": CRS84}},
        "links": [
            {"href": url, "rel": "self", "type": "application/json"},
            {"href": f"{url}/items", "rel": "items", "type": GEOJSON},
        ],
    }


# -- routes -------------------------------------------------------------------------------------
def landing(request: Request) -> dict[str, Any]:
    base = base_url(request)
    return {
        "title": "citytwin OGC API – Features",
        "links": [
            {"href": f"{base}/", "rel": "self", "type": "application/json"},
            {"href": f"{base}/conformance", "rel": "conformance", "type": "application/json"},
            {"href": f"{base}/collections", "rel": "data", "type": "application/json"},
        ],
    }


def conformance() -> dict[str, Any]:
    return {"conformsTo": CONFORMANCE}


def list_collections(request: Request, access: Access) -> dict[str, Any]:
    base, crs = base_url(request), city_crs(request)
    with access.lock:
        store = access.store()
        described = [_describe(store, name, base, crs) for name in present_collections(store)]
    return {
        "links": [{"href": f"{base}/collections", "rel": "self", "type": "application/json"}],
        "collections": described,
    }


def get_collection(request: Request, access: Access, collection_id: str) -> dict[str, Any]:
    with access.lock:
        store = access.store()
        _check_collection(store, collection_id)
        return _describe(store, collection_id, base_url(request), city_crs(request))


def get_items(
    request: Request,
    access: Access,
    collection_id: str,
    bbox: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JSONResponse:
    box, crs = parse_bbox(bbox), city_crs(request)
    with access.lock:
        store = access.store()
        _check_collection(store, collection_id)
        batch = store.features(collection_id, bbox=None if box is None else city_bbox(box, crs))
    window = take(batch, offset, offset + limit)
    links = [{"href": str(request.url), "rel": "self", "type": GEOJSON}]
    if offset + limit < len(batch):
        href = str(request.url.include_query_params(offset=offset + limit, limit=limit))
        links.append({"href": href, "rel": "next", "type": GEOJSON})
    return geojson_response(
        {
            "type": "FeatureCollection",
            "features": geojson_features(window, crs),
            "numberMatched": len(batch),
            "numberReturned": len(window),
            "links": links,
        }
    )


def get_item(request: Request, access: Access, collection_id: str, feature_id: str) -> JSONResponse:
    crs = city_crs(request)
    with access.lock:
        store = access.store()
        _check_collection(store, collection_id)
        found = find_feature(store, collection_id, feature_id)
    if not len(found):
        raise FeatureNotFoundError(
            f"feature in collection {collection_id!r}", feature_id, parameter="featureId"
        )
    feature = geojson_features(found, crs)[0]
    url = f"{base_url(request)}/collections/{collection_id}"
    feature["links"] = [
        {"href": str(request.url), "rel": "self", "type": GEOJSON},
        {"href": url, "rel": "collection", "type": "application/json"},
    ]
    return geojson_response(feature)


def create_router() -> APIRouter:
    """OGC API – Features routes: ``/``, ``/conformance``, ``/collections`` and below."""
    router = APIRouter(tags=["features"])
    router.add_api_route("/", landing, methods=["GET"], name="features_landing")
    router.add_api_route("/conformance", conformance, methods=["GET"], name="conformance")
    router.add_api_route("/collections", list_collections, methods=["GET"], name="collections")
    router.add_api_route(
        "/collections/{collection_id}", get_collection, methods=["GET"], name="collection"
    )
    router.add_api_route(
        "/collections/{collection_id}/items", get_items, methods=["GET"], name="items",
        response_class=JSONResponse,
    )  # fmt: skip
    router.add_api_route(
        "/collections/{collection_id}/items/{feature_id:path}", get_item, methods=["GET"],
        name="item", response_class=JSONResponse,
    )  # fmt: skip
    return router
