"""The Parquet lake: export is idempotent, and the Dask rollup and hourly kriging give the embedded
path's numbers and grids."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow.csv as pcsv
import pytest
from distributed import Client, LocalCluster
from numpy.testing import assert_allclose, assert_array_equal
from typer.testing import CliRunner

from citytwin.cli.lake import lake_app
from citytwin.errors import StoreError, ValidationError
from citytwin.model import Datastream, Location, Point, Sensor, Thing, get_property
from citytwin.model.quality import Flag
from citytwin.services.analyses import distribution_map
from citytwin.store import ObservationFrame, Store, open_store
from citytwin.store.base import to_micros
from citytwin.store.lake import export_lake, partitions, read_dimensions, read_lake
from citytwin.store.lake_dask import rollup
from citytwin.store.lake_kriging import MapOptions, kriging_batch
from citytwin.twin.state import SUSPECT

T0 = datetime(2020, 3, 15, 6, tzinfo=UTC)  # readings start mid-day: export widens to whole days
MINUTE = 60_000_000
SENSORS = 9
PROPERTIES = ("pm25", "noise")
STEPS = 30 * 6  # 10-minute readings over 30 hours, to 2020-03-16 11:50 UTC


def _city(store: Store) -> list[int]:
    """Nine located sensors in three dongs (one unbound), each with PM2.5 and noise."""
    rng = np.random.default_rng(7)
    sensor = Sensor(key="s", name="sensor")
    props = [get_property(k).to_sta() for k in PROPERTIES]
    things = [
        Thing(
            key=f"t{i}",
            name=f"thing {i}",
            properties={"feed": "test", **({"dong_code": f"112407{i % 3}"} if i else {})},
        )
        for i in range(SENSORS)
    ]
    places = [
        Location(
            key=f"t{i}/location",
            name="location",
            location=Point(coordinates=[126.95 + rng.uniform(0, 0.1), 37.5 + rng.uniform(0, 0.08)]),
            thing_id=t.id,
        )
        for i, t in enumerate(things)
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
    store.register([sensor, *props, *things, *places, *streams])
    return [s.id or 0 for s in streams]


def _readings(ids: list[int]) -> ObservationFrame:
    rng = np.random.default_rng(11)
    times = to_micros(T0) + np.arange(STEPS, dtype=np.int64) * 10 * MINUTE
    ds = np.repeat(np.asarray(ids, np.int64), len(times))
    flags = rng.choice([0] * 12 + [int(Flag.SPIKE), int(Flag.RANGE)], len(ds))
    return ObservationFrame.from_arrays(
        ds, np.tile(times, len(ids)), rng.normal(50, 12, len(ds)).round(1), flags
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"duckdb:///{tmp_path / 'city.duckdb'}") as opened:
        opened.write_observations(_readings(_city(opened)))
        yield opened


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """One in-process cluster for the module: a worker with two threads."""
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address="127.0.0.1:0"
        ) as cluster,  # type: ignore[no-untyped-call]
        Client(cluster) as running,  # type: ignore[no-untyped-call]
    ):
        yield running


def _assert_frames_equal(got: ObservationFrame, expected: ObservationFrame) -> None:
    for name in ("datastream_id", "phenomenon_time", "result", "quality"):
        assert_array_equal(getattr(got, name), getattr(expected, name))


def test_export_writes_hive_partitions_that_read_back_as_the_store(
    store: Store, tmp_path: Path
) -> None:
    report = export_lake(store, tmp_path / "lake")
    assert (report.days, report.partitions, report.rows) == (2, 4, SENSORS * 2 * STEPS)
    found = partitions(tmp_path / "lake")
    assert [(p.day.isoformat(), p.observed_property) for p in found] == [
        ("2020-03-15", "noise"),
        ("2020-03-15", "pm25"),
        ("2020-03-16", "noise"),
        ("2020-03-16", "pm25"),
    ]
    assert found[0].files[0] == tmp_path / "lake/date=2020-03-15/property=noise/part-0.parquet"
    _assert_frames_equal(read_lake(tmp_path / "lake"), store.observations())
    dimensions = read_dimensions(tmp_path / "lake")
    assert dimensions.num_rows == SENSORS * len(PROPERTIES)
    assert sorted(set(dimensions["observed_property"].to_pylist())) == ["noise", "pm25"]


def test_reexport_replaces_days_and_never_duplicates(store: Store, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    export_lake(store, lake)
    again = export_lake(store, lake, start=T0 + timedelta(hours=20), end=T0 + timedelta(hours=21))
    assert (again.days, again.partitions, again.removed) == (1, 2, 0)  # 2020-03-16, whole
    _assert_frames_equal(read_lake(lake), store.observations())
    dimensions = read_dimensions(lake).to_pydict()
    noise = [
        d
        for d, p in zip(dimensions["datastream_id"], dimensions["observed_property"], strict=True)
        if p == "noise"
    ]
    assert store.delete_observations(datastream_ids=noise) == SENSORS * STEPS
    third = export_lake(store, lake, start=datetime(2020, 3, 16, tzinfo=UTC))
    assert (third.days, third.partitions, third.removed) == (1, 1, 1)  # noise left that day
    lake_pm = read_lake(lake, start=datetime(2020, 3, 16, tzinfo=UTC), observed_property="pm25")
    stored_pm = store.observations(start=datetime(2020, 3, 16, tzinfo=UTC))
    _assert_frames_equal(lake_pm, stored_pm)


def _assert_tables_equal(got: object, expected: object) -> None:
    import pyarrow as pa

    assert isinstance(got, pa.Table)
    assert isinstance(expected, pa.Table)
    assert got.schema == expected.schema
    assert got.num_rows == expected.num_rows > 0
    for name in ("group", "observed_property", "bucket", "count"):
        assert got[name].to_pylist() == expected[name].to_pylist(), name
    for name in ("mean", "min", "max"):
        assert_allclose(got[name].to_numpy(), expected[name].to_numpy(), rtol=1e-9, atol=0)


@pytest.mark.parametrize(
    ("by", "bucket", "flags"),
    [
        ("thing.dong_code", "hour", SUSPECT),
        ("thing.dong_code", "day", 0),
        ("datastream", "hour", 0),
        ("observed_property", "day", SUSPECT),
    ],
)
def test_dask_rollup_equals_the_store_aggregate(
    store: Store, tmp_path: Path, client: Client, by: str, bucket: str, flags: int
) -> None:
    export_lake(store, tmp_path / "lake")
    got = rollup(tmp_path / "lake", by=by, bucket=bucket, exclude_flags=flags, scheduler=client)
    expected = store.aggregate(by=by, bucket=bucket, exclude_flags=flags)  # type: ignore[arg-type]
    _assert_tables_equal(got, expected)


def test_dask_rollup_of_one_property_and_window(
    store: Store, tmp_path: Path, client: Client
) -> None:
    export_lake(store, tmp_path / "lake")
    start, end = T0 + timedelta(hours=17, minutes=30), T0 + timedelta(hours=25)
    got = rollup(
        tmp_path / "lake",
        observed_property="noise",
        start=start,
        end=end,
        exclude_flags=SUSPECT,
        scheduler=client,
    )
    expected = store.aggregate(
        by="thing.dong_code", observed_property="noise", start=start, end=end, exclude_flags=SUSPECT
    )
    _assert_tables_equal(got, expected)
    assert set(got["group"].to_pylist()) == {"1124070", "1124071", "1124072"}  # t0 is unbound
    assert got["bucket"][0].as_py() == datetime(2020, 3, 15, 23)  # 23:30 falls in the 23:00 hour


def test_rollup_refuses_bad_keys_and_missing_lakes(store: Store, tmp_path: Path) -> None:
    export_lake(store, tmp_path / "lake")
    with pytest.raises(ValidationError, match=r"cannot group by 'thing\.dong-code'"):
        rollup(tmp_path / "lake", by="thing.dong-code")
    with pytest.raises(ValidationError, match="bucket 'week'"):
        rollup(tmp_path / "lake", bucket="week")
    with pytest.raises(StoreError, match=f"lake {tmp_path / 'nowhere'}: no such directory"):
        rollup(tmp_path / "nowhere")


def test_hourly_kriging_on_dask_equals_the_embedded_grids(
    store: Store, tmp_path: Path, client: Client
) -> None:
    export_lake(store, tmp_path / "lake")
    start = T0 + timedelta(hours=29)  # 11:00 and 12:00 on the 16th; readings end at 12:00
    batch = kriging_batch(
        tmp_path / "lake",
        store,
        observed_property="noise",
        start=start,
        end=start + timedelta(hours=2),
        options=MapOptions(cell=500.0),
        scheduler=client,
    )
    assert sorted(batch.maps) == [start]
    assert list(batch.skipped) == [start + timedelta(hours=1)]
    assert "no usable noise readings" in batch.skipped[start + timedelta(hours=1)]
    embedded = distribution_map(
        store, "noise", at=start + timedelta(hours=1), window=timedelta(hours=1), cell=500.0
    )
    got = batch.maps[start]
    assert len(got.field.sensors) == SENSORS
    assert_allclose(got.mean, embedded.mean, rtol=1e-9, atol=0)
    assert got.variance is not None
    assert embedded.variance is not None
    assert_allclose(got.variance, embedded.variance, rtol=1e-9, atol=0)
    assert np.isfinite(got.mean).all()


def test_cli_exports_and_rolls_up(store: Store, tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'city.duckdb'}"
    by_dong = store.aggregate(by="thing.dong_code", bucket="day", exclude_flags=SUSPECT)
    store.close()
    runner = CliRunner()
    lake = tmp_path / "lake"
    exported = runner.invoke(lake_app, ["export", "--store", url, "--out", str(lake)])
    assert exported.exit_code == 0, exported.output
    assert f"{SENSORS * 2 * STEPS:,} observations over 2 day(s) in 4 file(s)" in " ".join(
        exported.output.split()
    )
    out = tmp_path / "dong.csv"
    args = ["rollup", str(lake), "--bucket", "day", "--out", str(out)]
    rolled = runner.invoke(lake_app, args)
    assert rolled.exit_code == 0, rolled.output
    written = pcsv.read_csv(out)
    assert written["count"].to_pylist() == by_dong["count"].to_pylist()
    assert_allclose(written["mean"].to_numpy(), by_dong["mean"].to_numpy(), rtol=1e-9)


def test_cli_names_a_missing_lake(tmp_path: Path) -> None:
    result = CliRunner().invoke(lake_app, ["rollup", str(tmp_path / "absent")])
    assert result.exit_code == 2
    assert f"lake {tmp_path / 'absent'}: no such directory" in " ".join(result.output.split())


def test_cli_krige_writes_one_geotiff_per_mapped_hour(store: Store, tmp_path: Path) -> None:
    import rasterio

    start = T0 + timedelta(hours=29)
    embedded = distribution_map(
        store, "pm25", at=start + timedelta(hours=1), window=timedelta(hours=1), cell=500.0
    )
    export_lake(store, tmp_path / "lake")
    store.close()
    args = ["krige", str(tmp_path / "lake"), "-p", "pm25", "--cell", "500"]
    args += ["--since", "2020-03-16T11:00Z", "--until", "2020-03-16T13:00Z"]
    args += ["--out", str(tmp_path / "maps"), "--store", f"duckdb:///{tmp_path / 'city.duckdb'}"]
    result = CliRunner().invoke(lake_app, args)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "1 of 2 hourly pm25 maps; 1 hour(s) without usable readings" in said
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == ["pm25-20200316T11.tif"]
    with rasterio.open(tmp_path / "maps" / "pm25-20200316T11.tif") as tif:
        mean = tif.read(1)
    assert_allclose(mean, embedded.mean.astype(np.float32), rtol=1e-6)  # float32 bands


@pytest.mark.parametrize("dropped_share", [0.0, 0.01, 0.3, 1.0])
def test_run_fold_equals_a_grouped_reference(dropped_share: float) -> None:
    """The fold that refolds only runs holding a left-out row (sparse) or every run (dense) gives
    pandas' grouped sum/count/min/max of the kept rows, NaN readings included."""
    import pandas as pd

    from citytwin.store.lake_dask import _fold_runs

    rng = np.random.default_rng(11)
    rows = 5_000
    ds = np.sort(rng.integers(0, 40, rows))
    bucket = np.sort(rng.integers(0, 6, rows)) % 3  # runs of equal (ds, bucket), some repeated
    value = np.round(rng.normal(30, 8, rows), 1)
    value[rng.random(rows) < 0.01] = np.nan
    keep = rng.random(rows) >= dropped_share
    runs = _fold_runs(ds, bucket, value, keep)
    starts = np.flatnonzero(np.r_[True, (ds[1:] != ds[:-1]) | (bucket[1:] != bucket[:-1])])
    run = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, rows)))
    frame = pd.DataFrame({"run": run, "value": np.where(keep, value, np.nan), "keep": keep})
    kept = frame[frame["keep"]].groupby("run")["value"]
    expected = pd.DataFrame(index=pd.RangeIndex(len(starts)))
    expected["count"] = frame.groupby("run")["keep"].sum()
    expected["sum"] = kept.sum(min_count=1).reindex(expected.index).fillna(0.0)  # NaN: see below
    expected["min"] = kept.min().reindex(expected.index)
    assert_array_equal(runs["datastream_id"], ds[starts])
    assert_array_equal(runs["count"], expected["count"])
    assert_array_equal(runs["min"], expected["min"])  # NaN where nothing (or only NaN) is kept
    # sum and max propagate a kept NaN (DuckDB's rule); pandas skips it, so compare the others
    clean = np.add.reduceat((keep & np.isnan(value)).astype(int), starts) == 0
    assert np.isnan(runs["sum"][~clean]).all()
    assert np.isnan(runs["max"][~clean]).all()
    assert_allclose(runs["sum"][clean], expected["sum"].to_numpy()[clean], rtol=1e-12)
    empty = expected["count"].to_numpy() == 0
    assert (runs["max"][clean & empty] == -np.inf).all()
    expected_max = kept.max().reindex(expected.index).to_numpy()
    assert_array_equal(runs["max"][clean & ~empty], expected_max[clean & ~empty])


def test_run_fold_of_an_empty_file_has_every_column() -> None:
    from citytwin.store.lake_dask import _fold_runs

    none, nothing = np.zeros(0, np.int64), np.zeros(0)
    for keep in (None, np.zeros(0, bool)):
        runs = _fold_runs(none, none, nothing, keep)
        assert sorted(runs) == ["bucket", "count", "datastream_id", "max", "min", "sum"]
        assert all(len(column) == 0 for column in runs.values())
