"""Declarative feeds: AirKorea and TOPIS presets, custom mappings, invalid mappings, bad rows."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from citytwin.errors import FeedError, MappingError
from citytwin.ingest import read_feed
from citytwin.ingest.mapping import load_mapping, preset_names, unit_conversion
from citytwin.ingest.pipeline import ingest
from citytwin.ingest.timeparse import parse_local
from citytwin.model import Thing
from citytwin.model.sensing import stable_id
from citytwin.store import Store, open_store
from citytwin.store.base import to_micros

AIRKOREA_HEADER = ["지역", "망", "측정소코드", "측정소명", "측정일시",
                   "SO2", "CO", "O3", "NO2", "PM10", "PM25", "주소"]  # fmt: skip
STATIONS = {  # code: (지역, 측정소명, 주소) of two real Seoul urban stations
    "111121": ("서울 중구", "중구", "서울 중구 덕수궁길 15"),
    "111123": ("서울 종로구", "종로구", "서울 종로구 종로35가길 19"),
}
# SO2, CO, O3, NO2 (ppm), PM10, PM25 (µg/m³) for 2024-01-01 22h … 2024-01-02 01h KST
AIRKOREA_VALUES = {
    "111121": [
        ("2024010122", ["0.003", "0.6", "0.004", "0.038", "52", "37"]),
        ("2024010123", ["0.003", "0.6", "0.003", "0.041", "55", "40"]),
        ("2024010124", ["0.003", "0.7", "0.002", "0.043", "58", "43"]),
        ("2024010201", ["0.002", "0.6", "0.003", "0.040", "54", "39"]),
    ],
    "111123": [
        ("2024010122", ["0.002", "0.5", "0.006", "0.033", "47", "33"]),
        ("2024010123", ["0.002", "0.5", "", "0.035", "49", ""]),  # O3 and PM2.5 not reported
        ("2024010124", ["0.002", "0.5", "0.005", "0.036", "50", "36"]),
        ("2024010201", ["0.002", "", "0.005", "0.034", "", "34"]),
    ],
}

TOPIS_HEADER = ["일자", "요일", "도로명", "링크아이디", "시점명", "종점명", "거리", "방향",
                "기능유형구분", "도심/외곽구분", "권역구분",
                *(f"{h:02d}시" for h in range(1, 25))]  # fmt: skip
LINKS = {  # 링크아이디: (도로명, 시점명, 종점명, 거리, 방향, 기능유형구분, 도심/외곽구분, 권역구분)
    "1000000100": (
        "세종대로",
        "광화문",
        "세종대로사거리",
        "391",
        "상행",
        "주간선도로",
        "도심",
        "도심권",
    ),
    "1000000200": ("종로", "종로1가", "종로3가", "784", "하행", "보조간선도로", "도심", "도심권"),
}


def _csv_text(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)  # CRLF line ends, as the portals export
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _airkorea_rows() -> list[list[str]]:
    rows = []
    for code, hours in AIRKOREA_VALUES.items():
        region, name, address = STATIONS[code]
        rows += [[region, "도시대기", code, name, time, *values, address] for time, values in hours]
    return rows


def _write_airkorea(path: Path, rows: list[list[str]]) -> Path:
    path.write_bytes(_csv_text(AIRKOREA_HEADER, rows).encode("cp949"))
    return path


def _topis_speed(link: int, day: int, hour: int) -> str:
    """A plausible speed profile: free flow at night, slow at the rush hours."""
    rush = 18.0 if hour in (8, 9, 18, 19) else 0.0
    night = 12.0 if hour <= 6 or hour >= 23 else 0.0
    return f"{31.5 - 4 * link + day + night - rush:.1f}"


def _topis_rows() -> list[list[str]]:
    rows = []
    for day, (date, weekday) in enumerate([("20240301", "금"), ("20240302", "토")]):
        for number, (link, (road, start, end, *rest)) in enumerate(LINKS.items()):
            speeds = [_topis_speed(number, day, h) for h in range(1, 25)]
            rows.append([date, weekday, road, link, start, end, *rest, *speeds])
    rows[1][11 + 2] = ""  # 03시 of the second link on 1 March: no probe vehicle
    rows[3][11 + 23] = ""  # 24시 of the second link on 2 March
    return rows


def _write_topis(path: Path, rows: list[list[str]]) -> Path:
    path.write_bytes(b"\xef\xbb\xbf" + _csv_text(TOPIS_HEADER, rows).encode("utf-8"))
    return path


def _filled(rows: list[list[str]], first: int, last: int) -> int:
    """Non-empty numeric cells of columns first..last: the observations a file holds."""
    return sum(1 for row in rows for cell in row[first : last + 1] if cell.strip())


def _series(store: Store, thing_key: str, prop: str) -> tuple[list[datetime], list[float]]:
    frame = store.observations(datastream_ids=[stable_id("Datastream", f"{thing_key}/{prop}")])
    times = [datetime.fromtimestamp(t / 1e6, tz=UTC) for t in frame.phenomenon_time.tolist()]
    return times, frame.result.tolist()


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# --- presets -------------------------------------------------------------------------------------


def test_presets_are_bundled_and_valid() -> None:
    assert preset_names() == ["airkorea", "topis"]
    assert load_mapping("airkorea").feed == "airkorea"
    assert load_mapping("topis").effective_period == "PT1H"


def test_airkorea_preset_stores_every_value(tmp_path: Path) -> None:
    rows = _airkorea_rows()
    path = _write_airkorea(tmp_path / "AirKorea_2024-01.csv", rows)
    with open_store("memory://") as store:
        report = ingest(read_feed("generic", str(path), mapping="airkorea"), store)
        summary = report.feeds["airkorea"]
        expected = _filled(rows, 5, 10)
        assert expected == 44  # 8 rows × 6 pollutants, 4 cells empty
        assert (summary.rows, summary.read, summary.stored, summary.quarantined) == (
            8, expected, expected, 0,
        )  # fmt: skip
        assert len(store.observations()) == expected
        things = {t.key: t for t in store.entities(Thing)}
        assert set(things) == {"airkorea:111121", "airkorea:111123"}
        assert things["airkorea:111123"].name == "종로구"
        assert things["airkorea:111121"].properties == {
            "feed": "airkorea", "id": "111121", "region": "서울 중구", "network": "도시대기",
            "address": "서울 중구 덕수궁길 15",
        }  # fmt: skip
        _, no2 = _series(store, "airkorea:111121", "no2")
        assert no2 == pytest.approx([0.038, 0.041, 0.043, 0.040])  # ppm, unchanged


def test_airkorea_hour_24_is_the_last_hour_of_the_day(tmp_path: Path) -> None:
    """측정일시 2024010124 is the hour 23:00–24:00 KST, stored from 2024-01-01 14:00 UTC."""
    path = _write_airkorea(tmp_path / "AirKorea.csv", _airkorea_rows())
    with open_store("memory://") as store:
        ingest(read_feed("generic", str(path), mapping="airkorea"), store)
        times, pm10 = _series(store, "airkorea:111121", "pm10")
    assert times == [_utc(2024, 1, 1, 12), _utc(2024, 1, 1, 13), _utc(2024, 1, 1, 14),
                     _utc(2024, 1, 1, 15)]  # fmt: skip
    assert pm10[times.index(_utc(2024, 1, 1, 14))] == 58.0  # the 2024010124 row


def test_topis_preset_turns_each_hour_column_into_a_reading(tmp_path: Path) -> None:
    """Runs through DuckDB: 01시 of 20240301 is 00:00–01:00 KST, stored from 2024-02-29T15Z."""
    rows = _topis_rows()
    path = _write_topis(tmp_path / "2024년 3월 서울시 차량통행속도.csv", rows)
    with open_store("duckdb://") as store:
        report = ingest(read_feed("generic", str(path), mapping="topis"), store)
        expected = _filled(rows, 11, 34)
        assert expected == 4 * 24 - 2
        assert report.feeds["topis"].stored == expected
        assert len(store.observations()) == expected
        times, speeds = _series(store, "topis:1000000100", "link_speed")
        assert times[0] == _utc(2024, 2, 29, 15)  # 01시 of 20240301
        assert times[23] == _utc(2024, 3, 1, 14)  # 24시 of 20240301: 23:00–24:00 KST
        assert times[24] == _utc(2024, 3, 1, 15)  # 01시 of 20240302
        assert speeds[:3] == [float(c) for c in rows[0][11:14]]
        gap_times, _ = _series(store, "topis:1000000200", "link_speed")
        assert len(gap_times) == 46
        assert _utc(2024, 2, 29, 17) not in gap_times  # its empty 03시 of 1 March
        names = {t.key: t.name for t in store.entities(Thing)}
    assert names["topis:1000000100"] == "세종대로 광화문→세종대로사거리"
    assert any("ignored column(s): 요일" in note for note in report.feeds["topis"].notes)


# --- custom mappings -----------------------------------------------------------------------------

CUSTOM = """\
feed: district-air
description: Mapo-gu low-cost air monitors
period: PT1H
thing:
  id_column: device
  name: "망원동 {device}"
  lon_column: lon
  lat_column: lat
