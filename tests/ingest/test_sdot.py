"""S-DoT reader: both file generations, scaling from the official column dictionary, registry."""

from __future__ import annotations

import csv
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from citytwin.errors import FeedError
from citytwin.ingest import read_feed
from citytwin.ingest.pipeline import ingest
from citytwin.ingest.sdot import RAW_2020, load_registry
from citytwin.model import Location, Thing
from citytwin.store import open_store
from citytwin.store.base import to_micros

HEADER_2020 = (
    "모델명,시리얼,미세먼지2.5(초미세먼지),미세먼지10(미세먼지),기온,상대습도,풍향,풍속,"
    "돌풍 풍향,돌풍 풍속,조도,자외선,소음,진동(x),진동(y),진동(z),진동(x) 최대,진동(y) 최대,"
    "진동(z) 최대,흑구 온도,pm25 보정,pm10 보정,측정시간,등록 일시"
)


def _row_2020(serial: str, time: str, temperature: int = 1234, wind: int = 35) -> str:
    values = [
        12,
        20,
        temperature,
        45,
        2700,
        wind,
        2900,
        61,
        5400,
        23,
        55,
        12,
        15,
        98,
        30,
        41,
        120,
        1300,
        14,
        22,
    ]
    return f"SDOT-2,{serial}," + ",".join(map(str, values)) + f",{time},2020-03-15 00:03:11"


def test_scalings_match_the_official_column_dictionary(shared_data: Path) -> None:
    """Every value column of the dictionary has our scaling, derived from its formula text."""
    path = shared_data / "sdot" / "sensor_data_information.csv"
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle))[1:]
    expected = {"관측값": 1000.0, "관측값×10": 100.0, "관측값×100": 10.0, "(관측값+100)×10": 0.0}
    checked = 0
    for name, _unit, text in rows:
        if name not in RAW_2020:
            continue
        formula = re.search(r"\d\s*\((.*)\)\s*$", text)
        # the corrected PM columns carry no formula: they are plain values (보정 데이터)
        rule = formula.group(1).replace("＋", "+").replace(" ", "") if formula else "관측값"
        _, scale = RAW_2020[name]
        assert scale(np.array([1000.0]))[0] == pytest.approx(expected[rule]), (name, rule)
        checked += 1
    assert checked == len(RAW_2020) == 20


def test_2020_raw_scaling(tmp_path: Path) -> None:
    path = tmp_path / "ALLDATA_20200315.csv"
    path.write_text(
        HEADER_2020 + "\n" + _row_2020("V02Q1940612", "202003150002") + "\n", encoding="cp949"
    )
    (batch,) = read_feed("sdot", str(path))
    values = {k: float(v[0]) for k, v in batch.readings.values.items()}
    assert values["air_temperature"] == pytest.approx(23.4)  # 1234 = (23.4 + 100) × 10
    assert values["wind_speed"] == pytest.approx(3.5)  # 35 = 3.5 × 10
    assert values["wind_direction"] == pytest.approx(270.0)
    assert values["uv_index"] == pytest.approx(2.3)
    assert values["vibration_x"] == pytest.approx(0.12)
    assert values["black_globe_temperature"] == pytest.approx(30.0)
    assert batch.readings.period == "PT2M"
    kst = datetime(2020, 3, 14, 15, 2, tzinfo=UTC)  # 2020-03-15 00:02 KST
    assert int(batch.readings.time[0]) == to_micros(kst)


def test_hourly_export_with_unit_headers(tmp_path: Path) -> None:
    header = (
        "모델명,시리얼,측정시간,초미세먼지 (㎍/㎥),미세먼지 (㎍/㎥),기온(℃),상대습도( %),풍향(°),"
        "소음 (dB),진동(x) (g),이산화질소 (ppm),방문자수 (명),초미세먼지 보정 (㎍/㎥)"
    )
    row = "SDOT-3,OC3CL200012,2023-05-01 13:00:00,7.9,12.1,19.4,70.7,230,43.9,0.011,0.021,152,15.8"
    path = tmp_path / "sdot_hourly.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (header + "\n" + row + "\n").encode("utf-8"))
    (batch,) = read_feed("sdot", str(path))
    values = {k: float(v[0]) for k, v in batch.readings.values.items()}
    assert values == pytest.approx(
        {
            "pm25": 7.9,
            "pm10": 12.1,
            "air_temperature": 19.4,
            "relative_humidity": 70.7,
            "wind_direction": 230.0,
            "noise": 43.9,
            "acceleration_x": 0.011,
            "no2": 0.021,
            "visitor_count": 152.0,
            "pm25_corrected": 15.8,
        }
    )
    assert int(batch.readings.time[0]) == to_micros(datetime(2023, 5, 1, 4, tzinfo=UTC))
    assert batch.readings.period == "PT1H"
    assert any("모델명" in note for note in batch.notes)


