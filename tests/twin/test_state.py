"""Twin state over a store: latest values, sensors of a city object, district rollups, history."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from citytwin.ingest import read_feed
from citytwin.ingest.pipeline import ingest
from citytwin.space.city import bind_sensors, import_buildings, import_districts
from citytwin.store import Store, open_store
from citytwin.twin import Twin

KOSTAT = Path("seoul_boundaries") / "kostat" / "2013"
# three registry sensors: two in Jamsil (송파구), one in 마포구, with PM2.5 readings at 00:00 and
# 00:02 KST; the last Jamsil reading is out of range (QC flags it; rollups leave it out)
READINGS = [
    ("V02Q1940790", "202003150000", 10), ("V02Q1940790", "202003150002", 20),
    ("V02Q1940787", "202003150000", 30), ("V02Q1940787", "202003150002", 9999),
    ("V02Q1940612", "202003150000", 50), ("V02Q1940612", "202003150002", 60),
]  # fmt: skip


@pytest.fixture
def store(shared_data: Path, tmp_path: Path) -> Store:
    data = tmp_path / "sdot.csv"
    rows = "\n".join(f"{s},{v},{t}" for s, t, v in READINGS)
    data.write_text(f"시리얼,미세먼지2.5(초미세먼지),측정시간\n{rows}\n", encoding="utf-8")
    opened = open_store(f"duckdb:///{tmp_path / 'c.duckdb'}")
    import_districts(opened, shared_data / KOSTAT / "json/seoul_municipalities_geo.json")
    import_districts(opened, shared_data / KOSTAT / "shp/seoul_submunicipalities.shp")
    import_buildings(opened, shared_data / "osm" / "asanH.osm")
    registry = shared_data / "sdot" / "sensor_longitude_latitude.csv"
    ingest(read_feed("sdot", str(data), registry=str(registry)), opened)
    bind_sensors(opened)
    return opened


def test_latest_value_per_datastream(store: Store) -> None:
    latest = Twin(store).latest(observed_property="pm25")
    by_thing = dict(zip(latest["thing"], latest["value"], strict=True))
    assert by_thing == {"sdot:V02Q1940612": 60.0, "sdot:V02Q1940787": 9999.0,
                        "sdot:V02Q1940790": 20.0}  # fmt: skip
    flagged = dict(zip(latest["thing"], latest["flags"], strict=True))
    assert flagged["sdot:V02Q1940787"] == ["RANGE"]
    assert (latest["time"] == datetime(2020, 3, 14, 15, 2, tzinfo=UTC)).all()
    jamsil = Twin(store).latest(bbox=(127.05, 37.49, 127.15, 37.55))
    assert set(jamsil["thing"]) == {"sdot:V02Q1940790", "sdot:V02Q1940787"}


def test_sensors_of_districts_and_buildings(store: Store) -> None:
    twin = Twin(store)
    songpa = twin.sensors_of("gu:11240")
    assert set(songpa["thing"]) == {"sdot:V02Q1940790", "sdot:V02Q1940787"}
    building = str(songpa["building"].iloc[0])
    assert building.startswith("osm:")
    assert set(twin.sensors_of(building)["thing"]) >= {str(songpa["thing"].iloc[0])}
    dong = str(songpa["dong_code"].iloc[0])
    assert len(twin.sensors_of(f"dong:{dong}")) >= 1


def test_current_and_hourly_district_rollups(store: Store) -> None:
    twin = Twin(store)
    now = twin.rollup("gu", observed_property="pm25").set_index("district")
    assert now.loc["11240", "mean"] == 20.0  # 9999 is out of range: left out
    assert now.loc["11240", "count"] == 1
    everything = twin.rollup("gu", observed_property="pm25", exclude_flags=0)
    assert everything.set_index("district").loc["11240", "max"] == 9999.0
    hourly = twin.rollup("gu", observed_property="pm25", bucket="hour").set_index("district")
    assert hourly.loc["11240", "mean"] == pytest.approx((10 + 20 + 30) / 3)
    assert hourly.loc["11240", "count"] == 3
    assert hourly.loc["11240", "bucket"] == datetime(2020, 3, 14, 15, tzinfo=UTC)


def test_history_of_one_sensor(store: Store) -> None:
    history = Twin(store).history("sdot:V02Q1940612", observed_property="pm25")
    assert history["value"].tolist() == [50.0, 60.0]
    assert history["time"].is_monotonic_increasing
