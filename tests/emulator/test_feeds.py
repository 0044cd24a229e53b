"""The feed emulator: its files parse with the real readers, and its world behaves physically.

The S-DoT registry and the KMA station table come from ``../shared/data`` (see PROVENANCE.md):
``sdot/sensor_longitude_latitude.csv`` and ``kma_stations/kma_asos_aws_stations.csv``.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from citytwin.emulator import (
    DRIFT_TOLERANCE,
    NO_FAULTS,
    FaultPlan,
    Sites,
    encode_sdot_2020,
    generate_day,
    load_sites,
    load_stations,
    write_kma_hourly,
    write_sdot_2020,
    write_sdot_hourly,
)
from citytwin.emulator.feeds import SDOT_2020_COLUMNS, city_state, kst_minute, simulate_weather
from citytwin.ingest import read_feed
from citytwin.ingest.base import FeedBatch
from citytwin.ingest.qc import sort_readings
from citytwin.model.vocabulary import get_property

START = datetime(2020, 3, 15)  # KST
BUSY = FaultPlan(spikes=3.0, stuck=0.3, out_of_range=1.0, drift=0.1, outages=1.0,
                 blank_cells=1e-3)  # fmt: skip


def _read(feed: str, path: Path, **options: object) -> FeedBatch:
    (batch,) = read_feed(feed, str(path), **options)
    return batch


@pytest.fixture(scope="module")
def sites() -> Sites:
    return load_sites(None, 40, seed=3)


def test_2020_file_parses_with_the_real_reader(tmp_path: Path, sites: Sites) -> None:
    written = write_sdot_2020(tmp_path / "ALLDATA_20200315.csv", sites, START, 6, faults=BUSY,
                              seed=3)  # fmt: skip
    batch = _read("sdot", written.path)
    assert batch.rejects == []
    assert len(batch.readings) == written.rows
    assert batch.readings.value_count == written.values
    assert written.rows < 40 * 180  # outages removed rows
    assert {t.key for t in batch.readings.things} == {f"sdot:{s}" for s in sites.serials}
    assert batch.readings.period == "PT2M"
    assert set(written.labels.counts()) == {"spike", "stuck", "range", "drift", "gap"}


def test_2020_encoding_round_trips(tmp_path: Path, sites: Sites) -> None:
    """Every written integer is the dictionary encoding of what the reader returns."""
    assert encode_sdot_2020("air_temperature", np.array([23.4])).tolist() == [1234]
    assert encode_sdot_2020("wind_speed", np.array([3.5])).tolist() == [35]
    written = write_sdot_2020(tmp_path / "a.csv", sites, START, 2, faults=NO_FAULTS, seed=5)
    with written.path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    readings = _read("sdot", written.path).readings
    order = np.argsort(readings.line)  # back to file order
    for header, prop, _, _ in SDOT_2020_COLUMNS:
        text = [r[header] for r in rows]
        values = readings.values[prop][order]
        present = ~np.isnan(values)
        assert [t != "" for t in text] == present.tolist(), header
        raw = np.array([int(t) for t in text if t])
        assert np.array_equal(encode_sdot_2020(prop, values[present]), raw), header
    temperature = readings.values["air_temperature"]
    assert np.allclose(temperature * 10, np.round(temperature * 10))  # 0.1 °C resolution


def test_hourly_file_parses_in_both_encodings(tmp_path: Path, sites: Sites) -> None:
    for encoding in ("utf-8", "cp949"):
        written = write_sdot_hourly(tmp_path / f"h_{encoding}.csv", sites, START, 48,
                                    faults=BUSY, seed=2, encoding=encoding)  # fmt: skip
        batch = _read("sdot", written.path)
        assert batch.rejects == []
        assert len(batch.readings) == written.rows
        assert batch.readings.value_count == written.values
        assert batch.readings.period == "PT1H"
        values = batch.readings.values
        assert {"no2", "o3", "visitor_count", "acceleration_z", "pm25_corrected"} <= set(values)
        assert np.nanmedian(values["no2"]) < 0.1  # ppm
        assert np.all(np.nan_to_num(values["visitor_count"]) % 1 == 0)
    assert written.path.read_bytes().decode("cp949").startswith("모델명,시리얼,측정시간")


def test_real_registry_gives_real_serials_and_positions(tmp_path: Path, shared_data: Path) -> None:
    registry = shared_data / "sdot" / "sensor_longitude_latitude.csv"
    real = load_sites(registry)
    assert len(real) == 851
    first = real[0]
    assert (first.serial, first.lat, first.lon) == ("V02Q1940612", 37.57807617, 126.8951928)
    more = load_sites(registry, 900, seed=1)  # 49 more than the registry: new serials nearby
    assert more.serials[:851] == real.serials
    assert len(set(more.serials)) == 900
    assert np.all(np.abs(more.lon[851:] - real.lon[:49]) < 0.02)
    written = write_sdot_2020(tmp_path / "r.csv", load_sites(registry, 20), START, 1, seed=1)
    things = {t.key: t for t in _read("sdot", written.path, registry=registry).readings.things}
    thing = things["sdot:V02Q1940612"]
    assert (thing.lon, thing.lat) == (126.8951928, 37.57807617)


def test_synthetic_sites_lie_in_seoul() -> None:
    sites = load_sites(None, 1100, seed=0)
    assert len(set(sites.serials)) == 1100
    assert all(len(s) == 11 and s.startswith("V02Q19") for s in sites.serials)
    assert sites.lon.min() >= 126.76
    assert sites.lon.max() <= 127.18
    assert sites.lat.min() >= 37.43
    assert sites.lat.max() <= 37.70


def test_kma_file_parses_with_the_real_reader(tmp_path: Path) -> None:
    written = write_kma_hourly(tmp_path / "OBS_ASOS_TIM.csv", None, START, 72, seed=4,
                               suspect_rate=0.01)  # fmt: skip
    assert written.path.read_bytes().decode("cp949").startswith("지점,지점명,일시,기온(°C)")
    batch = _read("kma", written.path)
    assert batch.rejects == []
    assert len(batch.readings) == written.rows == 5 * 72
    assert batch.readings.value_count == written.values
    labels = written.labels
    assert len(labels) > 0
    assert set(labels.kind) == {"source"}
    index = {t.key: i for i, t in enumerate(batch.readings.things)}
    stations = [108, 400, 410, 413, 416]
    for station, time, prop in zip(labels.sensor, labels.time, labels.prop, strict=True):
        row = (batch.readings.thing_index == index[f"kma:{stations[station]}"]) & (
            batch.readings.time == time
        )
        assert batch.readings.source_flags[str(prop)][row].all()


def test_kma_registry_stations(tmp_path: Path, shared_data: Path) -> None:
    stations = load_stations(shared_data / "kma_stations" / "kma_asos_aws_stations.csv")
    seoul = next(s for s in stations if s.stn_id == 108)
    assert (seoul.name, seoul.lon, seoul.lat, seoul.height) == ("서울", 126.9658, 37.57142, 85.67)
    assert all(126.76 <= s.lon <= 127.18 and 37.43 <= s.lat <= 37.70 for s in stations)
    written = write_kma_hourly(tmp_path / "k.csv", stations, START, 24, encoding="utf-8")
    batch = _read("kma", written.path)
    assert batch.rejects == []
    assert batch.readings.value_count == written.values
    asos = {f"kma:{s.stn_id}" for s in stations if s.asos}
    cloud = batch.readings.values["cloud_cover"]
    has_cloud = {batch.readings.things[i].key for i in batch.readings.thing_index[~np.isnan(cloud)]}
    assert has_cloud == asos  # AWS stations observe no cloud


def test_same_seed_same_bytes(tmp_path: Path, sites: Sites) -> None:
    a = write_sdot_2020(tmp_path / "a.csv", sites, START, 1, faults=BUSY, seed=9)
    b = write_sdot_2020(tmp_path / "b.csv", sites, START, 1, faults=BUSY, seed=9)
    c = write_sdot_2020(tmp_path / "c.csv", sites, START, 1, faults=BUSY, seed=10)
    assert a.path.read_bytes() == b.path.read_bytes() != c.path.read_bytes()


def test_labels_describe_the_values(tmp_path: Path, sites: Sites) -> None:
    """Stuck runs are flat, error codes out of range, spikes stand out, drift grows."""
    written = write_sdot_2020(tmp_path / "f.csv", sites, START, 24, faults=BUSY, seed=7)
    readings = sort_readings(_read("sdot", written.path).readings)
    labels = written.labels
    index = {t.key: i for i, t in enumerate(readings.things)}
    thing = np.array([index[f"sdot:{s}"] for s in sites.serials])[labels.sensor]
    key = readings.thing_index * 10**12 + readings.time // 10**6
    row = np.searchsorted(key, thing * 10**12 + labels.time // 10**6)
    assert np.array_equal(key[row], thing * 10**12 + labels.time // 10**6)  # all present
    for prop in ("air_temperature", "pm25", "noise"):
        mine = (labels.prop == prop) & (labels.kind == "stuck")
        if mine.any():
            stuck = readings.values[prop][row[mine]]
            runs = np.split(stuck, np.flatnonzero(np.diff(row[mine]) != 1) + 1)
            assert all(np.ptp(run) == 0 for run in runs), prop
    for prop in set(labels.prop[labels.kind == "range"]):
        spec = get_property(str(prop))
        x = readings.values[str(prop)][row[(labels.prop == prop) & (labels.kind == "range")]]
        assert np.all((x < spec.valid_min) | (x > spec.valid_max)), prop
    drift = labels.kind == "drift"
    assert drift.any()
    assert labels.detectable[drift].any()
    assert not labels.detectable[drift].all()
    assert labels.detectable[~drift].all()
    assert DRIFT_TOLERANCE == 4.0


def test_generate_day(tmp_path: Path) -> None:
    paths = generate_day(tmp_path / "day", sensors=25, seed=1)
    assert [p.name for p in paths] == ["ALLDATA_20200315.csv", "OBS_ASOS_TIM_20200315.csv"]
    sdot, kma = _read("sdot", paths[0]), _read("kma", paths[1])
    assert sdot.rejects == []
    assert kma.rejects == []
    assert len(kma.readings) == 5 * 24
    # both files see the same weather: the S-DoT network median follows station 108
    t = kma.readings.time[kma.readings.thing_index == 0]
    kma_t = kma.readings.values["air_temperature"][kma.readings.thing_index == 0]
    r = sdot.readings
    ok = (r.values["air_temperature"] > -40) & (r.values["air_temperature"] < 50)
    sdot_t = np.array([np.median(r.values["air_temperature"][ok & (r.time == x)]) for x in t])
    assert np.corrcoef(kma_t, sdot_t)[0, 1] > 0.9


# -- the physical world ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def month() -> tuple[np.ndarray, ...]:
    """City state over a spring month at 10-minute steps."""
    first = kst_minute(datetime(2020, 4, 1))
    weather = simulate_weather(first, 30 * 24, seed=11)
    minutes = first + 10 * np.arange(30 * 144, dtype=np.int64)
    city = city_state(weather, minutes)
    return (city.hour, city.temperature, city.pm25, city.wind, city.rain, city.sin_sun,
            city.ghi, city.dew_point)  # fmt: skip


def test_diurnal_cycles(month: tuple[np.ndarray, ...]) -> None:
    hour, temperature, _, _, _, sin_sun, ghi, _ = month
    afternoon, dawn = (hour >= 13) & (hour < 16), (hour >= 4) & (hour < 7)
    assert temperature[afternoon].mean() - temperature[dawn].mean() > 4
    assert np.all(ghi[sin_sun <= 0] == 0)
    assert ghi[(hour > 11) & (hour < 13)].mean() > 300
    assert 5 < temperature.mean() < 20  # April in Seoul


def test_pm_episodes_follow_wind_and_rain(month: tuple[np.ndarray, ...]) -> None:
    _, _, pm25, wind, rain, _, _, _ = month
    calm, windy = wind < np.quantile(wind, 0.25), wind > np.quantile(wind, 0.75)
    assert pm25[calm].mean() > 1.3 * pm25[windy].mean()
    if (rain > 0).any():
        assert pm25[rain > 0].mean() < pm25[rain == 0].mean()
    # multi-hour episodes: the hourly series is strongly autocorrelated
    hourly = pm25[::6]
    assert np.corrcoef(hourly[:-3], hourly[3:])[0, 1] > 0.6
    assert np.quantile(pm25, 0.95) > 2 * np.quantile(pm25, 0.05)


def test_spatial_structure(tmp_path: Path) -> None:
    """Sensors share the city signal but keep their own offsets."""
    sites = load_sites(None, 60, seed=2)
    written = write_sdot_2020(tmp_path / "s.csv", sites, START, 12, faults=NO_FAULTS, seed=2)
    r = sort_readings(_read("sdot", written.path).readings)
    t = r.values["air_temperature"].reshape(60, -1)  # clean, complete: sensor × time
    city = np.median(t, axis=0)
    assert np.mean([np.corrcoef(row, city)[0, 1] for row in t]) > 0.9
    offsets = (t - city).mean(axis=1)
    assert 0.2 < offsets.std() < 2.0
    uv = r.values["uv_index"].reshape(60, -1)
    hours = (r.time.reshape(60, -1)[0] // 3_600_000_000 + 9) % 24
    assert np.all(uv[:, (hours < 5) | (hours > 20)] == 0)


def test_time_zone_handling() -> None:
    assert kst_minute(datetime(2020, 3, 15, 9, tzinfo=UTC)) == kst_minute(datetime(2020, 3, 15, 18))
