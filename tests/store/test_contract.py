"""One contract suite, run against every store backend (the fake and the embedded default)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from citytwin.errors import UnknownBackendError
from citytwin.model import Datastream, ObservedProperty, Sensor, Thing, get_property
from citytwin.model.quality import Flag
from citytwin.store import ObservationFrame, QuarantineRecord, Store, WriteResult, open_store
from citytwin.store.base import to_micros
from citytwin.store.entities import EntityRows

T0 = datetime(2020, 3, 15, tzinfo=UTC)
HOUR = 3_600_000_000


@pytest.fixture(params=["memory://", "duckdb://", "duckdb-file", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "postgresql":  # a fresh schema on the session's server (conftest.py)
        url = request.getfixturevalue("postgres_schema_url")
    elif request.param == "duckdb-file":
        url = f"duckdb:///{tmp_path / 'city.duckdb'}"
    else:
        url = request.param
    with open_store(url) as opened:
        yield opened


def _register_city(store: Store) -> tuple[list[int], list[int]]:
    """Two things in two districts, each with PM2.5 and temperature datastreams."""
    sensor = Sensor(key="s", name="sensor")
    props = [get_property("pm25").to_sta(), get_property("air_temperature").to_sta()]
    things = [
        Thing(key=f"t{i}", name=f"thing {i}", properties={"feed": "test", "district": d})
        for i, d in enumerate(["Jung-gu", "Songpa-gu"])
    ]
    streams = [
        Datastream(
            key=f"t{i}/{p.key}",
            name=f"{i} {p.name}",
            unit_of_measurement=get_property(str(p.key)).unit.to_sta(),
            properties={"feed": "test", "observedProperty": p.key},
            thing_id=t.id or 0,
            sensor_id=sensor.id or 0,
            observed_property_id=p.id or 0,
        )
        for i, t in enumerate(things)
        for p in props
    ]
    store.register([sensor, *props, *things, *streams])
    pm = [s.id or 0 for s in streams if str(s.key).endswith("pm25")]
    temp = [s.id or 0 for s in streams if str(s.key).endswith("air_temperature")]
    return pm, temp


def _hours(n: int) -> np.ndarray:
    return to_micros(T0) + np.arange(n, dtype=np.int64) * HOUR


def test_entities_round_trip(store: Store) -> None:
    _register_city(store)
    things = store.entities(Thing)
    assert sorted(t.name for t in things) == ["thing 0", "thing 1"]
    assert store.entities(ObservedProperty, [get_property("pm25").to_sta().id or 0])[0].name == (
        "PM2.5 mass concentration"
    )
    assert len(store.entities(Datastream)) == 4
    store.register(things)  # upsert: no duplicates
    assert len(store.entities(Thing)) == 2


def test_entity_rows_register_like_models(store: Store) -> None:
    """Many datastreams as EntityRows (the ingest's bulk path) read back as the models they
    stand for, on every backend; registering them again changes nothing."""
    sensor = Sensor(key="s", name="sensor")
    prop = get_property("pm25")
    things = [Thing(key=f"t{i}", name=f'thing "{i}" 100% 동') for i in range(3)]
    models = [
        Datastream(
            key=f"t{i}/pm25",
            name=f"{t.name} PM2.5",
            unit_of_measurement=prop.unit.to_sta(),
            properties={"feed": "test", "observedProperty": "pm25"},
            thing_id=t.id or 0,
            sensor_id=sensor.id or 0,
            observed_property_id=prop.to_sta().id or 0,
        )
        for i, t in enumerate(things)
    ]
    fields = ("id", "key", "name", "thing_id")
    rows = EntityRows.from_template(
        models[0], **{f: [getattr(m, f) for m in models] for f in fields}
    )
    store.register([sensor, *things, rows])
    store.register([rows])
    by_id = {m.id: m for m in models}
    stored = store.entities(Datastream)
    assert len(stored) == 3
    assert all(s == by_id[s.id] for s in stored)


def test_observation_identity_is_datastream_and_time(store: Store) -> None:
    pm, _ = _register_city(store)
    frame = ObservationFrame.from_arrays([pm[0]] * 3, _hours(3), [10.0, 20.0, 30.0])
    first = store.write_observations(frame)
    again = store.write_observations(frame)
    assert (first.inserted, first.duplicates) == (3, 0)
    assert (again.inserted, again.duplicates) == (0, 3)
    inside = ObservationFrame.from_arrays(
        [pm[0], pm[0]], _hours(1).repeat(2) + 7 * HOUR, [1.0, 1.0]
    )
    assert store.write_observations(inside).inserted == 1
    assert len(store.observations()) == 4


def test_time_range_and_latest(store: Store) -> None:
    pm, temp = _register_city(store)
    store.write_observations(
        ObservationFrame.from_arrays(
            [pm[0]] * 5 + [temp[0]] * 5,
            np.r_[_hours(5), _hours(5)],
            [1, 2, 3, 4, 5, 10, 11, 12, 13, 14],
            [0, 0, 0, 0, int(Flag.SPIKE)] + [0] * 5,
        )
    )
    window = store.observations(
        datastream_ids=[pm[0]], start=T0 + timedelta(hours=1), end=T0 + timedelta(hours=3)
    )
    assert window.result.tolist() == [2.0, 3.0]
    latest = store.latest()
    by_id = dict(zip(latest.datastream_id.tolist(), latest.result.tolist(), strict=True))
    assert by_id == {pm[0]: 5.0, temp[0]: 14.0}
    assert latest.quality[latest.datastream_id == pm[0]].tolist() == [int(Flag.SPIKE)]
    assert store.latest([temp[0]]).result.tolist() == [14.0]


def test_hourly_and_daily_aggregates(store: Store) -> None:
    pm, temp = _register_city(store)
    minutes = to_micros(T0) + np.arange(0, 120, 30, dtype=np.int64) * 60_000_000  # 2 hours
    store.write_observations(
        ObservationFrame.from_arrays(
            [pm[0]] * 4 + [pm[1]] * 4 + [temp[0]] * 4,
            np.r_[minutes, minutes, minutes],
            [10, 20, 30, 40, 100, 200, 300, 400, 1, 2, 3, 4],
        )
    )
    hourly = store.aggregate(bucket="hour", by="datastream", observed_property="pm25").to_pylist()
    assert [(r["group"], r["mean"], r["min"], r["max"], r["count"]) for r in hourly] == sorted(
        [
            (str(pm[0]), 15.0, 10.0, 20.0, 2),
            (str(pm[0]), 35.0, 30.0, 40.0, 2),
            (str(pm[1]), 150.0, 100.0, 200.0, 2),
            (str(pm[1]), 350.0, 300.0, 400.0, 2),
        ]
    )
    by_property = store.aggregate(bucket="day", by="observed_property").to_pylist()
    assert {(r["group"], r["count"], r["mean"]) for r in by_property} == {
        ("air_temperature", 4, 2.5),
        ("pm25", 8, 137.5),
    }
    by_district = store.aggregate(
        bucket="day", by="thing.district", observed_property="pm25"
    ).to_pylist()
    assert {(r["group"], r["mean"]) for r in by_district} == {
        ("Jung-gu", 25.0),
        ("Songpa-gu", 250.0),
    }
    assert by_district[0]["bucket"] == datetime(2020, 3, 15)


def test_aggregate_can_exclude_flagged(store: Store) -> None:
    pm, _ = _register_city(store)
    store.write_observations(
        ObservationFrame.from_arrays(
            [pm[0]] * 3, _hours(3) // HOUR * HOUR, [10.0, 999.0, 20.0], [0, int(Flag.SPIKE), 0]
        )
    )
    rows = store.aggregate(bucket="day", by="datastream", exclude_flags=int(Flag.SPIKE))
    assert rows.column("mean").to_pylist() == [15.0]
    with pytest.raises(ValueError, match="cannot group by"):
        store.aggregate(by="thing.; DROP TABLE things")


def test_quarantine_and_stats(store: Store) -> None:
    pm, temp = _register_city(store)
    store.write_quarantine([QuarantineRecord("test", "a.csv", 7, "x,y", "not a number")])
    store.write_observations(
        ObservationFrame.from_arrays(
            [pm[0], pm[1], temp[0]], _hours(3), [1.0, 2.0, 3.0], [int(Flag.RANGE), 0, 0]
        )
    )
    (record,) = store.quarantined(feed="test")
    assert (record.source, record.line, record.reason) == ("a.csv", 7, "not a number")
    assert store.quarantined(feed="other") == []
    stats = {(s.feed, s.observed_property): s for s in store.stats()}
    assert stats[("test", "pm25")].observations == 2
    assert stats[("test", "pm25")].datastreams == 2
    assert stats[("test", "pm25")].flagged == 1
    assert stats[("test", "air_temperature")].first == T0 + timedelta(hours=2)


def test_a_quarantined_line_is_kept_once_and_an_event_every_time(store: Store) -> None:
    lines = [
        QuarantineRecord("test", "a.csv", 7, "x,y", "not a number"),
        QuarantineRecord("test", "a.csv", 9, "x,", "truncated line"),
        QuarantineRecord("test", "sensors/7", None, "{", "not JSON"),
    ]
    store.write_quarantine(lines)
    store.write_quarantine([*lines, QuarantineRecord("test", "b.csv", 7, "x,y", "not a number")])
    kept = [(r.source, r.line, r.reason) for r in store.quarantined(feed="test")]
    assert kept == [
        ("a.csv", 7, "not a number"),
        ("a.csv", 9, "truncated line"),
        ("sensors/7", None, "not JSON"),
        ("sensors/7", None, "not JSON"),  # a message is an event: both arrivals are kept
        ("b.csv", 7, "not a number"),
    ]


def test_duckdb_file_persists(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'sub' / 'city.duckdb'}"
    with open_store(url) as store:
        pm, _ = _register_city(store)
        store.write_observations(ObservationFrame.from_arrays([pm[0]], _hours(1), [42.0]))
    with open_store(url) as store:
        assert store.latest().result.tolist() == [42.0]
        assert len(store.entities(Thing)) == 2


def test_unknown_store_scheme_lists_valid_ones() -> None:
    with pytest.raises(UnknownBackendError, match="expected one of: duckdb, memory"):
        open_store("oracle://x")


def test_duckdb_urls_follow_sqlalchemy_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from citytwin.store.duckdb_ import DuckDBStore

    monkeypatch.chdir(tmp_path)
    with open_store("duckdb:///rel/city.duckdb") as store:
        assert isinstance(store, DuckDBStore)
        assert store.path == "rel/city.duckdb"
    assert (tmp_path / "rel" / "city.duckdb").exists()
    with open_store(f"duckdb:///{tmp_path / 'abs.duckdb'}") as store:
        assert isinstance(store, DuckDBStore)
        assert store.path == str(tmp_path / "abs.duckdb")
    for url in ("duckdb://", "duckdb:///:memory:"):
        with open_store(url) as store:
            assert isinstance(store, DuckDBStore)
            assert store.path == ":memory:"


def test_features_upsert_by_id_and_bbox(store: Store) -> None:
    import shapely

    from citytwin.store import FeatureBatch

    square = shapely.box(198000, 551800, 198100, 551900)  # around Seoul City Hall, EPSG:5186
    far = shapely.Point(210000, 545000)
    batch = FeatureBatch(
        ["gu:11140", "dong:1114055"],
        [{"name": "중구", "level": "gu"}, {"name": "명동", "level": "dong"}],
        [shapely.to_wkb(square), shapely.to_wkb(far)],
    )
    assert store.write_features("districts", batch) == WriteResult(2, 0)
    assert store.write_features("districts", batch) == WriteResult(0, 2)  # re-import: no copies
    assert store.layers() == {"districts": 2}
    near = store.features("districts", bbox=(198050, 551850, 198060, 551860))
    assert near.ids == ["gu:11140"]
    assert near.properties == [{"name": "중구", "level": "gu"}]
    assert shapely.equals(shapely.from_wkb(near.wkb[0]), square)
    assert store.features("districts").ids == ["dong:1114055", "gu:11140"]
    with pytest.raises(ValueError, match="invalid layer name"):
        store.features("x; DROP TABLE things")


def test_duckdb_feature_layers_survive_reopen_without_spatial_at_open(tmp_path: Path) -> None:
    """The spatial extension loads on the first feature call, also on a file that has layers."""
    import shapely

    from citytwin.store import FeatureBatch

    url = f"duckdb:///{tmp_path / 'city.duckdb'}"
    square = shapely.box(198000, 551800, 198100, 551900)
    with open_store(url) as store:
        store.write_features(
            "districts", FeatureBatch(["gu:11140"], [{}], [shapely.to_wkb(square)])
        )
    with open_store(url) as store:
        loaded = store.connection.execute(  # type: ignore[attr-defined]
            "SELECT loaded FROM duckdb_extensions() WHERE extension_name = 'spatial'"
        ).fetchone()
        assert loaded == (False,)  # opening an ingest or stats run does not pay for it
        assert store.layers() == {"districts": 1}
        assert store.features("districts", bbox=(198050, 551850, 198060, 551860)).ids == [
            "gu:11140"
        ]


def test_delete_entities_by_id_without_cascade(store: Store) -> None:
    pm, temp = _register_city(store)
    things = sorted(store.entities(Thing), key=lambda t: t.name)
    assert store.delete(Thing, [things[0].id or 0, things[0].id or 0, 12345]) == 1
    assert [t.name for t in store.entities(Thing)] == ["thing 1"]
    assert store.entities(Thing, [things[0].id or 0]) == []
    assert len(store.entities(Datastream)) == 4  # no cascade: the caller decides
    assert store.delete(Datastream, [pm[0], temp[0]]) == 2
    assert sorted(d.id or 0 for d in store.entities(Datastream)) == sorted([pm[1], temp[1]])
    assert store.delete(Sensor, []) == 0
    store.register([things[0]])  # a deleted id can be registered again
    assert len(store.entities(Thing)) == 2


def test_delete_observations_by_datastream_or_identity(store: Store) -> None:
    pm, temp = _register_city(store)
    store.write_observations(
        ObservationFrame.from_arrays(
            [pm[0]] * 3 + [pm[1]] * 3 + [temp[0]] * 3,
            np.r_[_hours(3), _hours(3), _hours(3)],
            [1, 2, 3, 10, 20, 30, 100, 200, 300],
        )
    )
    assert store.delete_observations(datastream_ids=[pm[1], 999]) == 3
    doomed = ObservationFrame.from_arrays(
        [pm[0], temp[0], temp[0]], [_hours(2)[1], _hours(3)[2], _hours(5)[4]], [0.0] * 3
    )
    assert store.delete_observations(identities=doomed) == 2  # the third names nothing
    left = store.observations()
    assert list(zip(left.datastream_id.tolist(), left.result.tolist(), strict=True)) == sorted(
        [(pm[0], 1.0), (pm[0], 3.0), (temp[0], 100.0), (temp[0], 200.0)]
    )
    assert store.latest([temp[0]]).result.tolist() == [200.0]
    # an update is delete + write: the identity is free again
    again = ObservationFrame.from_arrays([pm[0]], [_hours(2)[1]], [42.0])
    assert store.write_observations(again).inserted == 1
    assert store.observations(datastream_ids=[pm[0]]).result.tolist() == [1.0, 42.0, 3.0]
    assert store.delete_observations(datastream_ids=[], identities=ObservationFrame.empty()) == 0
    with pytest.raises(ValueError, match="needs datastream_ids or identities"):
        store.delete_observations()
    assert len(store.observations()) == 5


def test_existing_and_write_new_observations(store: Store) -> None:
    pm, temp = _register_city(store)
    store.write_observations(ObservationFrame.from_arrays([pm[0]] * 2, _hours(2), [1.0, 2.0]))
    unknown = 987_654_321
    asked = ObservationFrame.from_arrays(
        [pm[0], pm[0], temp[0], unknown, pm[0], temp[0]],
        [_hours(2)[1], _hours(3)[2], _hours(1)[0], _hours(1)[0], _hours(3)[2], _hours(1)[0]],
        [9.0, 3.0, 10.0, 11.0, 4.0, 12.0],
    )
    assert store.existing(asked).tolist() == [True, False, False, False, False, False]
    # stored already, new, new, no such datastream, repeats row 1, repeats row 2
    written = store.write_new_observations(asked)
    assert written.tolist() == [False, True, True, False, False, False]
    assert store.existing(asked).tolist() == [True, True, True, False, True, True]
    assert store.observations(datastream_ids=[pm[0]]).result.tolist() == [1.0, 2.0, 3.0]
    assert store.observations(datastream_ids=[temp[0]]).result.tolist() == [10.0]
    assert store.observations(datastream_ids=[unknown]).result.tolist() == []
    assert store.write_new_observations(ObservationFrame.empty()).tolist() == []
    assert store.existing(ObservationFrame.empty()).tolist() == []


def test_single_creates_in_any_order_keep_identity(store: Store) -> None:
    """One row at a time, as the API writes them: later, earlier, repeated, after a bulk write,
    after a delete, for a deleted datastream — each answered as if the table were asked."""
    pm, _ = _register_city(store)
    t = _hours(6)

    def one(time: int, result: float, datastream: int = pm[0]) -> bool:
        frame = ObservationFrame.from_arrays([datastream], [time], [result])
        return bool(store.write_new_observations(frame)[0])

    assert [one(t[2], 1.0), one(t[3], 2.0), one(t[3], 9.0)] == [True, True, False]
    assert [one(t[1], 3.0), one(t[1], 9.0), one(t[2], 9.0)] == [True, False, False]
    store.write_observations(ObservationFrame.from_arrays([pm[0]], [t[5]], [4.0]))
    assert [one(t[5], 9.0), one(t[4], 5.0)] == [False, True]
    gone = ObservationFrame.from_arrays([pm[0]], [t[5]], [0.0])
    assert store.delete_observations(identities=gone) == 1
    assert [one(t[5], 6.0), one(t[5], 9.0)] == [True, False]
    assert store.observations(datastream_ids=[pm[0]]).result.tolist() == [3.0, 1.0, 2.0, 5.0, 6.0]
    store.delete(Datastream, [pm[0]])
    assert one(t[0], 7.0) is False  # its datastream is gone


def test_many_rows_and_datastreams_take_the_same_paths(store: Store) -> None:
    pm, _ = _register_city(store)
    store.write_observations(ObservationFrame.from_arrays([pm[1]] * 3, _hours(3), [0.0] * 3))
    n = 300  # more rows and datastreams than a backend names in its SQL
    frame = ObservationFrame.from_arrays(
        np.r_[[pm[1]] * n, np.arange(1, 101)], np.r_[_hours(n), _hours(100)], np.arange(n + 100.0)
    )
    assert store.existing(frame).tolist() == [True] * 3 + [False] * (n + 97)
    assert (
        store.write_new_observations(frame).tolist()
        == [False] * 3 + [True] * (n - 3) + [False] * 100
    )
    assert len(store.observations(datastream_ids=[pm[1]])) == n


def test_frames_of_other_datastreams_over_one_span_keep_identity(store: Store) -> None:
    """The ingest writes a batch as frames of disjoint datastreams over one time span (the
    DuckDB store then skips its look for stored rows); a repeated identity is still caught,
    whichever write stored it first."""
    hours = _hours(300)  # > FEW_ROWS rows and > FEW_DATASTREAMS datastreams: the bulk path

    def frame(ids: np.ndarray, value: float = 0.0) -> ObservationFrame:
        return ObservationFrame.from_arrays(
            np.repeat(ids, len(hours)), np.tile(hours, len(ids)), [value] * len(ids) * len(hours)
        )

    a, b, c = np.arange(1, 101), np.arange(101, 201), np.arange(201, 301)
    assert store.write_observations(frame(a)) == WriteResult(30_000, 0)
    assert store.write_observations(frame(b)) == WriteResult(30_000, 0)
    assert store.write_observations(frame(a, 1.0)) == WriteResult(0, 30_000)
    assert store.write_observations(frame(np.r_[b[:10], c[:90]])) == WriteResult(27_000, 3_000)
    few = ObservationFrame.from_arrays([c[95]] * 3, hours[100:103], [5.0] * 3)
    assert store.write_observations(few) == WriteResult(3, 0)  # the few-rows path
    assert store.write_observations(frame(c[90:])) == WriteResult(2_997, 3)
    store.delete_observations(datastream_ids=a.tolist())
    assert store.write_observations(frame(a, 2.0)) == WriteResult(30_000, 0)
    assert len(store.observations()) == 90_000
    assert set(store.observations(datastream_ids=[1]).result.tolist()) == {2.0}


def test_one_few_and_many_ids_read_alike(store: Store) -> None:
    pm, temp = _register_city(store)
    ids = [*pm, *temp]
    store.write_observations(
        ObservationFrame.from_arrays(np.repeat(ids, 3), np.tile(_hours(3), 4), np.arange(12.0))
    )
    everything, latest = store.observations(), store.latest()
    for asked in ([ids[2]], [ids[3], ids[0], ids[3]], [*ids, *range(1, 10)]):
        rows = np.isin(everything.datastream_id, asked)
        got = store.observations(datastream_ids=asked, start=T0 + timedelta(hours=1))
        want = everything.take(rows & (everything.phenomenon_time >= _hours(2)[1]))
        assert (got.datastream_id.tolist(), got.result.tolist()) == (
            want.datastream_id.tolist(),
            want.result.tolist(),
        )
        last = store.latest(asked)
        assert last.result.tolist() == latest.result[np.isin(latest.datastream_id, asked)].tolist()
        streams = store.entities(Datastream, asked)
        assert {d.id for d in streams} == set(asked) & set(ids)


def test_results_round_trip_exactly(store: Store) -> None:
    pm, temp = _register_city(store)
    values = [0.1 + 0.2, 1e-300, -123456789.12345679, 2.0**60 + 1, float("nan")]
    store.write_observations(ObservationFrame.from_arrays([pm[0]] * 5, _hours(5), values))
    store.write_new_observations(ObservationFrame.from_arrays([temp[0]] * 5, _hours(5), values))
    for datastream in (pm[0], temp[0]):
        got = store.observations(datastream_ids=[datastream]).result
        assert got[:4].tolist() == values[:4]
        assert np.isnan(got[4])
