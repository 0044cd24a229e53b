"""What the analysis reads from the twin: snapshots and panels of one property at the sensors."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from citytwin.errors import ValidationError
from citytwin.ingest import read_feed
from citytwin.ingest.pipeline import ingest
from citytwin.space.city import import_districts
from citytwin.space.crs import to_city
from citytwin.store import Store, open_store
from citytwin.twin import Twin
from citytwin.twin.fields import district_outlines, sensor_field, sensor_panel

KOSTAT = Path("seoul_boundaries") / "kostat" / "2013"
REGISTRY = Path("sdot") / "sensor_longitude_latitude.csv"
# two registry sensors, readings at 00:00, 00:02 and 01:10 KST; the 9999 is out of range
READINGS = [
    ("V02Q1940790", "202003150000", 10, 60), ("V02Q1940790", "202003150002", 20, 70),
    ("V02Q1940787", "202003150000", 30, 50), ("V02Q1940787", "202003150002", 9999, 50),
    ("V02Q1940787", "202003150110", 40, 55),
]  # fmt: skip


@pytest.fixture
def store(shared_data: Path, tmp_path: Path) -> Store:
    data = tmp_path / "sdot.csv"
    rows = "\n".join(f"{s},{pm},{db},{t}" for s, t, pm, db in READINGS)
    data.write_text(f"시리얼,미세먼지2.5(초미세먼지),소음,측정시간\n{rows}\n", encoding="utf-8")
    opened = open_store("memory://")
    import_districts(opened, shared_data / KOSTAT / "json/seoul_municipalities_geo.json")
    ingest(read_feed("sdot", str(data), registry=str(shared_data / REGISTRY)), opened)
    return opened


def test_snapshot_means_over_the_window_without_suspect_values(store: Store) -> None:
    at = datetime(2020, 3, 15, 0, 5, tzinfo=UTC) - timedelta(hours=9)  # 00:05 KST
    field = sensor_field(Twin(store), "pm25", at=at, window=timedelta(minutes=10))
    values = dict(zip(field.sensors["thing"], field.sensors["value"], strict=True))
    assert values == {"sdot:V02Q1940790": 15.0, "sdot:V02Q1940787": 30.0}  # 9999 left out
    assert field.unit == "µg/m³"
    assert field.sensors.crs == "EPSG:5186"


def test_snapshot_averages_decibels_as_energies(store: Store, shared_data: Path) -> None:
    at = datetime(2020, 3, 14, 15, 5, tzinfo=UTC)
    field = sensor_field(Twin(store), "noise", at=at, window=timedelta(minutes=10))
    values = dict(zip(field.sensors["thing"], field.sensors["value"], strict=True))
    assert values["sdot:V02Q1940790"] == pytest.approx(10 * math.log10((1e6 + 1e7) / 2))
    registry = (shared_data / REGISTRY).read_text(encoding="utf-8-sig").splitlines()
    _, lat, lon = next(line.split(",") for line in registry if line.startswith("V02Q1940790"))
    assert registry[0] == "시리얼,위도,경도"  # serial, latitude, longitude
    x, y = to_city(float(lon), float(lat))
    point = field.sensors.set_index("thing").geometry["sdot:V02Q1940790"]
    assert (point.x, point.y) == pytest.approx((float(x), float(y)))


def test_snapshot_defaults_to_the_latest_reading(store: Store) -> None:
    field = sensor_field(Twin(store), "pm25", window=timedelta(minutes=30))
    assert field.end == datetime(2020, 3, 14, 16, 11, tzinfo=UTC)  # the minute after 01:10 KST
    assert field.sensors["thing"].tolist() == ["sdot:V02Q1940787"]


def test_panel_is_sensors_by_hours(store: Store) -> None:
    panel, sensors = sensor_panel(Twin(store), "pm25")
    assert panel.shape == (2, 2)
    assert list(panel.columns) == [
        datetime(2020, 3, 14, 15, tzinfo=UTC),
        datetime(2020, 3, 14, 16, tzinfo=UTC),
    ]
    row = panel.to_numpy()[panel.index.get_loc("sdot:V02Q1940790")]
    assert row[0] == 15.0
    assert math.isnan(row[1])
    assert sensors["thing"].tolist() == panel.index.tolist()


def test_districts_and_unknown_properties(store: Store) -> None:
    outlines = district_outlines(store)
    assert outlines is not None
    assert len(outlines) == 25  # Seoul has 25 gu
    with pytest.raises(ValidationError, match=r"'pm99'.*present: noise, pm25"):
        sensor_field(Twin(store), "pm99")
    with pytest.raises(ValidationError, match="expected a timezone"):
        sensor_field(Twin(store), "pm25", at=datetime(2020, 3, 15))
    assert district_outlines(open_store("memory://")) is None
