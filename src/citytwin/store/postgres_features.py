"""City feature layers of the PostgreSQL store: one PostGIS table per layer, GiST-indexed.

Each layer is ``feature_<layer> (id text PRIMARY KEY, properties jsonb, geom geometry)`` with a
GiST index on ``geom``. Geometries are stored as given, in the city CRS, with SRID 0 like the
other backends (the contract carries no CRS; ``Settings.city_crs`` is the convention), so a bbox
needs no transformation. PostGIS is created on the first layer, not at open: an ingest-only
deployment does not need the extension or the privilege to create it.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg import sql

from citytwin.errors import ConfigurationError
from citytwin.store.base import FeatureBatch, WriteResult, check_layer_name
from citytwin.store.postgres_sql import lock_ddl

BBox = tuple[float, float, float, float]


def feature_query(table: sql.Identifier, bbox: BBox | None) -> tuple[sql.Composed, list[float]]:
    """The query :func:`read_features` runs, and its parameters.

    ``ST_Intersects`` asks the layer's GiST index for the envelopes that overlap the box (``&&``),
    then tests the geometries themselves.
    """
    where, params = sql.SQL("TRUE"), []
    if bbox is not None:
        where = sql.SQL("ST_Intersects(geom, ST_MakeEnvelope(%s, %s, %s, %s))")
        params = [float(v) for v in bbox]
    query = sql.SQL(
        'SELECT id, properties::text, ST_AsBinary(geom) FROM {} WHERE {} ORDER BY id COLLATE "C"'
    )
    return query.format(table, where), params


def feature_table(
    con: psycopg.Connection[Any], layer: str, *, create: bool, url: str = ""
) -> sql.Identifier | None:
    """The layer's table in the current schema; created (with PostGIS and the GiST index) when
    ``create`` is set, else None when it does not exist."""
    name = f"feature_{check_layer_name(layer)}"
    found = con.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_tables "
        "WHERE schemaname = current_schema() AND tablename = %s)",
        [name],
    ).fetchone()
    if found and found[0]:
        return sql.Identifier(name)
    if not create:
        return None
    require_postgis(con, url=url)
    with con.transaction():
        lock_ddl(con)
        con.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, properties jsonb, "
                "geom geometry)"
            ).format(sql.Identifier(name))
        )
        con.execute(
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING gist (geom)").format(
                sql.Identifier(f"{name}_geom"), sql.Identifier(name)
            )
        )
    return sql.Identifier(name)


def require_postgis(con: psycopg.Connection[Any], *, url: str) -> None:
    """``CREATE EXTENSION IF NOT EXISTS postgis``, or say what the server is missing."""
    try:
        with con.transaction():
            con.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    except psycopg.Error as exc:
        raise ConfigurationError(
            f"PostgreSQL store {url}: PostGIS is not available ({str(exc).strip()}); install "
            "postgresql-15-postgis-3 on the server and run CREATE EXTENSION postgis as a "
            "superuser in this database"
        ) from None


def write_features(
    con: psycopg.Connection[Any], layer: str, batch: FeatureBatch, *, url: str
) -> WriteResult:
    """Upsert a batch by id (the last of repeated ids wins), COPYing it in first."""
    table = feature_table(con, layer, create=True, url=url)
    if table is None or not len(batch):
        return WriteResult(0, 0)
    with con.transaction():
        con.execute(
            "CREATE TEMP TABLE staged_features (ord bigint, id text, properties jsonb, "
            "wkb bytea) ON COMMIT DROP"
        )
        with con.cursor().copy("COPY staged_features FROM STDIN") as copy:
            for order, (key, properties, wkb) in enumerate(
                zip(batch.ids, batch.properties, batch.wkb, strict=True)
            ):
                copy.write_row([order, key, json.dumps(properties, ensure_ascii=False), wkb])
        existing = con.execute(
            sql.SQL("SELECT count(*) FROM staged_features JOIN {} USING (id)").format(table)
        ).fetchone()
        try:
            con.execute(
                sql.SQL(
                    "INSERT INTO {} SELECT DISTINCT ON (id) id, properties, "
                    "ST_SetSRID(ST_GeomFromEWKB(wkb), 0) FROM staged_features "
                    "ORDER BY id, ord DESC ON CONFLICT (id) DO UPDATE "
                    "SET properties = excluded.properties, geom = excluded.geom"
                ).format(table)
            )
        except psycopg.errors.InternalError_ as exc:
            raise ValueError(
                f"layer {layer!r}: a geometry is not valid WKB ({str(exc).strip()}); "
                "expected WKB as shapely.to_wkb writes it"
            ) from None
    old = int(existing[0]) if existing else 0
    return WriteResult(len(batch) - old, old)


def read_features(con: psycopg.Connection[Any], layer: str, *, bbox: BBox | None) -> FeatureBatch:
    """Features of a layer ordered by id (byte order, as the other backends), optionally those
    intersecting a bbox; an unknown layer is empty."""
    table = feature_table(con, layer, create=False)
    if table is None:
        return FeatureBatch([], [], [])
    rows = con.execute(*feature_query(table, bbox)).fetchall()
    return FeatureBatch(
        [r[0] for r in rows], [json.loads(r[1]) for r in rows], [bytes(r[2]) for r in rows]
    )


def layer_sizes(con: psycopg.Connection[Any]) -> dict[str, int]:
    """Feature layers of the current schema and their row counts."""
    names = con.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
        "AND tablename LIKE 'feature\\_%%' ORDER BY tablename COLLATE \"C\""
    ).fetchall()
    sizes: dict[str, int] = {}
    for (name,) in names:
        layer = check_layer_name(str(name).removeprefix("feature_"))
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(f"feature_{layer}"))
        count = con.execute(query).fetchone()
        sizes[layer] = int(count[0]) if count else 0
    return sizes
