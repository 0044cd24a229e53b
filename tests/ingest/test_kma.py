"""KMA reader: the real station registry, and hourly files in the data portal's layout.

Real KMA hourly CSVs are not available offline, so the hourly files are written here in the
portal's layout (``OBS_ASOS_TIM_*``, CP949 or UTF-8 with BOM) from real Seoul (station 108)
values: the hourly weather of 2018-01-01 in ``weather/seoul_hourly_weather_2017-12_2018-08.csv``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from citytwin.emulator.kma import KMA_HEADER
from citytwin.errors import FeedError
from citytwin.ingest.kma import AREA_LAT, AREA_LON, read_kma, read_kma_stations
from citytwin.ingest.pipeline import datastream_key, ingest
from citytwin.model.quality import Flag
from citytwin.model.sensing import Location, Thing, stable_id
from citytwin.store import ObservationFrame, Store, open_store
from citytwin.store.base import to_micros

HEADER = list(KMA_HEADER)  # the portal layout, as the emulator writes it
IGNORED = [
    "3시간신적설(cm)", "중하층운량(10분위)", "운형(운형약어)", "최저운고(100m )",
    "지면상태(지면상태코드)", "현상번호(국내식)", "5cm 지중온도(°C)", "10cm 지중온도(°C)",
    "20cm 지중온도(°C)", "30cm 지중온도(°C)",
]  # fmt: skip
# the UCI file's columns for the KMA values it carries
UCI = {
    "기온(°C)": "Temperature(C)", "습도(%)": "Humidity(%)", "풍속(m/s)": "Wind speed (m/s)",
    "시정(10m)": "Visibility (10m)", "이슬점온도(°C)": "Dew point temperature(C)",
    "일사(MJ/m2)": "Solar Radiation (MJ/m2)", "강수량(mm)": "Rainfall(mm)",
    "적설(cm)": "Snowfall (cm)",
}  # fmt: skip
SEOUL = ("108", "서울", 126.9658, 37.57142, 85.67)  # registry row of station 108
T0900_KST = to_micros(datetime(2018, 1, 1, 0, 0, tzinfo=UTC))  # 2018-01-01 09:00 KST


def _csv_rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.reader(handle))[1:]


def _seoul_day(shared_data: Path) -> list[dict[str, str]]:
    """The 24 hourly rows of 2018-01-01 from the UCI Seoul weather file (dates d/m/yyyy)."""
    path = shared_data / "weather" / "seoul_hourly_weather_2017-12_2018-08.csv"
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [r for r in rows if [int(p) for p in r["Date"].split("/")] == [1, 1, 2018]]


def _kma_line(cells: dict[str, str]) -> str:
    return ",".join(cells.get(name, "") for name in HEADER)


def _write(path: Path, lines: list[str], encoding: str) -> Path:
    path.write_bytes(("\r\n".join(lines)).encode(encoding))
    return path


def _hourly_file(tmp_path: Path, day: list[dict[str, str]], encoding: str) -> Path:
    """Station 108 for 24 hours (real values), plus two hours of 112 인천 with compass text."""
    lines = [",".join(HEADER)]
    for row in day:
        cells = {kma: row[uci] for kma, uci in UCI.items()}
        hour = int(row["Hour"])
        cells |= {"지점": "108", "지점명": "서울", "일시": f"2018-01-01 {hour:02d}:00",
                  "풍향(16방위)": str([270, 290, 320, 360][hour % 4]), "운형(운형약어)": "Sc",
                  "5cm 지중온도(°C)": "0.4"}  # fmt: skip
        if hour == 9:  # KMA marks the 09:00 temperature as an error; humidity 0 means normal
            cells |= {"기온 QC플래그": "1", "습도 QC플래그": "0", "현지기압 QC플래그": "9"}
        lines.append(_kma_line(cells))
    lines += [
        _kma_line({"지점": "112", "지점명": "인천", "일시": "2018-01-01 09:00", "기온(°C)": "-3.1",
                   "풍향(16방위)": "WNW", "풍속(m/s)": "3.4"}),
        _kma_line({"지점": "112", "지점명": "인천", "일시": "2018-01-01 10:00", "기온(°C)": "-2.5",
                   "풍향(16방위)": "정온", "풍속(m/s)": "0.0"}),
    ]  # fmt: skip
    return _write(tmp_path / f"OBS_ASOS_TIM_{encoding}.csv", lines, encoding)


def _series(store: Store, thing: str, prop: str) -> ObservationFrame:
    return store.observations(datastream_ids=[stable_id("Datastream", datastream_key(thing, prop))])


@pytest.fixture(params=["memory://", "duckdb://"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    with open_store(str(request.param)) as opened:
        yield opened


@pytest.fixture
def registry(shared_data: Path) -> Path:
    return shared_data / "kma_stations" / "kma_asos_aws_stations.csv"


def test_registry_registers_every_station_with_its_position(store: Store, registry: Path) -> None:
    rows = _csv_rows(registry)
    numbered = [r for r in rows if r[0].strip()]
    lon, lat = (np.array([float(r[i]) for r in numbered]) for i in (3, 4))
    inside = (
        (lon >= AREA_LON[0]) & (lon <= AREA_LON[1]) & (lat >= AREA_LAT[0]) & (lat <= AREA_LAT[1])
    )
    report = ingest(read_kma_stations(str(registry)), store)
    things = {t.key: t for t in store.entities(Thing)}
    locations = {loc.key: loc for loc in store.entities(Location)}
    assert len(rows) == 676  # PROVENANCE.md: 676 stations
    assert len(things) == len(numbered)  # two rows name only a warning zone, no station
    assert len(store.quarantined()) == len(rows) - len(numbered)
    assert report.feeds["kma-stations"].stored == 0
    assert len(locations) == int(inside.sum())
    seoul = things["kma:108"]
    assert (seoul.name, seoul.properties["elevation_m"]) == ("서울", SEOUL[4])
    assert locations["kma:108/location"].location.coordinates == [SEOUL[2], SEOUL[3]]
    dokdo = things["kma:96"]  # its FCT_ID is a 104-digit number: left out, the rest stays
    assert "forecast_zone" not in dokdo.properties
    assert locations["kma:96/location"].location.coordinates == [131.86983, 37.23952]


@pytest.mark.parametrize("encoding", ["cp949", "utf-8-sig"])
def test_hourly_file_values_times_and_flags(
    store: Store, tmp_path: Path, shared_data: Path, encoding: str
) -> None:
    day = _seoul_day(shared_data)
    path = _hourly_file(tmp_path, day, encoding)
    batch = next(read_kma(str(path)))
    report = ingest(iter([batch]), store)
    temperature = _series(store, "kma:108", "air_temperature")
    visibility = _series(store, "kma:108", "visibility")
    humidity = _series(store, "kma:108", "relative_humidity")
    at_nine = int(np.flatnonzero(temperature.phenomenon_time == T0900_KST)[0])
    assert len(day) == len(temperature) == 24
    assert temperature.phenomenon_time[0] == T0900_KST - 9 * 3_600_000_000  # 00:00 KST
    np.testing.assert_array_equal(temperature.result, [float(r["Temperature(C)"]) for r in day])
    np.testing.assert_array_equal(
        visibility.result, [10 * float(r["Visibility (10m)"]) for r in day]
    )
    assert temperature.result[at_nine] == float(day[9]["Temperature(C)"]) == -4.3
    assert temperature.quality[at_nine] & Flag.SOURCE
    assert np.count_nonzero(temperature.quality & Flag.SOURCE) == 1
    assert not np.any(humidity.quality & Flag.SOURCE)  # QC플래그 0 is KMA's "normal"
    assert len(_series(store, "kma:108", "air_pressure")) == 0  # flag 9 on an empty value
    wind = _series(store, "kma:112", "wind_direction")
    assert wind.result.tolist() == [292.5, 0.0]  # WNW, calm
    assert batch.notes == [f"ignored column(s) without a citytwin property: {', '.join(IGNORED)}"]
    assert report.feeds["kma"].quarantined == 0
    assert {t.name for t in store.entities(Thing)} == {"서울", "인천"}
    assert store.entities(Location) == []  # no registry given: no positions


def test_hourly_file_with_registry_places_the_station(
    store: Store, tmp_path: Path, shared_data: Path, registry: Path
) -> None:
    path = _hourly_file(tmp_path, _seoul_day(shared_data), "cp949")
    ingest(read_kma(str(path), stations=registry), store)
    things = {t.key: t for t in store.entities(Thing)}
    (seoul,) = [loc for loc in store.entities(Location) if loc.key == "kma:108/location"]
    assert seoul.location.coordinates == [SEOUL[2], SEOUL[3]]
    assert things["kma:108"].properties["elevation_m"] == SEOUL[4]
    assert things["kma:112"].properties["forecast_zone"] == "11B20201"


def test_broken_file_keeps_good_rows_and_quarantines_each_bad_one(
    store: Store, tmp_path: Path
) -> None:
    row = {"지점": "108", "지점명": "서울", "기온(°C)": "-4.3", "풍속(m/s)": "0.7"}
    lines = [
        ",".join(HEADER),
        _kma_line(row | {"일시": "2018-01-01 09:00"}),  # line 2: good
        _kma_line(row | {"일시": "2018-01-01 10:00", "기온(°C)": "-1.6a"}),  # 3: not a number
        _kma_line(row | {"일시": "2018-02-30 10:00"}),  # 4: no such date
        _kma_line(row | {"일시": "2018-01-01 11:00", "풍향(16방위)": "NNX"}),  # 5: no direction
        _kma_line(row | {"일시": "2018-01-01 12:00", "지점": ""}),  # 6: no station
        _kma_line(row | {"일시": "2018-01-01 13:00"}),  # line 7: good
        "108,서울,2018-01-01 14:00,1.5,,0",  # 8: the download broke off
    ]
    path = _write(tmp_path / "broken.csv", lines, "utf-8-sig")
    report = ingest(read_kma(str(path)), store)
    temperature = _series(store, "kma:108", "air_temperature")
    reasons = {q.line or 0: q.reason for q in store.quarantined(feed="kma")}
    assert temperature.phenomenon_time.tolist() == [T0900_KST, T0900_KST + 4 * 3_600_000_000]
    assert temperature.result.tolist() == [-4.3, -4.3]
    assert sorted(reasons) == [3, 4, 5, 6, 8]
    assert "column '기온(°C)': '-1.6a' is not a number" in reasons[3]
    assert "'2018-02-30 10:00' is not a valid KST date" in reasons[4]
    assert reasons[5].startswith("풍향 'NNX' is neither degrees (0–360) nor a 16-point compass")
    assert "지점 '' is not a KMA station number" in reasons[6]
    assert reasons[8] == f"expected {len(HEADER)} columns, found 6"
    assert report.feeds["kma"].quarantined == 5
    assert next(q.raw for q in store.quarantined() if q.line == 4) == lines[3]


def test_missing_time_column_is_a_feed_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "no_time.csv", ["지점,지점명,기온(°C)", "108,서울,1.0"], "cp949")
    with pytest.raises(FeedError, match=r"no_time\.csv:1: no time \(일시\) column"):
        next(read_kma(str(path)))


def test_registry_without_coordinates_is_a_feed_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "stations.csv", ["STN_ID,STN_KO,HT", "108,서울,85.67"], "utf-8")
    with pytest.raises(FeedError, match=r"stations\.csv:1: station registry has no LON, LAT"):
        next(read_kma_stations(str(path)))


def test_header_only_download_is_an_empty_batch(store: Store, tmp_path: Path) -> None:
    path = _write(tmp_path / "empty.csv", [",".join(HEADER), ""], "cp949")
    report = ingest(read_kma(str(path)), store)
    assert (report.feeds["kma"].rows, report.nothing_read) == (0, True)