def test_registry_places_sensors(shared_data: Path, tmp_path: Path) -> None:
    registry_path = shared_data / "sdot" / "sensor_longitude_latitude.csv"
    with registry_path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    registry = load_registry(registry_path)
    assert len(registry) == len({r["시리얼"] for r in rows}) == 851
    first = rows[0]
    assert registry[first["시리얼"]] == (float(first["경도"]), float(first["위도"]))
    serials = [r["시리얼"] for r in rows[:3]] + ["V99UNKNOWN"]
    path = tmp_path / "a.csv"
    path.write_text(
        HEADER_2020 + "\n" + "\n".join(_row_2020(s, "202003150000") for s in serials),
        encoding="utf-8",
    )
    with open_store("duckdb://") as store:
        report = ingest(read_feed("sdot", str(path), registry=str(registry_path)), store)
        locations = {loc.name: loc.location.coordinates for loc in store.entities(Location)}
        assert len(store.entities(Thing)) == 4
    assert locations[f"S-DoT {first['시리얼']} location"] == [
        float(first["경도"]),
        float(first["위도"]),
    ]
    assert len(locations) == 3
    assert any("V99UNKNOWN" in note for note in report.feeds["sdot"].notes)


def test_reingest_adds_nothing(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    lines = [
        _row_2020(f"V02Q19400{i:02d}", f"2020031500{m:02d}")
        for i in range(5)
        for m in range(0, 10, 2)
    ]
    path.write_text(HEADER_2020 + "\n" + "\n".join(lines) + "\n", encoding="utf-8")
    with open_store(f"duckdb:///{tmp_path / 'c.duckdb'}") as store:
        first = ingest(read_feed("sdot", str(path)), store).feeds["sdot"]
        second = ingest(read_feed("sdot", str(path)), store).feeds["sdot"]
        assert len(store.observations()) == 25 * 20
    assert (first.read, first.stored, first.duplicates) == (500, 500, 0)
    assert (second.read, second.stored, second.duplicates) == (500, 0, 500)


def test_broken_file_keeps_good_rows(tmp_path: Path) -> None:
    good = [_row_2020("V02Q1940001", f"2020031500{m:02d}") for m in (0, 2, 4)]
    bad_number = _row_2020("V02Q1940001", "202003150006").replace(",1234,", ",abc,")
    bad_date = _row_2020("V02Q1940001", "202002300008")  # 30 February
    wrong_columns = "SDOT-2,V02Q1940001,1,2,3"
    truncated = _row_2020("V02Q1940001", "202003150010")[:40]
    body = "\n".join([HEADER_2020, *good, bad_number, bad_date, "", wrong_columns, truncated])
    path = tmp_path / "broken.csv"
    raw = body.encode("utf-8").replace(b"SDOT-2,V02Q1940001,1,2,3", b"SDOT-2,V02Q1940001,\xff\xfe")
    path.write_bytes(raw)
    with open_store("memory://") as store:
        summary = ingest(read_feed("sdot", str(path)), store).feeds["sdot"]
        rejected = {r.line: r.reason for r in store.quarantined()}
    assert summary.stored == 3 * 20
    assert set(rejected) == {5, 6, 8, 9}
    assert "'abc' is not a number" in rejected[5]
    assert "not a valid date" in rejected[6]
    assert "not valid" in rejected[8]  # undecodable bytes, named with their position
    assert "expected 24 columns" in rejected[9]


def test_empty_file_and_missing_columns_are_clear_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(FeedError, match="empty"):
        list(read_feed("sdot", str(empty)))
    no_serial = tmp_path / "x.csv"
    no_serial.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(FeedError, match="no sensor serial column"):
        list(read_feed("sdot", str(no_serial)))


def test_reingest_without_registry_keeps_thing_properties(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text(HEADER_2020 + "\n" + _row_2020("V02Q1940612", "202003150000") + "\n")
    with open_store("memory://") as store:
        ingest(read_feed("sdot", str(path)), store)
        (thing,) = store.entities(Thing)
        store.register(
            [thing.model_copy(update={"properties": {**thing.properties, "gu": "중구"}})]
        )
        path.write_text(HEADER_2020 + "\n" + _row_2020("V02Q1940612", "202003150002") + "\n")
        ingest(read_feed("sdot", str(path)), store)
        (thing,) = store.entities(Thing)
    assert thing.properties == {"feed": "sdot", "serial": "V02Q1940612", "gu": "중구"}


def test_chunked_reading_gives_the_same_result(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    lines = [_row_2020(f"V02Q19400{i:02d}", f"2020031500{m:02d}") for m in range(0, 20, 2)
             for i in range(9)]  # fmt: skip
    lines[17] = lines[17].replace(",1234,", ",x,")
    path.write_text(HEADER_2020 + "\n" + "\n".join(lines) + "\n", encoding="utf-8")
    whole = list(read_feed("sdot", str(path)))
    chunks = list(read_feed("sdot", str(path), chunk_bytes=1000))
    assert len(whole) == 1
    assert len(chunks) > 5
    assert sum(b.bytes_read for b in chunks) == path.stat().st_size == whole[0].bytes_read
    lines_whole = whole[0].readings.line.tolist()
    assert [n for b in chunks for n in b.readings.line.tolist()] == lines_whole
    assert [r.line for b in chunks for r in b.rejects] == [r.line for r in whole[0].rejects] == [19]
    with open_store("memory://") as store:
        summary = ingest(iter(chunks), store).feeds["sdot"]
    assert (summary.files, summary.stored, summary.quarantined) == (1, 89 * 20, 1)
