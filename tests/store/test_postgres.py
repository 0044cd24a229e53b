"""What the PostgreSQL store adds to the contract: monthly partitions with a DEFAULT safety net,
BRIN on time, idempotent COPY writes, PostGIS bbox queries, and clear connection errors.

The contract itself (same answers as the other backends) is tests/store/test_contract.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import psycopg
import pytest
import shapely
from psycopg import sql

from citytwin.errors import ConfigurationError, StoreError, ValidationError
from citytwin.model import Datastream, Sensor, Thing, get_property
from citytwin.model.quality import Flag
from citytwin.store import FeatureBatch, ObservationFrame, Store, WriteResult, open_store
from citytwin.store.base import Bucket, to_micros
from citytwin.store.memory import MemoryStore
from citytwin.store.postgres import PostgresStore
from citytwin.store.postgres_features import feature_query
from citytwin.store.postgres_sql import check_times

HOUR = 3_600_000_000


@pytest.fixture
def store(postgres_schema_url: str) -> Iterator[PostgresStore]:
    with open_store(postgres_schema_url) as opened:
        assert isinstance(opened, PostgresStore)
        yield opened


def _register(store: Store, districts: tuple[str, ...] = ("Jung-gu",)) -> list[int]:
    """One Thing per district with a PM2.5 and a temperature Datastream; their ids."""
    sensor = Sensor(key="s", name="sensor")
    props = [get_property("pm25").to_sta(), get_property("air_temperature").to_sta()]
    things = [Thing(key=d, name=d, properties={"feed": "test", "district": d}) for d in districts]
    streams = [
        Datastream(
            key=f"{t.key}/{p.key}",
            name=f"{t.key} {p.name}",
            unit_of_measurement=get_property(str(p.key)).unit.to_sta(),
            properties={"feed": "test", "observedProperty": p.key},
            thing_id=t.id or 0,
            sensor_id=sensor.id or 0,
            observed_property_id=p.id or 0,
        )
        for t in things
        for p in props
    ]
    store.register([sensor, *props, *things, *streams])
    return [s.id or 0 for s in streams]


def _partition_rows(store: PostgresStore) -> dict[str, int]:
    rows = store.connection.execute(
        "SELECT tableoid::regclass::text, count(*) FROM observations GROUP BY 1"
    ).fetchall()
    return dict(rows)


def test_writes_spanning_two_months_land_in_monthly_partitions(store: PostgresStore) -> None:
    (pm, _) = _register(store)
    last_of_january = to_micros(datetime(2020, 1, 31, 23, tzinfo=UTC))
    frame = ObservationFrame.from_arrays([pm] * 3, last_of_january + np.arange(3) * HOUR, [1.0] * 3)
    assert store.write_observations(frame) == WriteResult(3, 0)
    assert _partition_rows(store) == {"observations_2020_01": 1, "observations_2020_02": 2}
    bounds = dict(
        store.connection.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'observations'::regclass"
        ).fetchall()
    )
    month = "FOR VALUES FROM ('2020-{:02d}-01 00:00:00') TO ('2020-{:02d}-01 00:00:00')"
    assert bounds == {
        "observations_default": "DEFAULT",
        "observations_2020_01": month.format(1, 2),
        "observations_2020_02": month.format(2, 3),
    }


def test_brin_index_on_phenomenon_time_covers_every_partition(store: PostgresStore) -> None:
    (pm, _) = _register(store)
    march = to_micros(datetime(2020, 3, 15, tzinfo=UTC))
    store.write_observations(ObservationFrame.from_arrays([pm], [march], [1.0]))
    rows = store.connection.execute(
        "SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
        "AND indexdef LIKE '%USING brin (phenomenon_time)%'"
    ).fetchall()
    assert {table for table, _ in rows} == {
        "observations",
        "observations_default",
        "observations_2020_03",
    }


def test_writing_a_frame_twice_inserts_nothing_the_second_time(store: PostgresStore) -> None:
    ids = _register(store, ("Jung-gu", "Songpa-gu"))
    rng = np.random.default_rng(9)
    n = 20_000  # above the size at which staged rows are analysed
    datastream = rng.choice(ids, n)
    times = (
        to_micros(datetime(2021, 1, 20, tzinfo=UTC)) + rng.integers(0, 60 * 24 * 30, n) * 60_000_000
    )
    frame = ObservationFrame.from_arrays(
        datastream, times, rng.normal(20, 5, n), rng.integers(0, 4, n).astype(np.int32)
    )
    reference = MemoryStore()
    expected = reference.write_observations(frame)
    assert expected.duplicates > 0  # the random frame repeats some identities
    assert store.write_observations(frame) == expected
    assert store.write_observations(frame) == WriteResult(0, n)
    assert sum(_partition_rows(store).values()) == expected.inserted
    got, want = store.observations(), reference.observations()
    for column in ("datastream_id", "phenomenon_time", "result", "quality"):
        assert np.array_equal(getattr(got, column), getattr(want, column)), column
    assert store.existing(frame).all()


def test_rows_outside_any_month_stay_in_default_and_move_when_their_month_comes(
    store: PostgresStore,
) -> None:
    (pm, temp) = _register(store)
    year_10000 = to_micros(datetime(9999, 12, 31, tzinfo=UTC)) + 48 * HOUR
    assert (
        store.write_observations(ObservationFrame.from_arrays([pm], [year_10000], [7.0])).inserted
        == 1
    )
    # a row that reached DEFAULT while May 2021 had no partition (another writer, or a restore)
    store.connection.execute(
        "INSERT INTO observations_default VALUES (%s, '2021-05-02 03:04:05.000006', 1.5, 0)", [temp]
    )
    may = to_micros(datetime(2021, 5, 1, tzinfo=UTC))
    assert store.write_observations(ObservationFrame.from_arrays([pm], [may], [2.0])).inserted == 1
    assert _partition_rows(store) == {"observations_default": 1, "observations_2021_05": 2}
    everything = store.observations()
    assert dict(
        zip(everything.phenomenon_time.tolist(), everything.result.tolist(), strict=True)
    ) == {
        year_10000: 7.0,
        may: 2.0,
        to_micros(datetime(2021, 5, 2, 3, 4, 5, 6, tzinfo=UTC)): 1.5,
    }


def test_a_busy_table_defers_the_new_month_to_default_instead_of_waiting(
    store: PostgresStore, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (pm, _) = _register(store)
    monkeypatch.setattr(store._observations.partitions, "lock_timeout_ms", 50)
    (schema,) = store.connection.execute("SELECT current_schema()").fetchone() or ("",)
    june = to_micros(datetime(2023, 6, 1, tzinfo=UTC)) + np.arange(3) * HOUR
    early = ObservationFrame.from_arrays([pm] * 2, june[:2], [1.0, 2.0])
    late = ObservationFrame.from_arrays([pm], june[2:], [3.0])
    with psycopg.connect(postgres_url, autocommit=True) as reader, reader.transaction():
        # a long report: its lock on the table blocks CREATE TABLE … PARTITION OF, not writes
        reader.execute(f"LOCK TABLE {schema}.observations IN ACCESS SHARE MODE")
        assert store.write_observations(early) == WriteResult(2, 0)
        assert _partition_rows(store) == {"observations_default": 2}
    assert store.write_observations(late) == WriteResult(1, 0)
    assert _partition_rows(store) == {"observations_2023_06": 3}
    assert store.observations().result.tolist() == [1.0, 2.0, 3.0]


def test_feature_bbox_queries_test_the_geometry_through_the_gist_index(
    store: PostgresStore,
) -> None:
    diagonal = shapely.LineString([(0, 0), (100, 100)])
    batch = FeatureBatch(
        ["road:1", "road:2"],
        [{"lanes": 2}, {"lanes": 4}],
        [shapely.to_wkb(diagonal), shapely.to_wkb(shapely.Point(500, 500))],
    )
    reference = MemoryStore()
    for backend in (store, reference):
        assert backend.write_features("roads", batch) == WriteResult(2, 0)
    # the first box overlaps the line's envelope but not the line: a bbox-only filter finds it
    for bbox, want in [
        ((80, 0, 100, 20), []),
        ((45, 45, 55, 55), ["road:1"]),
        ((0, 0, 600, 600), ["road:1", "road:2"]),
    ]:
        assert (
            store.features("roads", bbox=bbox).ids
            == want
            == reference.features("roads", bbox=bbox).ids
        )
    con = store.connection
    with con.transaction():
        con.execute("SET LOCAL enable_seqscan = off")  # two rows: otherwise a scan is cheaper
        query, params = feature_query(sql.Identifier("feature_roads"), (45, 45, 55, 55))
        plan = "\n".join(row[0] for row in con.execute(sql.SQL("EXPLAIN ") + query, params))
    assert "feature_roads_geom" in plan
    assert "st_intersects" in plan.lower() or "&&" in plan
    geometry = con.execute(
        "SELECT GeometryType(geom) FROM feature_roads WHERE id = 'road:1'"
    ).fetchone()
    assert geometry == ("LINESTRING",)


def test_aggregates_and_stats_match_duckdb(store: PostgresStore) -> None:
    duck = open_store("duckdb://")
    rng = np.random.default_rng(15)
    n = 5_000
    for backend in (store, duck):
        ids = _register(backend, ("Jung-gu", "Songpa-gu", "Mapo-gu"))
    start = to_micros(datetime(2022, 6, 29, tzinfo=UTC))  # across a month boundary
    frame = ObservationFrame.from_arrays(
        rng.choice(ids, n),
        start + rng.integers(0, 4 * 24 * 60, n) * 60_000_000,
        rng.integers(-400, 400, n) / 4,  # quarters: every sum is exact, so means are identical
        rng.choice([0, 0, 0, int(Flag.SPIKE), int(Flag.RANGE)], n),
    )
    assert store.write_observations(frame) == duck.write_observations(frame)
    buckets: tuple[Bucket, ...] = ("hour", "day")
    for bucket in buckets:
        for by in ("datastream", "observed_property", "thing.district"):
            got = store.aggregate(bucket=bucket, by=by, exclude_flags=int(Flag.SPIKE))
            want = duck.aggregate(bucket=bucket, by=by, exclude_flags=int(Flag.SPIKE))
            assert got.num_rows > 0
            assert got.equals(want), (bucket, by)
    since, until = datetime(2022, 6, 30, tzinfo=UTC), datetime(2022, 7, 1, 12, tzinfo=UTC)
    got, want = (
        backend.aggregate(
            bucket="day", by="thing.district", observed_property="pm25", start=since, end=until
        )
        for backend in (store, duck)
    )
    assert set(got.column("bucket").to_pylist()) == {datetime(2022, 6, 30), datetime(2022, 7, 1)}
    assert got.equals(want)
    assert store.stats() == duck.stats()
    duck.close()


def test_reopening_keeps_data_and_postgres_scheme_is_an_alias(postgres_schema_url: str) -> None:
    with open_store(postgres_schema_url) as store:
        (pm, _) = _register(store)
        store.write_observations(
            ObservationFrame.from_arrays(
                [pm], [to_micros(datetime(2020, 8, 1, tzinfo=UTC))], [42.0]
            )
        )
    alias = postgres_schema_url.replace("postgresql://", "postgres://", 1)
    with open_store(alias) as store:
        assert isinstance(store, PostgresStore)
        assert store.latest().result.tolist() == [42.0]
        assert len(store.entities(Thing)) == 1
        assert store.write_observations(
            ObservationFrame.from_arrays([pm], [to_micros(datetime(2020, 8, 1, tzinfo=UTC))], [1.0])
        ) == WriteResult(0, 1)


def test_a_lost_session_is_a_store_error_and_the_next_call_reconnects(
    store: PostgresStore, postgres_url: str
) -> None:
    (pm, _) = _register(store)
    store.write_observations(ObservationFrame.from_arrays([pm], [0], [42.0]))
    pid = store.connection.info.backend_pid
    with psycopg.connect(postgres_url, autocommit=True) as admin:  # as a server restart would
        assert admin.execute("SELECT pg_terminate_backend(%s, 10000)", [pid]).fetchone() == (True,)
    with pytest.raises(StoreError, match="the next call reconnects"):
        store.latest()
    assert store.latest().result.tolist() == [42.0]  # same schema, new session
    assert store.connection.info.backend_pid != pid
    assert store.write_observations(ObservationFrame.from_arrays([pm], [0], [1.0])).duplicates == 1


def test_unreachable_server_names_the_url_without_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        open_store("postgresql://citytwin:hunter2@127.0.0.1:1/citytwin")
    message = str(caught.value)
    assert "postgresql://citytwin:***@127.0.0.1:1/citytwin" in message
    assert "hunter2" not in message
    assert "check that the server is running" in message


def test_schema_parameter_must_be_an_identifier() -> None:
    with pytest.raises(ConfigurationError, match="schema='x; DROP TABLE things' is not a plain"):
        open_store("postgresql://u@127.0.0.1:1/db?schema=x%3B%20DROP%20TABLE%20things")


def test_extreme_values_round_trip_exactly_through_copy_and_packed_reads(
    store: PostgresStore,
) -> None:
    times = [-210_866_803_200_000_000, -1, 0, 1_700_000_000_123_457, 9_223_000_000_000_000_000]
    frame = ObservationFrame.from_arrays(
        [2**53 - 1] * 5,
        times,
        [0.1 + 0.2, -1e-300, float("inf"), -0.0, float("nan")],
        [0, 2**31 - 1, 5, 0, 1],
    )
    assert store.write_observations(frame) == WriteResult(5, 0)
    back = store.observations()
    assert back.datastream_id.tolist() == frame.datastream_id.tolist()
    assert back.phenomenon_time.tolist() == times
    assert back.result[:4].tolist() == [0.1 + 0.2, -1e-300, float("inf"), -0.0]
    assert np.signbit(back.result[3])
    assert np.isnan(back.result[4])
    assert back.quality.tolist() == [0, 2**31 - 1, 5, 0, 1]
    assert store.existing(frame).tolist() == [True] * 5
    assert _partition_rows(store) == {
        "observations_default": 2,  # 4714 BC and AD 292 000: no month partition holds them
        "observations_1969_12": 1,
        "observations_1970_01": 1,
        "observations_2023_11": 1,
    }


def test_times_before_4714_bc_are_refused_by_row() -> None:
    frame = ObservationFrame.from_arrays([1, 1], [0, -210_866_803_200_000_001], [1.0, 2.0])
    with pytest.raises(ValidationError, match="observation row 1: phenomenon time"):
        check_times(frame)