time:
  column: measured_at
  format: "%Y-%m-%d %H:%M"
  timezone: UTC
  label: end
values:
  - {column: NO2 (ppb), property: no2, unit: ppb}
  - {column: PM10 (mg/m3), property: pm10, unit: mg/m³}
  - {column: temp_x10, property: air_temperature, unit: Cel, scale: 0.1}
"""


def test_custom_mapping_converts_units_and_scales(tmp_path: Path) -> None:
    mapping = tmp_path / "district_air.yaml"
    mapping.write_text(CUSTOM, encoding="utf-8")
    path = tmp_path / "mapo.csv"
    path.write_text(
        "device,lon,lat,measured_at,NO2 (ppb),PM10 (mg/m3),temp_x10\n"
        "MP-01,126.9055,37.5558,2024-01-01 01:00,38,0.052,-31\n"
        "MP-01,126.9055,37.5558,2024-01-01 02:00,41.5,0.048,-35\n",
        encoding="utf-8",
    )
    (batch,) = read_feed("generic", str(path), mapping=str(mapping))
    readings = batch.readings
    assert readings.values["no2"].tolist() == [0.038, 0.0415]  # ppb → ppm, exact
    assert readings.values["pm10"] == pytest.approx([52.0, 48.0])  # mg/m³ → µg/m³
    assert readings.values["air_temperature"] == pytest.approx([-3.1, -3.5])
    assert readings.time.tolist() == [
        to_micros(_utc(2024, 1, 1, 0)),
        to_micros(_utc(2024, 1, 1, 1)),
    ]
    (thing,) = readings.things
    assert (thing.key, thing.name, thing.lon, thing.lat) == (
        "district-air:MP-01", "망원동 MP-01", 126.9055, 37.5558,
    )  # fmt: skip
    with open_store("memory://") as store:
        assert ingest([batch], store).feeds["district-air"].stored == 6


def test_json_records_at_a_dotted_path(tmp_path: Path) -> None:
    """An AirKorea-API-shaped response: the records sit at response.body.items."""
    mapping = tmp_path / "airkorea_api.yaml"
    mapping.write_text(
        "feed: airkorea-api\nformat: json\nrecords: response.body.items\n"
        "thing: {id_column: stationName, key_prefix: airkorea-api}\n"
        'time: {column: dataTime, format: "%Y-%m-%d %H:%M"}\n'
        "values:\n  - {column: pm10Value, property: pm10}\n  - {column: no2Value, property: no2}\n",
        encoding="utf-8",
    )
    items = [
        {
            "stationName": "중구",
            "dataTime": "2024-01-01 24:00",
            "pm10Value": "58",
            "no2Value": 0.043,
        },
        "not a record",
        {
            "stationName": "종로구",
            "dataTime": "2024-01-01 24:00",
            "pm10Value": None,
            "no2Value": 0.036,
        },
    ]
    path = tmp_path / "getMsrstnAcctoRltmMesureDnsty.json"
    path.write_text(json.dumps({"response": {"body": {"items": items}}}), encoding="utf-8")
    (batch,) = read_feed("generic", str(path), mapping=str(mapping))
    assert batch.readings.time.tolist() == [to_micros(_utc(2024, 1, 1, 15))] * 2
    assert batch.readings.value_count == 3
    (reject,) = batch.rejects
    assert (reject.line, reject.raw, reject.reason) == (
        2, '"not a record"', "record is not a JSON object",
    )  # fmt: skip


# --- invalid mappings ----------------------------------------------------------------------------

VALID = {
    "feed": "test",
    "thing": {"id_column": "id"},
    "time": {"column": "t"},
    "values": [{"column": "v", "property": "pm10"}],
}


def _broken(**changes: object) -> dict[str, object]:
    return {**VALID, **changes}


@pytest.mark.parametrize(
    ("mapping", "fragments"),
    [
        (
            _broken(values=[{"column": "v", "property": "pm3"}]),
            ["values[0].property", "unknown observed property 'pm3'", "valid keys:", "pm25"],
        ),
        ({k: v for k, v in VALID.items() if k != "time"}, ["missing required key 'time'"]),
        ({k: v for k, v in VALID.items() if k != "feed"}, ["missing required key 'feed'"]),
        (_broken(thing={}), ["missing required key 'thing.id_column'"]),
        (
            _broken(values=[{"column": "v", "property": "no2", "unit": "ug/m3"}]),
            ["values[0]", "unit 'ug/m3' cannot be converted to '[ppm]'", "'[ppb]'"],
        ),
        (_broken(time={"colum": "t"}), ["unknown key 'time.colum'", "did you mean 'column'"]),
        (_broken(time={"column": "t", "format": "%d/%b/%Y"}), ["%b is not supported"]),
        (_broken(time={"column": "t", "timezone": "Europe/Paris"}), ["'Europe/Paris'"]),
        (_broken(period="1 hour"), ["period '1 hour' is not an ISO 8601 duration"]),
        (
            _broken(time={"column": "t", "hours": {"date_column": "d", "columns": ["01시"]}}),
            ["time: give either column", "or hours", "not both"],
        ),
        (
            _broken(time={"hours": {"date_column": "d", "columns": ["01시"]}}),
            ["with time.hours the hour columns hold the values"],
        ),
        (_broken(values=[]), ["values: List should have at least 1 item"]),
    ],
)
def test_invalid_mapping_names_the_problem_and_the_file(
    tmp_path: Path, mapping: dict[str, object], fragments: list[str]
) -> None:
    path = tmp_path / "bad_mapping.yaml"
    path.write_text(json.dumps(mapping, ensure_ascii=False), encoding="utf-8")  # JSON is YAML
    with pytest.raises(MappingError) as caught:
        read_feed("generic", str(tmp_path / "data.csv"), mapping=str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: invalid mapping: ")
    for fragment in fragments:
        assert fragment in message


def test_unknown_preset_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="nor a preset named so; presets: airkorea, topis"):
        load_mapping("airkorean")
    path = tmp_path / "tabs.yaml"
    path.write_text("feed: x\nthing:\n\tid_column: a\n", encoding="utf-8")
    with pytest.raises(MappingError, match=r"tabs\.yaml:3: not valid YAML"):
        load_mapping(path)


def test_a_file_without_a_mapped_column_is_a_feed_error(tmp_path: Path) -> None:
    header = [c for c in AIRKOREA_HEADER if c != "NO2"]
    path = tmp_path / "no_no2.csv"
    path.write_bytes(_csv_text(header, []).encode("cp949"))
    with pytest.raises(FeedError, match=r"no_no2\.csv:1: column\(s\) NO2 named by the 'airkorea'"):
        list(read_feed("generic", str(path), mapping="airkorea"))


def test_an_optional_column_may_be_absent(tmp_path: Path) -> None:
    """Exports before 2015 have no PM25 column."""
    rows = [row[:10] + row[11:] for row in _airkorea_rows()]
    path = tmp_path / "AirKorea_2014.csv"
    path.write_bytes(_csv_text([c for c in AIRKOREA_HEADER if c != "PM25"], rows).encode("cp949"))
    (batch,) = read_feed("generic", str(path), mapping="airkorea")
    assert "pm25" not in batch.readings.values
    assert batch.notes == ["column(s) not in this file, skipped: PM25"]


# --- bad rows ------------------------------------------------------------------------------------


def test_broken_rows_are_quarantined_and_good_rows_land(tmp_path: Path) -> None:
    rows = _airkorea_rows()
    rows[1][9] = "점검중"  # PM10 under maintenance: not a number (line 3)
    rows[5][4] = "2024013225"  # 32 January, hour 25 (line 7)
    rows[6][2] = ""  # no station code (line 8)
    path = _write_airkorea(tmp_path / "AirKorea_broken.csv", rows)
    with open_store("memory://") as store:
        report = ingest(read_feed("generic", str(path), mapping="airkorea"), store)
        quarantined = {r.line or 0: r for r in store.quarantined(feed="airkorea")}
        stored = len(store.observations())
    good = [row for n, row in enumerate(rows) if n not in (1, 5, 6)]
    assert stored == report.feeds["airkorea"].stored == _filled(good, 5, 10)
    assert sorted(quarantined) == [3, 7, 8]
    assert quarantined[3].reason == "column 'PM10': '점검중' is not a number"
    assert quarantined[3].raw.startswith("서울 중구,도시대기,111121,중구,2024010123,")
    assert quarantined[7].reason == (
        "column '측정일시': '2024013225' is not a valid time (format yyyymmddhh)"
    )
    assert quarantined[8].reason == "column '측정소코드' (the id) is empty"


# --- building blocks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fmt", "expected"),
    [
        ("2024010124", "yyyymmddhh", _utc(2024, 1, 1, 15)),
        ("2024123124", "yyyymmddhh", _utc(2024, 12, 31, 15)),  # into the next year, KST
        ("20240301", "yyyymmdd", _utc(2024, 2, 29, 15)),
        ("2024-03-01 9:05", "%Y-%m-%d %H:%M", _utc(2024, 3, 1, 0, 5)),
        ("2024.03.01 24:00:00", "%Y.%m.%d %H:%M:%S", _utc(2024, 3, 1, 15)),
        ("202403010930", "auto", _utc(2024, 3, 1, 0, 30)),
        ("2024-03-01 09:30", "auto", _utc(2024, 3, 1, 0, 30)),
        ("2024022924", "auto", _utc(2024, 2, 29, 15)),
        ("2024-02-29 24:00", "auto", _utc(2024, 2, 29, 15)),
        ("2024/03/01 09:30", "auto", _utc(2024, 3, 1, 0, 30)),
    ],
)
def test_parse_local(text: str, fmt: str, expected: datetime) -> None:
    micros, ok = parse_local(np.array([text], dtype=object), fmt)
    assert ok.tolist() == [True]
    assert int(micros[0]) == to_micros(expected)


@pytest.mark.parametrize(
    ("text", "fmt"),
    [("2024023010", "yyyymmddhh"), ("2024010125", "yyyymmddhh"), ("202401011", "yyyymmddhh"),
     ("2024-01-01 24:30", "%Y-%m-%d %H:%M"), ("", "auto"), ("soon", "auto")],
)  # fmt: skip
def test_parse_local_rejects_impossible_times(text: str, fmt: str) -> None:
    _, ok = parse_local(np.array([text], dtype=object), fmt)
    assert ok.tolist() == [False]


def test_unit_conversion() -> None:
    assert unit_conversion("no2", "ppb") == (1.0, 1000.0)
    assert unit_conversion("no2", "[ppm]") == unit_conversion("no2", "ppm") == (1.0, 1.0)
    assert unit_conversion("pm25", "㎍/㎥") == (1.0, 1.0)
    assert unit_conversion("pm25", "mg/m3") == (1000.0, 1.0)
    assert unit_conversion("link_speed", "m/s") == (3.6, 1.0)
    with pytest.raises(ValueError, match="unit 'km/h' cannot be converted to 'ug/m3'"):
        unit_conversion("pm10", "km/h")
